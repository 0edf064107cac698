// Package inproc is a test engine: a pool.Engine whose sandboxes are real
// agents (sandbox/agent) running real Python kernels (the host's python3)
// inside the test process, each reached by sandbox.Conn over an in-memory
// pipe. It gives the surface tests (api, WebSocket, MCP, tools) the real
// protocol, kernel and file service in seconds and without podman.
//
// It isolates nothing: the kernel runs as the test's user on the host, with
// the host's network and file system. It is for tests only and must never
// back a server (internal/archtest keeps it out of every binary).
//
// What it honours of a sandbox.Spec is what the surfaces can see: labels
// (for List and adoption), environment, preloaded modules (only those the
// host's python3 has), the start timeout, and a data directory of its own
// per sandbox (a temporary directory, removed with the sandbox). Resource
// limits, network policy and isolation are not applied; custom containers
// (Spec.App) are refused.
package inproc

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/sandpool/sandpool/internal/errcode"
	"github.com/sandpool/sandpool/pool"
	"github.com/sandpool/sandpool/sandbox"
	"github.com/sandpool/sandpool/sandbox/agent"
	"github.com/sandpool/sandpool/sandbox/agentproto"
)

// LabelEngine marks the sandboxes of this engine, as sandbox/podman marks
// its containers.
const LabelEngine = "sandpool.engine"

// Config configures an Engine. The zero value is usable.
type Config struct {
	// Python is the interpreter; default "python3" from PATH.
	Python string
	// NoIPython forces the agent's plain exec runner.
	NoIPython bool
	// InterruptGrace is how long an interrupted kernel gets before it is
	// killed; default 500ms (tests want timeouts to end quickly).
	InterruptGrace time.Duration
	// Dir holds the sandboxes' directories; default the system's temporary
	// directory.
	Dir string
	// Log receives the agents' logs; default nothing.
	Log zerolog.Logger
}

// Engine runs sandboxes in-process. Its methods are safe for concurrent
// use; Close removes every sandbox that is left.
type Engine struct {
	cfg Config

	mu        sync.Mutex
	sandboxes map[string]*box
	preload   map[string]bool // module -> importable on the host; cached
	closed    bool
}

var _ pool.Engine = (*Engine)(nil)

// box is one sandbox: its agent, its directory and the connections served.
type box struct {
	id, name string
	labels   map[string]string
	iso      sandbox.Isolation
	created  time.Time
	root     string // holds data/ and home/
	token    []byte
	a        *agent.Agent

	ctx    context.Context // ends the agent's connections
	cancel context.CancelFunc
	wg     sync.WaitGroup // ServeConn goroutines

	mu      sync.Mutex
	removed bool
}

// New returns an engine.
func New(cfg Config) *Engine {
	if cfg.Python == "" {
		cfg.Python = "python3"
	}
	if cfg.InterruptGrace == 0 {
		cfg.InterruptGrace = 500 * time.Millisecond
	}
	return &Engine{cfg: cfg, sandboxes: map[string]*box{}, preload: map[string]bool{}}
}

// Available says why the engine cannot run here (no python3), or nil.
func Available() error {
	if _, err := exec.LookPath("python3"); err != nil {
		return errors.New("python3 is not installed")
	}
	return nil
}

// HasIPython says whether the host's python3 has IPython, which the kernel
// uses when it can (rich display, IPython's tracebacks).
func HasIPython() bool { return exec.Command("python3", "-c", "import IPython").Run() == nil }

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Create starts an agent and its kernel and waits until the kernel is
// ready.
func (e *Engine) Create(ctx context.Context, spec sandbox.Spec) (_ *sandbox.Sandbox, retErr error) {
	if err := spec.Normalize(); err != nil {
		return nil, errcode.Wrap(errcode.InvalidArgument, "invalid sandbox spec: "+err.Error(), err)
	}
	if spec.App != nil {
		return nil, errcode.New(errcode.InvalidArgument, "the in-process engine runs no custom containers")
	}
	ctx, cancel := context.WithTimeout(ctx, spec.StartTimeout)
	defer cancel()
	root, err := os.MkdirTemp(e.cfg.Dir, "sandpool-inproc-")
	if err != nil {
		return nil, errcode.Wrap(errcode.Unavailable, "cannot create the sandbox's directory", err)
	}
	defer func() {
		if retErr != nil {
			os.RemoveAll(root)
		}
	}()
	data, home := filepath.Join(root, "data"), filepath.Join(root, "home")
	for _, d := range []string{data, home} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return nil, errcode.Wrap(errcode.Unavailable, "cannot create the sandbox's directory", err)
		}
	}
	b := &box{
		id:      randHex(32),
		name:    "inproc-" + randHex(8),
		labels:  maps.Clone(spec.Labels),
		iso:     spec.Isolation,
		created: time.Now(),
		root:    root,
		token:   make([]byte, agentproto.TokenSize),
	}
	_, _ = rand.Read(b.token)
	if b.labels == nil {
		b.labels = map[string]string{}
	}
	b.labels[LabelEngine] = "inproc"
	b.a, err = agent.New(agent.Config{
		DataDir:        data,
		TokenHash:      agentproto.TokenHash(b.token),
		Python:         e.cfg.Python,
		Env:            env(&spec, home),
		Preload:        e.available(spec.Preload),
		NoIPython:      e.cfg.NoIPython,
		StartTimeout:   spec.StartTimeout,
		InterruptGrace: e.cfg.InterruptGrace,
		Log:            e.cfg.Log,
	})
	if err != nil {
		return nil, errcode.Wrap(errcode.Unavailable, "cannot start the agent", err)
	}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	defer func() {
		if retErr != nil {
			b.stop()
		}
	}()
	sb := b.handle()
	info, err := sb.Info(ctx, true, spec.StartTimeout)
	if err != nil {
		sb.Close()
		return nil, err
	}
	if !info.Kernel.Ready {
		sb.Close()
		return nil, errcode.Wrap(errcode.Internal, "the Python kernel failed to start", errors.New(info.Kernel.Error))
	}
	sb.BootInfo = info
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		sb.Close()
		return nil, errcode.New(errcode.ShuttingDown, "the engine is closed")
	}
	e.sandboxes[b.id] = b
	return sb, nil
}

// env is the kernel's environment: the sandbox's, with HOME and the
// configuration directories in the sandbox's own home, and the host's PATH
// so that the host's tools are found.
func env(spec *sandbox.Spec, home string) []string {
	m := sandbox.BaseEnv(spec)
	m["HOME"] = home
	m["MPLCONFIGDIR"] = filepath.Join(home, ".config", "matplotlib")
	m["IPYTHONDIR"] = filepath.Join(home, ".ipython")
	if p := os.Getenv("PATH"); p != "" {
		m["PATH"] = p
	}
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// available keeps the modules of want that the host's python3 can import
// (a host rarely has the image's numpy, pandas and matplotlib; a kernel
// that fails its preload never becomes ready).
func (e *Engine) available(want []string) []string {
	var out []string
	for _, m := range want {
		e.mu.Lock()
		ok, known := e.preload[m]
		e.mu.Unlock()
		if !known {
			ok = exec.Command(e.cfg.Python, "-c", "import "+m).Run() == nil
			e.mu.Lock()
			e.preload[m] = ok
			e.mu.Unlock()
		}
		if ok {
			out = append(out, m)
		}
	}
	return out
}

// handle returns a new client of b's agent, as a restarted server would
// make.
func (b *box) handle() *sandbox.Sandbox {
	return &sandbox.Sandbox{
		ID:        b.id,
		Name:      b.name,
		Labels:    maps.Clone(b.labels),
		Isolation: b.iso,
		Conn:      sandbox.NewConn(dialer{b}),
	}
}

// dialer connects to a box's agent over a pipe; it is a sandbox.Prober.
type dialer struct{ b *box }

func (d dialer) Dial(ctx context.Context) (io.ReadWriteCloser, error) {
	b := d.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.removed {
		return nil, sandbox.ErrGone
	}
	c1, c2 := net.Pipe()
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		_ = b.a.ServeConn(b.ctx, c2)
	}()
	// net.Pipe is synchronous: the hello is written while the agent reads
	// it, bounded by ctx.
	if dl, ok := ctx.Deadline(); ok {
		_ = c1.SetWriteDeadline(dl)
	}
	if err := agentproto.WriteHello(c1, b.token); err != nil {
		c1.Close()
		return nil, fmt.Errorf("writing the hello: %w", err)
	}
	_ = c1.SetWriteDeadline(time.Time{})
	return c1, nil
}

func (d dialer) Running(context.Context) (bool, error) {
	d.b.mu.Lock()
	defer d.b.mu.Unlock()
	return !d.b.removed, nil
}

// stop kills the agent and its kernel and waits for every connection.
func (b *box) stop() {
	b.mu.Lock()
	b.removed = true
	b.mu.Unlock()
	b.cancel()
	b.a.Close()
	b.wg.Wait()
}

// Open connects to a sandbox this engine created (adoption by a restarted
// pool).
func (e *Engine) Open(ctx context.Context, id string) (*sandbox.Sandbox, error) {
	e.mu.Lock()
	b := e.sandboxes[id]
	e.mu.Unlock()
	if b == nil {
		return nil, errcode.New(errcode.NotFound, "no such sandbox")
	}
	sb := b.handle()
	info, err := sb.Info(ctx, false, 0)
	if err != nil {
		sb.Close()
		return nil, err
	}
	sb.BootInfo = info
	return sb, nil
}

// List lists the sandboxes carrying every label given.
func (e *Engine) List(ctx context.Context, labels map[string]string) ([]sandbox.Summary, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []sandbox.Summary
	for _, b := range e.sandboxes {
		match := true
		for k, v := range labels {
			if b.labels[k] != v {
				match = false
				break
			}
		}
		if match {
			out = append(out, sandbox.Summary{ID: b.id, Name: b.name, Labels: maps.Clone(b.labels), Running: true, Created: b.created})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out, nil
}

// Remove kills a sandbox's kernel and agent and removes its directory; a
// missing sandbox is not an error.
func (e *Engine) Remove(ctx context.Context, id string) error {
	e.mu.Lock()
	b := e.sandboxes[id]
	delete(e.sandboxes, id)
	e.mu.Unlock()
	if b == nil {
		return nil
	}
	b.stop()
	if err := os.RemoveAll(b.root); err != nil {
		return fmt.Errorf("removing the sandbox's directory: %w", err)
	}
	return nil
}

// Len is the number of sandboxes the engine holds.
func (e *Engine) Len() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.sandboxes)
}

// Close removes every sandbox left; the engine creates no more.
func (e *Engine) Close() error {
	e.mu.Lock()
	e.closed = true
	ids := make([]string, 0, len(e.sandboxes))
	for id := range e.sandboxes {
		ids = append(ids, id)
	}
	e.mu.Unlock()
	var errs []error
	for _, id := range ids {
		errs = append(errs, e.Remove(context.Background(), id))
	}
	return errors.Join(errs...)
}
