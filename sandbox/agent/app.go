package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/yamux"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/sandpool/sandpool/sandbox/agentproto"
)

// appConfig configures a custom container's application.
type appConfig struct {
	argv []string
	dir  string
	env  []string
	port int
}

// app supervises a custom container's application: the image's own program,
// run in place of a Python kernel. The agent only starts it, watches its
// port and relays connections to it; when it exits the sandbox ends.
type app struct {
	cfg    appConfig
	log    zerolog.Logger
	reaper *reaper

	listening chan struct{} // closed once the port accepted a connection
	exited    chan struct{} // closed once it exited (or failed to start)
	pid       int

	mu     sync.Mutex
	status string // how it ended
	code   int
}

// exitNotFound is the shell's status for a command that cannot be found.
const exitNotFound = 127

// startApp starts the application and the watch on its port. A program
// that cannot be started is reported as exited at once.
func startApp(cfg appConfig, r *reaper, log zerolog.Logger) *app {
	a := &app{cfg: cfg, log: log, reaper: r, listening: make(chan struct{}), exited: make(chan struct{})}
	if err := a.start(); err != nil {
		a.status, a.code = err.Error(), exitNotFound
		close(a.exited)
		return a
	}
	go a.watchPort()
	return a
}

func (a *app) start() error {
	if len(a.cfg.argv) == 0 {
		return errors.New("no command to run")
	}
	path, err := exec.LookPath(a.cfg.argv[0])
	if err != nil {
		return fmt.Errorf("command %q not found in the image", a.cfg.argv[0])
	}
	devnull, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open /dev/null: %w", err)
	}
	defer unix.Close(devnull)
	attr := &syscall.ProcAttr{
		Dir: a.cfg.dir,
		Env: a.cfg.env,
		// Its output is the container's log, as in any container.
		Files: []uintptr{uintptr(devnull), 1, 2},
		Sys:   &syscall.SysProcAttr{Setsid: true},
	}
	argv := append([]string{path}, a.cfg.argv[1:]...)
	pid, wait, err := a.reaper.start(argv, attr)
	if err != nil {
		return fmt.Errorf("start %q: %w", a.cfg.argv[0], err)
	}
	a.pid = pid
	go func() {
		ws := <-wait
		a.mu.Lock()
		a.status = "the application exited: " + describeExit(ws)
		a.code = ws.ExitStatus()
		if ws.Signaled() {
			a.code = 128 + int(ws.Signal())
		}
		a.mu.Unlock()
		close(a.exited)
		a.log.Warn().Int("code", a.code).Msg("application exited")
	}()
	return nil
}

// addr is where the application listens, seen from inside the sandbox.
func (a *app) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(a.cfg.port)) }

// watchPort polls the port until it accepts a connection or the
// application exits.
func (a *app) watchPort() {
	delay := 10 * time.Millisecond
	for {
		c, err := net.DialTimeout("tcp", a.addr(), time.Second)
		if err == nil {
			c.Close()
			close(a.listening)
			return
		}
		select {
		case <-a.exited:
			return
		case <-time.After(delay):
		}
		delay = min(delay*2, 100*time.Millisecond)
	}
}

// state reports the application; with wait it first waits (bounded by ctx)
// until the port accepts connections or the application exited.
func (a *app) state(ctx context.Context, wait bool) agentproto.App {
	if wait {
		select {
		case <-a.listening:
		case <-a.exited:
		case <-ctx.Done():
		}
	}
	st := agentproto.App{State: agentproto.AppStarting, Port: a.cfg.port}
	switch {
	case isClosed(a.exited):
		a.mu.Lock()
		st.State, st.ExitCode, st.Error = agentproto.AppExited, a.code, a.status
		a.mu.Unlock()
	case isClosed(a.listening):
		st.State = agentproto.AppListening
	}
	return st
}

// exitCode is the application's exit status, once it exited.
func (a *app) exitCode() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.code
}

// kill ends the application's process group.
func (a *app) kill() {
	if a.pid > 0 && !isClosed(a.exited) {
		_ = unix.Kill(-a.pid, unix.SIGKILL)
	}
}

// dialTimeout bounds connecting to the application's port.
const dialTimeout = 5 * time.Second

// dial connects st to the application's port and relays bytes both ways
// until both directions ended. rest reads what the server sent after its
// request.
func (a *app) dial(st *yamux.Stream, rest io.Reader, em *emitter) {
	c, err := net.DialTimeout("tcp", a.addr(), dialTimeout)
	if err != nil {
		_ = em.msg(agentproto.Failed(agentproto.FailRefused, "the application does not accept connections"))
		return
	}
	tc := c.(*net.TCPConn)
	defer tc.Close()
	if em.msg(&agentproto.Message{Type: agentproto.MsgOK}) != nil {
		return
	}
	_ = st.SetDeadline(time.Time{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(tc, rest)
		_ = tc.CloseWrite() // the server finished its request
	}()
	_, _ = io.Copy(st, tc)
	// The application finished its side: close ours (a half close), and
	// end the other direction if the server keeps it open.
	st.Close()
	select {
	case <-done:
	case <-time.After(agentproto.YamuxConfig().StreamCloseTimeout):
	}
	tc.Close()
	_ = st.SetReadDeadline(time.Now())
	<-done
}
