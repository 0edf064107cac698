package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/sandpool/sandpool/internal/errcode"
	"github.com/sandpool/sandpool/sandbox/agentproto"
)

// Dialer opens a fresh byte stream to a sandbox's agent (for podman: an exec
// of the agent bridge). Conn calls it again whenever the stream breaks.
type Dialer interface {
	Dial(ctx context.Context) (io.ReadWriteCloser, error)
}

// DialFunc adapts a function to Dialer.
type DialFunc func(ctx context.Context) (io.ReadWriteCloser, error)

// Dial implements Dialer.
func (f DialFunc) Dial(ctx context.Context) (io.ReadWriteCloser, error) { return f(ctx) }

// Prober is an optional Dialer capability: whether the sandbox still runs.
// Conn uses it to tell a dead sandbox (state lost) from a broken
// connection (state probably intact).
type Prober interface {
	Running(ctx context.Context) (bool, error)
}

// Sentinel errors; each also carries an errcode.
var (
	// ErrGone: the sandbox stopped; its state is lost.
	ErrGone = errcode.New(errcode.SandboxGone, "the sandbox is no longer running; its state is lost")
	// ErrClosed: the Conn was closed.
	ErrClosed = errcode.New(errcode.SandboxUnreachable, "the sandbox connection is closed")
)

// Timeouts of the control protocol. Every read from the agent has a deadline.
const (
	// DialTimeout bounds one dial of the agent.
	DialTimeout = 15 * time.Second
	// OpTimeout bounds a short operation (info, stat, list, delete, interrupt)
	// and each read or write during a file transfer.
	OpTimeout = 30 * time.Second
	// ExecGrace is added to an execution's timeout for the agent to
	// interrupt, kill and restart a kernel and report back.
	ExecGrace = 30 * time.Second
)

// Conn is a client of one sandbox's agent. It dials lazily, multiplexes
// operations over one connection, and redials after the connection breaks
// (a restarted server or podman service), so kernel state that survived in
// the sandbox is found again. It is safe for concurrent use.
type Conn struct {
	dialer Dialer

	mu     sync.Mutex // held while dialing
	sess   *yamux.Session
	closed bool
	wg     sync.WaitGroup // refuseStreams of each session
	ops    atomic.Int64   // operations between open and release
}

// NewConn returns a Conn that reaches the agent through d.
func NewConn(d Dialer) *Conn { return &Conn{dialer: d} }

// Close closes the connection; the sandbox itself keeps running.
func (c *Conn) Close() error {
	c.mu.Lock()
	c.closed = true
	var err error
	if c.sess != nil {
		err = c.sess.Close()
	}
	c.mu.Unlock()
	c.wg.Wait()
	return err
}

// InFlight is the number of operations (executions, file transfers,
// info requests) in progress on the connection.
func (c *Conn) InFlight() int { return int(c.ops.Load()) }

// Reset drops the current connection; the next operation dials again.
func (c *Conn) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sess != nil {
		c.sess.Close()
		c.sess = nil
	}
}

func (c *Conn) session(ctx context.Context) (*yamux.Session, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	if c.sess != nil && !c.sess.IsClosed() {
		return c.sess, nil
	}
	dctx, cancel := context.WithTimeout(ctx, DialTimeout)
	defer cancel()
	rwc, err := c.dialer.Dial(dctx)
	if err != nil {
		return nil, c.classify(ctx, err)
	}
	sess, err := agentproto.Client(rwc)
	if err != nil {
		rwc.Close()
		return nil, errcode.Wrap(errcode.SandboxUnreachable, "cannot reach the sandbox", err)
	}
	c.sess = sess
	c.wg.Add(1)
	go c.refuseStreams(sess)
	return sess, nil
}

// refuseStreams drops the connection when the agent opens a stream. The
// server opens every stream; the agent never does, so one that does is
// compromised, and each stream it opened but nobody accepted would hold
// its receive window (256 KiB) for the connection's life. The client's
// small accept backlog (agentproto.Client) bounds what arrives before the
// connection is gone. The next operation dials again.
func (c *Conn) refuseStreams(sess *yamux.Session) {
	defer c.wg.Done()
	st, err := sess.AcceptStream()
	if err != nil {
		return // the session ended
	}
	st.Close()
	sess.Close()
}

// classify turns a connection failure into a coded error: the sandbox is
// gone, the engine is unavailable, or the sandbox is unreachable.
func (c *Conn) classify(ctx context.Context, err error) error {
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return errcode.Wrap(errcode.Canceled, "the request was canceled", err)
	}
	var ce *errcode.Error
	if errors.As(err, &ce) {
		return err // the dialer already knows (engine unavailable, gone)
	}
	if p, ok := c.dialer.(Prober); ok {
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		running, perr := p.Running(pctx)
		if perr == nil && !running {
			return fmt.Errorf("%w (%v)", ErrGone, err)
		}
		if perr != nil && errcode.Of(perr) != errcode.Internal {
			return perr
		}
	}
	return errcode.Wrap(errcode.SandboxUnreachable, "lost the connection to the sandbox", err)
}

// open opens a stream for one operation, writes its request, and ties the
// stream to ctx: when ctx ends, our side is closed (to the agent that means
// "the client went away": an execution is interrupted, an upload dropped)
// and reads and writes in progress return at once. The caller must call
// the returned release when done with the stream.
func (c *Conn) open(ctx context.Context, req *agentproto.Request) (*yamux.Stream, func(), error) {
	c.ops.Add(1)
	st, err := c.stream(ctx, req)
	if err != nil {
		c.ops.Add(-1)
		return nil, nil, err
	}
	stop := context.AfterFunc(ctx, func() {
		st.Close()
		_ = st.SetDeadline(time.Now())
	})
	var once sync.Once
	return st, func() {
		stop()
		st.Close()
		once.Do(func() { c.ops.Add(-1) })
	}, nil
}

// stream opens a stream for one operation and writes its request. A broken
// connection is redialed once.
func (c *Conn) stream(ctx context.Context, req *agentproto.Request) (*yamux.Stream, error) {
	for attempt := 0; ; attempt++ {
		sess, err := c.session(ctx)
		if err != nil {
			return nil, err
		}
		st, err := sess.OpenStream()
		if err == nil {
			_ = st.SetWriteDeadline(time.Now().Add(OpTimeout))
			if err = agentproto.WriteRequest(st, req); err == nil {
				return st, nil
			}
			st.Close()
		}
		if attempt > 0 || !sess.IsClosed() {
			return nil, c.classify(ctx, err)
		}
		c.Reset()
	}
}

// failure converts an agent's failed message into a coded error. The agent's
// own text goes to the cause only: it is not for clients.
func failure(m *agentproto.Message) error {
	cause := fmt.Errorf("agent: %s: %s", m.Code, m.Message)
	switch m.Code {
	case agentproto.FailBadPath:
		return errcode.Wrap(errcode.InvalidArgument, "invalid file path", cause)
	case agentproto.FailBadRequest:
		return errcode.Wrap(errcode.InvalidArgument, "invalid request", cause)
	case agentproto.FailNotFound:
		return errcode.Wrap(errcode.NotFound, "file not found", cause)
	case agentproto.FailNotRegular:
		return errcode.Wrap(errcode.InvalidArgument, "not a regular file (symlinks, FIFOs and devices are not served)", cause)
	case agentproto.FailIsDir:
		return errcode.Wrap(errcode.InvalidArgument, "is a directory", cause)
	case agentproto.FailNotEmpty:
		return errcode.Wrap(errcode.InvalidArgument, "directory not empty", cause)
	case agentproto.FailTooLarge:
		return errcode.Wrap(errcode.TooLarge, "larger than the limit", cause)
	case agentproto.FailNoSpace:
		return errcode.Wrap(errcode.NoSpace, "no space left in the sandbox", cause)
	case agentproto.FailKernel:
		return errcode.Wrap(errcode.Unavailable, "the Python kernel is not available", cause)
	}
	return errcode.Wrap(errcode.Internal, "the sandbox failed the operation", cause)
}

// readErr classifies an error reading from the agent.
func (c *Conn) readErr(ctx context.Context, err error) error {
	switch {
	case ctx.Err() != nil:
		return errcode.Wrap(errcode.Canceled, "the request was canceled", ctx.Err())
	case errors.Is(err, agentproto.ErrFrameTooLarge), errors.Is(err, agentproto.ErrBadFrame):
		// A misbehaving agent: drop the connection, it cannot be resynced.
		c.Reset()
		return errcode.Wrap(errcode.Internal, "the sandbox sent an invalid response", err)
	case errors.Is(err, os.ErrDeadlineExceeded), isTimeout(err):
		return errcode.Wrap(errcode.Timeout, "the sandbox did not answer in time", err)
	}
	return c.classify(ctx, err)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// roundTrip runs a request/reply operation and returns the reply.
func (c *Conn) roundTrip(ctx context.Context, req *agentproto.Request, timeout time.Duration) (*agentproto.Message, error) {
	st, release, err := c.open(ctx, req)
	if err != nil {
		return nil, err
	}
	defer release()
	_ = st.SetReadDeadline(time.Now().Add(timeout))
	m, err := agentproto.ReadMsg(agentproto.NewReader(st, 0))
	if err != nil {
		return nil, c.readErr(ctx, err)
	}
	if m.Type == agentproto.MsgFailed {
		return nil, failure(m)
	}
	return m, nil
}

// KernelInfo describes the Python kernel of a sandbox.
type KernelInfo struct {
	Ready      bool
	Error      string
	Python     string
	IPython    bool
	Preload    time.Duration
	Executions int64
	Restarts   int64
	// Generation changes whenever the kernel restarts: equal generations
	// mean the kernel's state survived between two observations.
	Generation int64
}

// Info is what the agent reports about itself and its sandbox.
type Info struct {
	AgentVersion string
	UID          int
	Identity     Identity
	Kernel       KernelInfo
	// App is set for a custom container.
	App *AppInfo
}

// Info asks the agent about itself. With waitKernel it first waits (up to
// wait) for the kernel to be ready.
func (c *Conn) Info(ctx context.Context, waitKernel bool, wait time.Duration) (Info, error) {
	m, err := c.roundTrip(ctx, &agentproto.Request{Op: agentproto.OpInfo, WaitKernel: waitKernel, WaitMS: wait.Milliseconds()}, OpTimeout+wait)
	if err != nil {
		return Info{}, err
	}
	if m.Type != agentproto.MsgInfo || m.Info == nil {
		return Info{}, errcode.New(errcode.Internal, "the sandbox sent an invalid response")
	}
	in := m.Info
	if in.Protocol != agentproto.Version {
		return Info{}, errcode.Newf(errcode.Internal, "the sandbox agent speaks protocol %d, not %d", in.Protocol, agentproto.Version)
	}
	var app *AppInfo
	if in.App != nil {
		app = &AppInfo{Listening: in.App.State == agentproto.AppListening, Exited: in.App.State == agentproto.AppExited,
			ExitCode: in.App.ExitCode, Error: in.App.Error}
	}
	return Info{
		App:          app,
		AgentVersion: in.Agent,
		UID:          in.UID,
		Identity: Identity{Release: in.Identity.Release, Version: in.Identity.Version, BootID: in.Identity.BootID,
			Hypervisor: in.Identity.Hypervisor, Syslog: in.Identity.Syslog},
		Kernel: KernelInfo{
			Ready: in.Kernel.State == agentproto.KernelReady, Error: in.Kernel.Error,
			Python: in.Kernel.Python, IPython: in.Kernel.IPython,
			Preload:    time.Duration(in.Kernel.PreloadMS) * time.Millisecond,
			Executions: in.Kernel.Executions, Restarts: in.Kernel.Restarts, Generation: in.Kernel.Generation,
		},
	}, nil
}

// Interrupt stops the execution with id if it is running.
func (c *Conn) Interrupt(ctx context.Context, id string) error {
	_, err := c.roundTrip(ctx, &agentproto.Request{Op: agentproto.OpInterrupt, ExecID: id}, OpTimeout)
	return err
}
