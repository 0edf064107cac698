package pool

import "github.com/sandpool/sandpool/sandbox"

// The execution and file types of a session, as the surfaces see them.
// They are the sandbox package's own, named here so that surfaces built on
// pools (tools, agents, clients) depend on the pool's vocabulary only.
type (
	// ExecRequest is one execution.
	ExecRequest = sandbox.ExecRequest
	// Result summarises a finished execution.
	Result = sandbox.Result
	// Event is something an execution produced, delivered as it happens.
	Event = sandbox.Event
	// EventKind is the kind of an Event.
	EventKind = sandbox.EventKind
	// Sink receives an execution's events in order.
	Sink = sandbox.Sink
	// ExecError is an exception raised by user code.
	ExecError = sandbox.ExecError
	// Output is everything one execution produced.
	Output = sandbox.Output
	// Collector gathers events into an Output with a memory bound.
	Collector = sandbox.Collector
	// FileInfo describes a file in a session's /mnt/data.
	FileInfo = sandbox.FileInfo
	// ExecStatus is how an execution ended.
	ExecStatus = sandbox.Status
)

// Event kinds.
const (
	EventStdout  = sandbox.EventStdout
	EventStderr  = sandbox.EventStderr
	EventDisplay = sandbox.EventDisplay
	EventResult  = sandbox.EventResult
	EventError   = sandbox.EventError
)

// Execution statuses.
const (
	StatusOK          = sandbox.StatusOK
	StatusError       = sandbox.StatusError
	StatusTimeout     = sandbox.StatusTimeout
	StatusInterrupted = sandbox.StatusInterrupted
	StatusCrashed     = sandbox.StatusCrashed
)

// File types.
const (
	FileRegular = sandbox.FileRegular
	FileDir     = sandbox.FileDir
)

// CheckPath validates a file name relative to /mnt/data: no "..", no
// absolute path, no NUL.
func CheckPath(p string) error { return sandbox.CheckPath(p) }
