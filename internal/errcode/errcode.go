// Package errcode carries the stable error codes that cross sandpool's trust
// boundary. A domain error wraps its cause (for logs) together with a code and
// a public message (for clients); the surfaces (HTTP, MCP, CLI) turn the code
// into a status and show only the public message, so host paths, container
// ids and stack traces never reach a caller.
package errcode

import (
	"errors"
	"fmt"
)

// Code is a stable, machine-readable error class. Values never change once
// released: clients branch on them.
type Code string

// The codes. Keep this list in sync with the status tables of the surfaces.
const (
	// Internal is a fault in sandpool itself; the public message says nothing more.
	Internal Code = "internal"
	// InvalidArgument means the caller sent something malformed.
	InvalidArgument Code = "invalid_argument"
	// NotFound means the named object (file, sandbox, session) does not exist.
	NotFound Code = "not_found"
	// TooLarge means a body, file or message exceeded a configured limit.
	TooLarge Code = "too_large"
	// Unavailable means a dependency (the podman service) cannot be reached
	// right now; retrying later may succeed.
	Unavailable Code = "unavailable"
	// SandboxGone means the sandbox no longer runs; its state is lost.
	SandboxGone Code = "sandbox_gone"
	// SandboxUnreachable means the control connection to a running sandbox
	// failed; the sandbox and its state may still be intact.
	SandboxUnreachable Code = "sandbox_unreachable"
	// IsolationMismatch means a sandbox did not run on the isolation its
	// spec demanded (for example a "gvisor" spec that landed on the host kernel).
	IsolationMismatch Code = "isolation_mismatch"
	// Timeout means an operation did not finish in its time budget.
	Timeout Code = "timeout"
	// Busy means the target is occupied and the request was not queued.
	Busy Code = "busy"
	// NoSpace means a sandbox's writable storage is full.
	NoSpace Code = "no_space"
	// Canceled means the caller went away.
	Canceled Code = "canceled"
	// InvalidIdentifier means a session identifier broke the identifier rules.
	InvalidIdentifier Code = "invalid_identifier"
	// CapacityExceeded means a pool has maxConcurrentSessions sessions and
	// cannot start another; existing sessions are unaffected.
	CapacityExceeded Code = "capacity_exceeded"
	// PrincipalSessionQuota means the caller holds as many sessions of a
	// pool as maxSessionsPerPrincipal allows; ending one of its own
	// sessions lets it start another. The pool itself may have room.
	PrincipalSessionQuota Code = "principal_session_quota"
	// SessionLost means a session's sandbox died and its state is gone. It
	// is reported once; the next request starts a new session.
	SessionLost Code = "session_lost"
	// ShuttingDown means the server is stopping and takes no new work.
	ShuttingDown Code = "shutting_down"
	// Unauthenticated means the request carried no valid credentials.
	Unauthenticated Code = "unauthenticated"
	// Forbidden means the caller is known but may not do this.
	Forbidden Code = "forbidden"
	// RateLimited means the caller sent more requests, or more at once,
	// than its limits allow; Retry-After says when to come back.
	RateLimited Code = "rate_limited"
	// Unsupported means the sandbox's runtime cannot do this (checkpoint
	// under runc, for instance).
	Unsupported Code = "unsupported"
	// CheckpointInvalid means a checkpoint image is missing, incomplete,
	// corrupt, or was taken with another runtime version or sandbox spec:
	// it cannot be restored, and nothing was started from it.
	CheckpointInvalid Code = "checkpoint_invalid"
)

// Error is an error with a stable code and a message that is safe to show
// to a client. Its cause is kept for logs and errors.Is/As.
type Error struct {
	Code Code
	// Msg is shown to clients. It must not contain host paths, container
	// ids, raw session identifiers or anything read from a sandbox.
	Msg   string
	Cause error
}

// Error implements error. It includes the cause, so it is for logs only.
func (e *Error) Error() string {
	if e.Cause == nil {
		return string(e.Code) + ": " + e.Msg
	}
	return string(e.Code) + ": " + e.Msg + ": " + e.Cause.Error()
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Cause }

// New returns an error with code and a public message.
func New(code Code, msg string) error { return &Error{Code: code, Msg: msg} }

// Newf is New with formatting. Only format values that are safe to show.
func Newf(code Code, format string, args ...any) error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// Wrap returns an error with code and a public message that keeps cause.
// It returns nil when cause is nil.
func Wrap(code Code, msg string, cause error) error {
	if cause == nil {
		return nil
	}
	return &Error{Code: code, Msg: msg, Cause: cause}
}

// Of returns the code of the outermost *Error in err's chain, Internal when
// there is none, and "" for a nil error.
func Of(err error) Code {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return Internal
}

// Public returns the message of the outermost *Error in err's chain, or a
// generic message that reveals nothing when err carries no code.
func Public(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Msg
	}
	return "internal error"
}
