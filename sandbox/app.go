package sandbox

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/sandpool/sandpool/internal/errcode"
	"github.com/sandpool/sandpool/sandbox/agentproto"
)

// App makes a sandbox a custom container: the image's own program runs
// under the agent, in place of a Python kernel, and the server reaches it
// only through the agent (Conn.DialApp), so the sandbox needs no network
// interface for it.
type App struct {
	// Command replaces the image's entrypoint and Args its command, as in
	// Kubernetes: with neither, the image's own; with Args only, the
	// image's entrypoint and these arguments.
	Command []string
	Args    []string
	// Port is the TCP port the program listens on inside the sandbox.
	Port int
	// ReadyPath, when set, must answer a GET with 2xx before the sandbox
	// is ready; otherwise an open port is enough.
	ReadyPath string
	// ReadyTimeout bounds the wait for readiness from the container's
	// start; 0: only Spec.StartTimeout bounds it.
	ReadyTimeout time.Duration
}

// AppInfo describes a custom container's application, as its agent sees it.
type AppInfo struct {
	Listening bool
	Exited    bool
	ExitCode  int
	// Error says why it could not start or how it ended (for logs: it
	// comes from inside the sandbox).
	Error string
}

// Limits of an App's command line.
const (
	maxAppArgs     = 256
	maxAppArgBytes = 64 << 10
)

func (a *App) normalize(bad func(field, format string, args ...any)) {
	if a.Port < 1 || a.Port > 65535 {
		bad("app.port", "must be 1 to 65535, not %d", a.Port)
	}
	n := 0
	for _, arg := range append(append([]string(nil), a.Command...), a.Args...) {
		if strings.ContainsRune(arg, 0) {
			bad("app.command", "an argument contains NUL")
		}
		n += len(arg)
	}
	if len(a.Command)+len(a.Args) > maxAppArgs || n > maxAppArgBytes {
		bad("app.command", "at most %d arguments and %d bytes", maxAppArgs, maxAppArgBytes)
	}
	if len(a.Command) > 0 && a.Command[0] == "" {
		bad("app.command", "the program name is empty")
	}
	if p := a.ReadyPath; p != "" && (!strings.HasPrefix(p, "/") || strings.ContainsFunc(p, func(r rune) bool { return r <= ' ' || r == 0x7f }) || len(p) > 1024) {
		bad("app.readyPath", "must be a path starting with / without spaces or control characters")
	}
}

// appConn is a connection to a custom container's application: a stream
// of the agent connection, relayed by the agent to the application's port.
type appConn struct {
	*yamux.Stream
	r io.Reader
}

func (c *appConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// DialApp opens a connection to a custom container's application port.
// It fails with a coded error: the application refuses connections, or the
// sandbox is gone or unreachable.
func (c *Conn) DialApp(ctx context.Context) (net.Conn, error) {
	st, err := c.stream(ctx, &agentproto.Request{Op: agentproto.OpDial})
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(OpTimeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	_ = st.SetReadDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = st.SetReadDeadline(time.Now()) })
	r := agentproto.NewReader(st, 64<<10)
	m, err := agentproto.ReadMsg(r)
	stop()
	if err != nil {
		st.Close()
		return nil, c.readErr(ctx, err)
	}
	switch m.Type {
	case agentproto.MsgOK:
	case agentproto.MsgFailed:
		st.Close()
		if m.Code == agentproto.FailRefused {
			return nil, errcode.Wrap(errcode.Unavailable, "the session's container does not accept connections on its target port", fmt.Errorf("agent: %s", m.Message))
		}
		return nil, failure(m)
	default:
		st.Close()
		return nil, errcode.New(errcode.Internal, "the sandbox sent an invalid response")
	}
	_ = st.SetReadDeadline(time.Time{})
	return &appConn{Stream: st, r: r.Rest(st)}, nil
}

// bootApp checks a custom container's application after its agent
// answered: it must listen, and answer ReadyPath with 2xx when set. ctx
// bounds the whole wait.
func bootApp(ctx context.Context, c *Conn, app *App, info Info) error {
	if info.App == nil {
		return errcode.New(errcode.Internal, "the sandbox agent runs no application")
	}
	if info.App.Exited {
		return errcode.Wrap(errcode.Unavailable, fmt.Sprintf("the container exited during startup (exit code %d)", info.App.ExitCode), errors.New(info.App.Error))
	}
	if !info.App.Listening {
		return errcode.Newf(errcode.Timeout, "the container did not listen on its target port %d in time", app.Port)
	}
	if app.ReadyPath == "" {
		return nil
	}
	delay := 20 * time.Millisecond
	last := "no answer"
	for {
		code, err := probe(ctx, c, app.ReadyPath)
		if err == nil {
			if code/100 == 2 {
				return nil
			}
			last = fmt.Sprintf("status %d", code)
		} else if errcode.Of(err) == errcode.SandboxGone {
			return err
		}
		select {
		case <-ctx.Done():
			return errcode.Newf(errcode.Timeout, "the container's readiness path did not answer 2xx in time (last: %s)", last)
		case <-time.After(delay):
		}
		delay = min(delay*2, 250*time.Millisecond)
	}
}

// probeTimeout bounds one readiness probe.
const probeTimeout = 2 * time.Second

// probe sends GET path to the application and returns the status code of
// its answer. Only the status line is read: this is a probe, not a client.
func probe(ctx context.Context, c *Conn, path string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	conn, err := c.DialApp(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	dl, _ := ctx.Deadline()
	_ = conn.SetDeadline(dl)
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: localhost\r\nUser-Agent: sandpool-probe\r\nConnection: close\r\n\r\n", path); err != nil {
		return 0, err
	}
	line, err := bufio.NewReader(io.LimitReader(conn, 4<<10)).ReadString('\n')
	if err != nil {
		return 0, err
	}
	// "HTTP/1.1 200 OK"
	f := strings.Fields(line)
	if len(f) < 2 || !strings.HasPrefix(f[0], "HTTP/") {
		return 0, errors.New("not an HTTP answer")
	}
	code, err := strconv.Atoi(f[1])
	if err != nil || code < 100 || code > 999 {
		return 0, errors.New("not an HTTP status")
	}
	return code, nil
}
