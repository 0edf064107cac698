// Package agent is the daemon that runs inside every sandbox as its PID 1. It
// supervises the Python kernel, serves the data directory, and answers the
// server over the agentproto protocol. It trusts only the server (a peer with
// the bridge uid) and treats the kernel and everything it starts as untrusted:
// output is capped, event frames are bounded, and whole process trees are
// killed. It is imported only by cmd/sandpool-agent.
package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/yamux"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/sandpool/sandpool/sandbox/agentproto"
)

// Config configures an Agent. The zero value of each field means its default.
type Config struct {
	// DataDir holds the session's files; default agentproto.DataDir.
	DataDir string
	// TokenHash is the SHA-256 of the token every connection must present
	// in its hello (see agentproto.ReadHello).
	TokenHash [32]byte
	// Python is the interpreter; default "python3".
	Python string
	// Env is the kernel's environment; default the agent's own.
	Env []string
	// Preload lists modules imported before the kernel reports ready.
	Preload []string
	// KernelMemory caps the kernel's address space (RLIMIT_AS) in bytes, so
	// a memory bomb raises MemoryError instead of getting the whole sandbox
	// killed (gVisor kills the sandbox on a cgroup OOM). 0: no cap.
	KernelMemory int64
	// NoIPython forces the plain exec runner.
	NoIPython bool
	// StartTimeout bounds a kernel start; default 60s.
	StartTimeout time.Duration
	// InterruptGrace is how long an interrupted kernel gets before it is
	// killed; default 2s.
	InterruptGrace time.Duration
	// Init says the agent is PID 1 of a sandbox: it reaps orphans and may
	// kill every process of its uid.
	Init bool
	// AppArgv, when set, makes the sandbox a custom container: the agent
	// runs this program (in AppDir, with Env) instead of a Python kernel and
	// relays connections to AppPort on loopback.
	AppArgv []string
	AppPort int
	AppDir  string
	// Version is reported in Info.
	Version string
	Log     zerolog.Logger
}

func (c *Config) setDefaults() {
	if c.DataDir == "" {
		c.DataDir = agentproto.DataDir
	}
	if c.Python == "" {
		c.Python = "python3"
	}
	if c.Env == nil {
		c.Env = os.Environ()
	}
	if c.StartTimeout == 0 {
		c.StartTimeout = 60 * time.Second
	}
	if c.InterruptGrace == 0 {
		c.InterruptGrace = 2 * time.Second
	}
}

// Agent is the in-sandbox daemon.
type Agent struct {
	cfg      Config
	log      zerolog.Logger
	reaper   *reaper
	kernel   *kernel // nil in a custom container
	app      *app    // nil unless in a custom container
	files    files
	identity agentproto.Identity

	mu      sync.Mutex
	session *yamux.Session // the current server connection
	closed  bool
	wg      sync.WaitGroup
}

// New returns an agent and starts its kernel in the background, or in a
// custom container its application.
func New(cfg Config) (*Agent, error) {
	cfg.setDefaults()
	st, err := os.Stat(cfg.DataDir)
	if err != nil || !st.IsDir() {
		return nil, fmt.Errorf("data directory %q is not usable", cfg.DataDir)
	}
	a := &Agent{cfg: cfg, log: cfg.Log, files: files{root: cfg.DataDir}, identity: readIdentity()}
	a.reaper = newReaper(cfg.Init)
	if len(cfg.AppArgv) > 0 {
		if cfg.AppPort < 1 || cfg.AppPort > 65535 {
			return nil, fmt.Errorf("application port %d is not a TCP port", cfg.AppPort)
		}
		a.app = startApp(appConfig{argv: cfg.AppArgv, dir: cfg.AppDir, env: cfg.Env, port: cfg.AppPort}, a.reaper, cfg.Log)
		return a, nil
	}
	gvisor := agentproto.LooksLikeGVisor(a.identity)
	a.kernel = newKernel(kernelConfig{
		python:         cfg.Python,
		dir:            cfg.DataDir,
		env:            cfg.Env,
		asLimit:        cfg.KernelMemory,
		nprocLimit:     kernelNproc(cfg.Init),
		forkBudget:     forkBudget(cfg.Init, gvisor),
		preload:        cfg.Preload,
		noIPython:      cfg.NoIPython,
		startTimeout:   cfg.StartTimeout,
		interruptGrace: cfg.InterruptGrace,
		init:           cfg.Init,
		gvisor:         gvisor,
	}, a.reaper, cfg.Log)
	a.kernel.warm()
	return a, nil
}

// kernelNproc is the kernel's RLIMIT_NPROC in a sandbox: the sandbox's
// own (its pids limit), less room for the agent's threads, which count
// against the same uid. A Go program that cannot start a thread dies, and
// with the agent the sandbox; the battery's zombies (R9) found it.
func kernelNproc(init bool) uint64 {
	var rl unix.Rlimit
	if !init || unix.Getrlimit(unix.RLIMIT_NPROC, &rl) != nil || rl.Cur == unix.RLIM_INFINITY || rl.Cur < 128 {
		return 0
	}
	return rl.Cur - max(32, rl.Cur/8)
}

// forkCost is what one forked copy of the kernel costs a gVisor sandbox's
// memory (measured with numpy, pandas and matplotlib loaded: 28-31 MiB
// under the 2022 gVisor, 38 MiB under the current one; gVisor copies on
// write in 2 MiB units).
const forkCost = 40 << 20

// forkBudget is how many processes the kernel's os.fork may bring a gVisor
// sandbox to: what its memory holds after a reserve for the agent, the
// Sentry and the kernel itself. gVisor kills the whole sandbox when its
// memory runs out, so a fork bomb must meet EAGAIN before that. Under
// Linux the OOM killer takes the kernel, not the sandbox, and forks are
// cheap: no budget (0).
func forkBudget(init, gvisor bool) int {
	if !init || !gvisor {
		return 0
	}
	total := memTotal()
	if total <= 0 {
		return 0
	}
	// Half the memory stays for the agent, the Sentry and what the
	// processes write once forked (a quarter was too little under load).
	reserve := max(256<<20, total/2)
	return int(max(total-reserve, 0)/forkCost) + 8 // the agent, its bridge and the kernel count too
}

// memTotal is the sandbox's memory in bytes as /proc/meminfo tells it (under
// gVisor: the container's limit), or 0.
func memTotal() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "MemTotal:" && f[2] == "kB" {
			if n, err := strconv.ParseInt(f[1], 10, 64); err == nil {
				return n << 10
			}
		}
	}
	return 0
}

// AppExited is closed when a custom container's application exited (never,
// in a Python sandbox); ExitCode is then its status.
func (a *Agent) AppExited() <-chan struct{} {
	if a.app == nil {
		return nil
	}
	return a.app.exited
}

// ExitCode is the status a custom container's application exited with.
func (a *Agent) ExitCode() int {
	if a.app == nil {
		return 0
	}
	return a.app.exitCode()
}

// Close stops serving, kills the kernel and waits for every goroutine.
func (a *Agent) Close() error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil
	}
	a.closed = true
	if a.session != nil {
		a.session.Close()
	}
	a.mu.Unlock()
	if a.kernel != nil {
		a.kernel.close()
	}
	if a.app != nil {
		a.app.kill()
	}
	a.wg.Wait()
	a.reaper.close()
	return nil
}

// maxPending bounds connections that have not completed their hello.
const maxPending = 8

// Serve accepts bridges on ln until ctx ends or ln fails. A bridge passes
// the stdio of its exec; the server's stream on it must open with a hello
// carrying the token, and then replaces the previous connection.
func (a *Agent) Serve(ctx context.Context, ln *net.UnixListener) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	pending := make(chan struct{}, maxPending)
	for {
		uc, err := ln.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		select {
		case pending <- struct{}{}:
		default:
			uc.Close() // too many half-open connections
			continue
		}
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			conn, err := recvStdio(uc, time.Now().Add(helloTimeout))
			if err != nil {
				<-pending
				uc.Close()
				a.log.Warn().Err(err).Msg("bridge refused")
				return
			}
			if err := a.ServeConn(ctx, conn, func() { <-pending }); err != nil {
				a.log.Debug().Err(err).Msg("connection ended")
			}
		}()
	}
}

// helloTimeout bounds the wait for a connection's hello.
const helloTimeout = 10 * time.Second

// ServeConn serves one server connection until it ends. The connection must
// open with a hello carrying the token; it then replaces the current
// connection, if any. helloDone, if set, runs once the hello is read or
// refused.
func (a *Agent) ServeConn(ctx context.Context, c io.ReadWriteCloser, helloDone ...func()) error {
	if d, ok := c.(interface{ SetReadDeadline(time.Time) error }); ok {
		_ = d.SetReadDeadline(time.Now().Add(helloTimeout))
	}
	err := agentproto.ReadHello(c, a.cfg.TokenHash)
	for _, f := range helloDone {
		f()
	}
	if err != nil {
		c.Close()
		a.log.Warn().Msg("connection without a valid hello refused")
		return err
	}
	if d, ok := c.(interface{ SetReadDeadline(time.Time) error }); ok {
		_ = d.SetReadDeadline(time.Time{})
	}
	sess, err := agentproto.Server(c)
	if err != nil {
		c.Close()
		return err
	}
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		sess.Close()
		return errors.New("agent closed")
	}
	if a.session != nil {
		a.session.Close()
	}
	a.session = sess
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		if a.session == sess {
			a.session = nil
		}
		a.mu.Unlock()
		sess.Close()
	}()
	for {
		st, err := sess.AcceptStreamWithContext(ctx)
		if err != nil {
			return err
		}
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			defer st.Close()
			a.handle(ctx, sess, st)
		}()
	}
}

// requestTimeout bounds reading a request and the data of a put.
const requestTimeout = 30 * time.Second

func (a *Agent) handle(ctx context.Context, sess *yamux.Session, st *yamux.Stream) {
	_ = st.SetReadDeadline(time.Now().Add(requestTimeout))
	r := agentproto.NewReader(st, agentproto.MaxFrame)
	req, err := agentproto.ReadRequest(r)
	if err != nil {
		return
	}
	em := newEmitter(st)
	reply := func(m *agentproto.Message) { _ = em.msg(m) }
	fail := func(err error) {
		var oe *opError
		if errors.As(err, &oe) {
			reply(agentproto.Failed(oe.code, oe.msg))
			return
		}
		reply(agentproto.Failed(agentproto.FailIO, err.Error()))
	}
	switch req.Op {
	case agentproto.OpInfo:
		wctx := ctx
		if req.WaitKernel {
			var cancel context.CancelFunc
			wctx, cancel = context.WithTimeout(ctx, time.Duration(max(req.WaitMS, 0))*time.Millisecond)
			defer cancel()
		}
		info := &agentproto.Info{Protocol: agentproto.Version, Agent: a.cfg.Version, Identity: a.identity, UID: os.Getuid()}
		if a.app != nil {
			st := a.app.state(wctx, req.WaitKernel)
			info.App = &st
		} else {
			info.Kernel = a.kernel.state(wctx, req.WaitKernel)
		}
		reply(&agentproto.Message{Type: agentproto.MsgInfo, Info: info})
	case agentproto.OpExecute, agentproto.OpInterrupt:
		switch {
		case a.kernel == nil:
			reply(agentproto.Failed(agentproto.FailKernel, "a custom container has no Python kernel"))
		case req.Op == agentproto.OpExecute:
			a.execute(ctx, sess, st, req, em)
		default:
			a.kernel.interrupt(req.ExecID)
			reply(&agentproto.Message{Type: agentproto.MsgOK})
		}
	case agentproto.OpDial:
		if a.app == nil {
			reply(agentproto.Failed(agentproto.FailBadRequest, "this sandbox runs no application"))
			return
		}
		a.app.dial(st, r.Rest(st), em)
	case agentproto.OpStat:
		fi, err := a.files.stat(req.Path)
		if err != nil {
			fail(err)
			return
		}
		reply(&agentproto.Message{Type: agentproto.MsgFile, File: &fi})
	case agentproto.OpList:
		fis, partial, err := a.files.list(req.Path)
		if err != nil {
			fail(err)
			return
		}
		reply(&agentproto.Message{Type: agentproto.MsgFiles, Files: fis, Partial: partial})
	case agentproto.OpDelete:
		if err := a.files.remove(req.Path); err != nil {
			fail(err)
			return
		}
		reply(&agentproto.Message{Type: agentproto.MsgOK})
	case agentproto.OpGet:
		a.get(st, req, em, fail)
	case agentproto.OpPut:
		a.put(st, r, req, em, fail)
	default:
		reply(agentproto.Failed(agentproto.FailBadRequest, "unknown operation"))
	}
}

func (a *Agent) execute(ctx context.Context, sess *yamux.Session, st *yamux.Stream, req *agentproto.Request, em *emitter) {
	if len(req.Code) > agentproto.MaxCodeBytes {
		_ = em.msg(agentproto.Failed(agentproto.FailTooLarge, "code larger than the limit"))
		return
	}
	if req.TimeoutMS <= 0 {
		_ = em.msg(agentproto.Failed(agentproto.FailBadRequest, "timeout_ms must be positive"))
		return
	}
	// The server closing its side of the stream means the client went
	// away: interrupt. Losing the whole connection does not (a restarting
	// server must not kill running code).
	ectx, cancel := context.WithCancel(ctx)
	defer cancel()
	_ = st.SetReadDeadline(time.Time{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		_, err := io.Copy(io.Discard, st)
		if err == nil && !sess.IsClosed() {
			em.abandon()
			cancel()
		}
	}()
	defer func() {
		_ = st.SetReadDeadline(time.Now()) // end the watcher and wait for it
		<-watched
	}()
	done, err := a.kernel.execute(ectx, req, em)
	if err != nil {
		_ = em.msg(agentproto.Failed(agentproto.FailKernel, err.Error()))
		return
	}
	_ = em.msg(&agentproto.Message{Type: agentproto.MsgDone, Done: done})
}

func (a *Agent) get(st *yamux.Stream, req *agentproto.Request, em *emitter, fail func(error)) {
	f, fi, err := a.files.openRead(req.Path, req.MaxSize)
	if err != nil {
		fail(err)
		return
	}
	defer f.Close()
	if em.msg(&agentproto.Message{Type: agentproto.MsgFile, File: &fi}) != nil {
		return
	}
	var sent int64
	buf := make([]byte, agentproto.ChunkSize)
	for {
		n, err := f.Read(buf)
		if n > 0 {
			if req.MaxSize > 0 && sent+int64(n) > req.MaxSize {
				// The file grew while we sent it.
				_ = em.msg(agentproto.Failed(agentproto.FailTooLarge, "get: file grew beyond the limit"))
				return
			}
			em.frame(agentproto.FrameData, buf[:n])
			sent += int64(n)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			fail(classify(err, "get"))
			return
		}
	}
	_ = em.msg(&agentproto.Message{Type: agentproto.MsgEnd, Size: sent})
}

func (a *Agent) put(st *yamux.Stream, r *agentproto.Reader, req *agentproto.Request, em *emitter, fail func(error)) {
	// After a refusal, read and drop the rest of the upload (bounded by the
	// read deadline), so the sender is never left blocked on a full window.
	fail = func(fail func(error)) func(error) {
		return func(err error) {
			fail(err)
			for {
				_ = st.SetReadDeadline(time.Now().Add(requestTimeout))
				if _, _, err := r.Next(); err != nil {
					return
				}
			}
		}
	}(fail)
	up, err := a.files.create(req.Path)
	if err != nil {
		fail(err)
		return
	}
	committed := false
	defer func() {
		if !committed {
			up.abort()
		}
	}()
	var got int64
	for {
		_ = st.SetReadDeadline(time.Now().Add(requestTimeout))
		t, p, err := r.Next()
		if err != nil {
			return // the server went away; nothing to answer
		}
		switch t {
		case agentproto.FrameData:
			got += int64(len(p))
			if req.MaxSize > 0 && got > req.MaxSize {
				fail(failf(agentproto.FailTooLarge, "put: file larger than the limit"))
				return
			}
			if _, err := up.f.Write(p); err != nil {
				fail(classify(err, "put"))
				return
			}
		case agentproto.FrameMsg:
			m, err := agentproto.DecodeMsg(p)
			if err != nil || m.Type != agentproto.MsgEnd {
				fail(failf(agentproto.FailBadRequest, "put: expected data or end"))
				return
			}
			if m.Size != got {
				fail(failf(agentproto.FailBadRequest, "put: size mismatch"))
				return
			}
			fi, err := up.commit()
			committed = true
			if err != nil {
				fail(err)
				return
			}
			_ = em.msg(&agentproto.Message{Type: agentproto.MsgFile, File: &fi})
			return
		default:
			fail(failf(agentproto.FailBadRequest, "put: unexpected frame"))
			return
		}
	}
}
