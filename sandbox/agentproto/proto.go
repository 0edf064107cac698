package agentproto

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
)

// Version is the protocol version. The agent reports it in Info; the server
// refuses an agent with another version.
const Version = 1

// Limits both ends enforce. They are constants so tests and reviewers can
// find them; a peer that exceeds one is treated as broken.
const (
	// MaxFrame bounds one frame (type byte plus payload).
	MaxFrame = 4 << 20
	// ChunkSize is the largest output or file chunk a sender puts in one frame.
	ChunkSize = 64 << 10
	// MaxCodeBytes bounds the source code of one execution.
	MaxCodeBytes = 1 << 20
	// MaxPathBytes bounds a file path relative to the data directory.
	MaxPathBytes = 4096
	// MaxNameBytes bounds one path segment.
	MaxNameBytes = 255
	// MaxListEntries bounds a directory listing; longer listings are truncated.
	MaxListEntries = 10000
	// MaxDisplays bounds display events in one execution; later ones are dropped.
	MaxDisplays = 64
	// MaxTraceback bounds the traceback lines of one error event.
	MaxTraceback = 200
)

// DataDir is the directory inside the sandbox that holds the session's files.
const DataDir = "/mnt/data"

// SocketName is the abstract unix socket the agent daemon listens on inside
// the sandbox (Linux abstract namespace: a leading NUL, no file).
const SocketName = "@sandpool-agent-v1"

// Op names an operation. Each operation runs on its own multiplexed stream:
// the server opens the stream and writes one Request message first.
type Op string

// Operations.
const (
	OpInfo      Op = "info"
	OpExecute   Op = "execute"
	OpInterrupt Op = "interrupt"
	OpPut       Op = "file.put"
	OpGet       Op = "file.get"
	OpStat      Op = "file.stat"
	OpList      Op = "file.list"
	OpDelete    Op = "file.delete"
	// OpDial connects the stream to the application's port (custom
	// containers): after an ok reply the stream carries raw TCP bytes both
	// ways. The port is the agent's own setting, never the request's.
	OpDial Op = "app.dial"
)

// Request is the first message on every stream.
type Request struct {
	Op Op `json:"op"`

	// Info: wait until the kernel is ready, or in a custom container the
	// application listens or exits (bounded by WaitMS).
	WaitKernel bool  `json:"wait_kernel,omitempty"`
	WaitMS     int64 `json:"wait_ms,omitempty"`

	// Execute and Interrupt.
	ExecID string `json:"exec_id,omitempty"`
	// Execute.
	Code      string `json:"code,omitempty"`
	TimeoutMS int64  `json:"timeout_ms,omitempty"`
	// MaxOutput caps the bytes of each of stdout and stderr forwarded for
	// this execution; the rest is discarded and the done event says so.
	MaxOutput int64 `json:"max_output,omitempty"`

	// File operations: a path relative to DataDir.
	Path string `json:"path,omitempty"`
	// Put and Get: the largest file accepted.
	MaxSize int64 `json:"max_size,omitempty"`
}

// MsgType names a message the agent sends.
type MsgType string

// Message types sent by the agent (and End, also sent by the server on put).
const (
	MsgInfo    MsgType = "info"
	MsgDisplay MsgType = "display"
	MsgResult  MsgType = "result"
	MsgError   MsgType = "error"
	MsgDone    MsgType = "done"
	MsgFile    MsgType = "file"
	MsgFiles   MsgType = "files"
	MsgEnd     MsgType = "end"
	MsgOK      MsgType = "ok"
	MsgFailed  MsgType = "failed"
)

// Message is every non-request message. Only the fields of its Type are set.
type Message struct {
	Type MsgType `json:"type"`

	Info *Info `json:"info,omitempty"`

	// Display and Result: a MIME bundle (text/plain, text/html, image/png as
	// base64, ...). Result may also carry Value, the JSON form of a primitive
	// result (number, string, bool).
	Data  map[string]string `json:"data,omitempty"`
	Value json.RawMessage   `json:"value,omitempty"`

	// Error: the exception raised by user code.
	Error *ExecError `json:"error,omitempty"`

	// Done ends an execution.
	Done *Done `json:"done,omitempty"`

	// File and Files.
	File    *FileInfo  `json:"file,omitempty"`
	Files   []FileInfo `json:"files,omitempty"`
	Partial bool       `json:"partial,omitempty"`

	// End closes a data transfer; Size is the number of bytes sent.
	Size int64 `json:"size,omitempty"`

	// Failed.
	Code    FailCode `json:"code,omitempty"`
	Message string   `json:"message,omitempty"`
}

// ExecError describes an exception raised by user code.
type ExecError struct {
	Name      string   `json:"ename"`
	Value     string   `json:"evalue"`
	Traceback []string `json:"traceback,omitempty"`
}

// Status is how an execution ended.
type Status string

// Statuses.
const (
	// StatusOK: the code ran to the end.
	StatusOK Status = "ok"
	// StatusError: user code raised an exception (see the error event).
	StatusError Status = "error"
	// StatusTimeout: the execution ran past its timeout and was interrupted,
	// or, when KernelRestarted is set, the kernel was killed and restarted.
	StatusTimeout Status = "timeout"
	// StatusInterrupted: an interrupt request stopped the execution.
	StatusInterrupted Status = "interrupted"
	// StatusCrashed: the kernel died during the execution (killed, out of
	// memory, os._exit); it was restarted and its state is gone.
	StatusCrashed Status = "crashed"
)

// Done is the final event of an execution.
type Done struct {
	Status          Status `json:"status"`
	DurationMS      int64  `json:"duration_ms"`
	StdoutBytes     int64  `json:"stdout_bytes"`
	StderrBytes     int64  `json:"stderr_bytes"`
	StdoutTruncated bool   `json:"stdout_truncated,omitempty"`
	StderrTruncated bool   `json:"stderr_truncated,omitempty"`
	DisplaysDropped int    `json:"displays_dropped,omitempty"`
	// KernelRestarted means the kernel's state (variables, imports) is gone.
	KernelRestarted bool `json:"kernel_restarted,omitempty"`
	// Reason explains a timeout, interruption or crash in a sentence.
	Reason string `json:"reason,omitempty"`
	// Killed counted background processes killed after the execution;
	// background processes now live until the sandbox ends or its kernel
	// restarts, so the agent leaves it 0.
	Killed int `json:"killed,omitempty"`
}

// Info describes the agent, its kernel and what the sandbox looks like from
// inside. The server uses Identity for the isolation gate.
type Info struct {
	Protocol int      `json:"protocol"`
	Agent    string   `json:"agent"`
	Identity Identity `json:"identity"`
	Kernel   Kernel   `json:"kernel"`
	// App is set in a custom container: the application the agent runs
	// instead of a kernel.
	App *App `json:"app,omitempty"`
	UID int  `json:"uid"`
}

// AppState is the lifecycle state of a custom container's application.
type AppState string

// Application states.
const (
	// AppStarting: started, its port does not accept connections yet.
	AppStarting AppState = "starting"
	// AppListening: its port accepts connections.
	AppListening AppState = "listening"
	// AppExited: it exited; the agent (and so the sandbox) ends soon after.
	AppExited AppState = "exited"
)

// App describes a custom container's application.
type App struct {
	State AppState `json:"state"`
	Port  int      `json:"port"`
	// ExitCode is set once it exited (-1 when killed by a signal).
	ExitCode int `json:"exit_code,omitempty"`
	// Error says why it could not start or how it ended.
	Error string `json:"error,omitempty"`
}

// Identity is what the agent sees of the kernel it runs on.
type Identity struct {
	Release    string `json:"release"`
	Version    string `json:"version"`
	BootID     string `json:"boot_id"`
	Hypervisor bool   `json:"hypervisor"`
	// Syslog is the start of the kernel log when it is readable (gVisor
	// serves a synthetic one; a host kernel refuses unprivileged reads).
	Syslog string `json:"syslog,omitempty"`
}

// GVisorVersion is the synthetic uname version every gVisor release reports.
const GVisorVersion = "#1 SMP Sun Jan 10 15:06:54 PST 2016"

// LooksLikeGVisor reports an identity that gVisor produces: its synthetic
// kernel log, or its synthetic uname version with either no boot id
// (releases of 2022, which report release 4.4.0) or a release ending in
// "-gvisor" (current ones report 4.19.0-gvisor and a boot id of their own).
// (The kernel log is usually unreadable: sandpool's seccomp profile denies
// syslog.) The isolation gate also checks that the evidence is not the
// host's own kernel.
func LooksLikeGVisor(id Identity) bool {
	if strings.Contains(id.Syslog, "gVisor") {
		return true
	}
	return id.Version == GVisorVersion && (id.BootID == "" || strings.HasSuffix(id.Release, "-gvisor"))
}

// KernelState is the lifecycle state of the Python kernel.
type KernelState string

// Kernel states.
const (
	KernelStarting KernelState = "starting"
	KernelReady    KernelState = "ready"
	KernelFailed   KernelState = "failed"
)

// Kernel describes the Python kernel.
type Kernel struct {
	State      KernelState `json:"state"`
	Python     string      `json:"python,omitempty"`
	IPython    bool        `json:"ipython"`
	PreloadMS  int64       `json:"preload_ms,omitempty"`
	Executions int64       `json:"executions"`
	Restarts   int64       `json:"restarts"`
	// Generation increases each time the kernel is (re)started, so a caller
	// can tell whether state survived between two observations.
	Generation int64  `json:"generation"`
	Error      string `json:"error,omitempty"`
}

// FileType is the kind of a directory entry.
type FileType string

// File types.
const (
	TypeFile    FileType = "file"
	TypeDir     FileType = "dir"
	TypeSymlink FileType = "symlink"
	TypeOther   FileType = "other"
)

// FileInfo describes a file in the data directory.
type FileInfo struct {
	Name    string    `json:"name"`
	Type    FileType  `json:"type"`
	Size    int64     `json:"size"`
	ModTime time.Time `json:"mtime"`
}

// FailCode classifies a failed operation.
type FailCode string

// Failure codes.
const (
	FailBadRequest FailCode = "bad_request"
	FailBadPath    FailCode = "bad_path"
	FailNotFound   FailCode = "not_found"
	FailNotRegular FailCode = "not_regular"
	FailIsDir      FailCode = "is_dir"
	FailNotEmpty   FailCode = "not_empty"
	FailTooLarge   FailCode = "too_large"
	FailNoSpace    FailCode = "no_space"
	FailKernel     FailCode = "kernel_unavailable"
	// FailRefused: the application does not accept connections.
	FailRefused FailCode = "refused"
	FailIO      FailCode = "io"
)

// WriteMsg encodes m as a message frame.
func WriteMsg(w io.Writer, m *Message) error {
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("agentproto: encode %s: %w", m.Type, err)
	}
	return WriteFrame(w, FrameMsg, b)
}

// WriteRequest encodes r as a message frame.
func WriteRequest(w io.Writer, r *Request) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("agentproto: encode request: %w", err)
	}
	return WriteFrame(w, FrameMsg, b)
}

// ReadMsg reads the next frame and requires it to be a message.
func ReadMsg(r *Reader) (*Message, error) {
	t, p, err := r.Next()
	if err != nil {
		return nil, err
	}
	if t != FrameMsg {
		return nil, fmt.Errorf("%w: expected a message, got %q", ErrBadFrame, t)
	}
	return DecodeMsg(p)
}

// DecodeMsg decodes the payload of a message frame.
func DecodeMsg(p []byte) (*Message, error) {
	var m Message
	if err := json.Unmarshal(p, &m); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadFrame, err)
	}
	return &m, nil
}

// ReadRequest reads the request that opens a stream.
func ReadRequest(r *Reader) (*Request, error) {
	t, p, err := r.Next()
	if err != nil {
		return nil, err
	}
	if t != FrameMsg {
		return nil, fmt.Errorf("%w: expected a request", ErrBadFrame)
	}
	var req Request
	if err := json.Unmarshal(p, &req); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadFrame, err)
	}
	return &req, nil
}

// Failed returns a failure message.
func Failed(code FailCode, msg string) *Message {
	return &Message{Type: MsgFailed, Code: code, Message: msg}
}
