package sandbox

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"time"

	"github.com/sandpool/sandpool/internal/errcode"
	"github.com/sandpool/sandpool/sandbox/agentproto"
)

// Status is how an execution ended.
type Status string

// Statuses (see agentproto for their exact meaning).
const (
	StatusOK          Status = Status(agentproto.StatusOK)
	StatusError       Status = Status(agentproto.StatusError)
	StatusTimeout     Status = Status(agentproto.StatusTimeout)
	StatusInterrupted Status = Status(agentproto.StatusInterrupted)
	StatusCrashed     Status = Status(agentproto.StatusCrashed)
)

// ExecRequest is one execution.
type ExecRequest struct {
	// ID identifies the execution for Interrupt; generated when empty.
	ID   string
	Code string
	// Timeout bounds the execution; required.
	Timeout time.Duration
	// MaxOutput caps each of stdout and stderr; 0 means DefaultMaxOutput.
	MaxOutput int64
}

// DefaultMaxOutput is the per-stream output cap when a request sets none.
const DefaultMaxOutput = 1 << 20

// EventKind is the kind of an execution event.
type EventKind int

// Event kinds.
const (
	EventStdout EventKind = iota + 1
	EventStderr
	EventDisplay
	EventResult
	EventError
)

// Event is something an execution produced, delivered as it happens.
type Event struct {
	Kind EventKind
	// Text is a chunk of output (Stdout, Stderr). It is only valid during
	// the Sink call: copy it to keep it.
	Text []byte
	// Data is a MIME bundle (Display, Result): text/plain, text/html,
	// image/png (base64), ...
	Data map[string]string
	// Value is the JSON form of a primitive result (Result), or nil.
	Value json.RawMessage
	// Error is the exception user code raised (Error).
	Error *ExecError
}

// ExecError is an exception raised by user code.
type ExecError struct {
	Name      string
	Value     string
	Traceback []string
}

// Result summarises a finished execution.
type Result struct {
	ID              string
	Status          Status
	Duration        time.Duration
	StdoutBytes     int64
	StderrBytes     int64
	StdoutTruncated bool
	StderrTruncated bool
	DisplaysDropped int
	// KernelRestarted means the kernel's variables and imports are gone.
	KernelRestarted bool
	// Reason explains a timeout, interruption or crash.
	Reason string
	// Killed counts background processes killed after the execution by an
	// agent that still did (current agents let them live until the sandbox
	// ends or its kernel restarts).
	Killed int
}

// Sink receives events in order. It is called synchronously from Execute:
// a slow sink slows the execution's output (never the server's memory).
type Sink func(Event)

// NewExecID returns a random execution id.
func NewExecID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Execute runs code in the sandbox's kernel, streaming events to sink. A
// Python exception is a normal result (StatusError with an EventError); an
// error return means the execution could not be run or followed (sandbox
// gone or unreachable, canceled). Canceling ctx interrupts the execution.
func (c *Conn) Execute(ctx context.Context, req ExecRequest, sink Sink) (*Result, error) {
	if req.Timeout <= 0 {
		return nil, errcode.New(errcode.InvalidArgument, "an execution needs a positive timeout")
	}
	if len(req.Code) > agentproto.MaxCodeBytes {
		return nil, errcode.Newf(errcode.TooLarge, "code larger than %d bytes", agentproto.MaxCodeBytes)
	}
	if req.ID == "" {
		req.ID = NewExecID()
	}
	if req.MaxOutput <= 0 {
		req.MaxOutput = DefaultMaxOutput
	}
	if sink == nil {
		sink = func(Event) {}
	}
	// Canceling ctx closes our side of the stream, which tells the agent to
	// interrupt the execution.
	st, release, err := c.open(ctx, &agentproto.Request{
		Op: agentproto.OpExecute, ExecID: req.ID, Code: req.Code,
		TimeoutMS: req.Timeout.Milliseconds(), MaxOutput: req.MaxOutput,
	})
	if err != nil {
		return nil, err
	}
	defer release()
	_ = st.SetReadDeadline(time.Now().Add(req.Timeout + ExecGrace))

	r := agentproto.NewReader(st, 0)
	var out, errb int64
	displays := 0
	res := &Result{ID: req.ID}
	for {
		t, p, err := r.Next()
		if err != nil {
			return nil, c.readErr(ctx, err)
		}
		switch t {
		case agentproto.FrameStdout, agentproto.FrameStderr:
			// The agent caps output; the server does not trust it to.
			n, kind, trunc := &out, EventStdout, &res.StdoutTruncated
			if t == agentproto.FrameStderr {
				n, kind, trunc = &errb, EventStderr, &res.StderrTruncated
			}
			keep := int64(len(p))
			if *n+keep > req.MaxOutput {
				keep = max(req.MaxOutput-*n, 0)
				*trunc = true
			}
			*n += int64(len(p))
			if keep > 0 {
				sink(Event{Kind: kind, Text: p[:keep]})
			}
		case agentproto.FrameMsg:
			m, err := agentproto.DecodeMsg(p)
			if err != nil {
				return nil, c.readErr(ctx, err)
			}
			switch m.Type {
			case agentproto.MsgDisplay, agentproto.MsgResult:
				if m.Type == agentproto.MsgDisplay {
					if displays >= agentproto.MaxDisplays {
						res.DisplaysDropped++
						continue
					}
					displays++
				}
				ev := Event{Kind: EventDisplay, Data: m.Data}
				if m.Type == agentproto.MsgResult {
					ev.Kind, ev.Value = EventResult, m.Value
				}
				sink(ev)
			case agentproto.MsgError:
				if m.Error != nil {
					tb := m.Error.Traceback
					if len(tb) > agentproto.MaxTraceback {
						tb = tb[:agentproto.MaxTraceback]
					}
					sink(Event{Kind: EventError, Error: &ExecError{Name: m.Error.Name, Value: m.Error.Value, Traceback: tb}})
				}
			case agentproto.MsgDone:
				if m.Done == nil {
					return nil, errcode.New(errcode.Internal, "the sandbox sent an invalid response")
				}
				return finishResult(res, m.Done)
			case agentproto.MsgFailed:
				return nil, failure(m)
			default:
				return nil, c.readErr(ctx, agentproto.ErrBadFrame)
			}
		default:
			return nil, c.readErr(ctx, agentproto.ErrBadFrame)
		}
	}
}

func finishResult(res *Result, d *agentproto.Done) (*Result, error) {
	switch s := Status(d.Status); s {
	case StatusOK, StatusError, StatusTimeout, StatusInterrupted, StatusCrashed:
		res.Status = s
	default:
		return nil, errcode.New(errcode.Internal, "the sandbox sent an invalid response")
	}
	res.Duration = time.Duration(d.DurationMS) * time.Millisecond
	res.StdoutBytes, res.StderrBytes = d.StdoutBytes, d.StderrBytes
	res.StdoutTruncated = res.StdoutTruncated || d.StdoutTruncated
	res.StderrTruncated = res.StderrTruncated || d.StderrTruncated
	res.DisplaysDropped += d.DisplaysDropped
	res.KernelRestarted = d.KernelRestarted
	res.Reason = clip(d.Reason, 512)
	res.Killed = d.Killed
	return res, nil
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// Output is everything one execution produced, gathered by a Collector.
type Output struct {
	Stdout   []byte
	Stderr   []byte
	Result   *Event
	Displays []Event
	Error    *ExecError
}

// Collector gathers events into an Output with a memory bound: output past
// Max bytes per stream is dropped (Result.*Truncated tells), and display
// data past MaxDisplayBytes in total is dropped.
type Collector struct {
	Max             int64
	MaxDisplayBytes int
	Out             Output
	displayBytes    int
	DroppedDisplays int
}

// Sink returns the collector's sink.
func (c *Collector) Sink() Sink {
	if c.Max <= 0 {
		c.Max = DefaultMaxOutput
	}
	if c.MaxDisplayBytes <= 0 {
		c.MaxDisplayBytes = 32 << 20
	}
	return func(ev Event) {
		switch ev.Kind {
		case EventStdout:
			c.Out.Stdout = appendCapped(c.Out.Stdout, ev.Text, c.Max)
		case EventStderr:
			c.Out.Stderr = appendCapped(c.Out.Stderr, ev.Text, c.Max)
		case EventDisplay, EventResult:
			n := 0
			for k, v := range ev.Data {
				n += len(k) + len(v)
			}
			if c.displayBytes+n > c.MaxDisplayBytes {
				c.DroppedDisplays++
				return
			}
			c.displayBytes += n
			if ev.Kind == EventResult {
				e := ev
				c.Out.Result = &e
			} else {
				c.Out.Displays = append(c.Out.Displays, ev)
			}
		case EventError:
			c.Out.Error = ev.Error
		}
	}
}

func appendCapped(b, p []byte, max int64) []byte {
	room := max - int64(len(b))
	if room <= 0 {
		return b
	}
	if int64(len(p)) > room {
		p = p[:room]
	}
	return append(b, p...)
}
