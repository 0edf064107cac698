// Package podman creates and manages sandboxes as podman containers through
// the podman v5 bindings: one podman service per OCI runtime (the service,
// not the container spec, picks the runtime), started and supervised here
// when no socket is configured. It is the only package that imports the
// bindings.
package podman

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containers/podman/v5/pkg/api/handlers"
	"github.com/containers/podman/v5/pkg/bindings"
	"github.com/containers/podman/v5/pkg/bindings/containers"
	"github.com/containers/podman/v5/pkg/bindings/images"
	"github.com/containers/podman/v5/pkg/errorhandling"
	"github.com/containers/podman/v5/pkg/specgen"
	"github.com/rs/zerolog"

	"github.com/sandpool/sandpool/internal/errcode"
	"github.com/sandpool/sandpool/sandbox"
	"github.com/sandpool/sandpool/sandbox/agentproto"
	"github.com/sandpool/sandpool/sandbox/podman/runscwrap"
)

// Config configures an Engine.
type Config struct {
	// Runtime names the OCI runtime: "runsc" (the pinned current gVisor,
	// run through the sandpool-runsc wrapper), "runsc-debian", "runc", a
	// Kata build with the OCI command line, or a runtime's absolute path.
	Runtime string
	// RuntimeFlags are passed to the runtime by a supervised service.
	// Default: DefaultRuntimeFlags(Runtime, Platform).
	RuntimeFlags []string
	// Platform is gVisor's platform (ptrace or systrap); default
	// DefaultPlatform for the current gVisor, the runtime's own otherwise.
	Platform string
	// RuntimeWrapper is the sandpool-runsc binary; default next to
	// AgentPath, then next to the running executable, then on PATH. Only
	// the current gVisor uses it.
	RuntimeWrapper string
	// Socket is the path of an existing podman service's unix socket.
	// Empty: start and supervise one at StateDir/podman-<runtime>-<pid>.sock.
	Socket string
	// StateDir holds the agent copy, the seccomp profile and sockets;
	// default /var/lib/sandpool.
	StateDir string
	// AgentPath is the static sandpool-agent binary on this host; default:
	// next to the running executable, then on PATH.
	AgentPath string
	// Podman is the podman binary for a supervised service.
	Podman string
	Log    zerolog.Logger
}

// Engine creates, finds and removes sandboxes on one podman service.
type Engine struct {
	cfg     Config
	rt      runtimeInfo
	version string
	// runtimePath is what podman is pointed at: the wrapper for the
	// current gVisor, the runtime itself otherwise.
	runtimePath string
	log         zerolog.Logger
	socket      string
	conn        context.Context // carries the bindings client
	service     *Service        // nil when the socket was given
	egress      egressService
	agentDir    string
	emptyDir    string
	emptyFile   string
	seccomp     string
	key         []byte // derives each sandbox's agent token
	host        sandbox.HostIdentity
}

// New returns an engine, starting a supervised podman service when no
// socket is configured.
func New(ctx context.Context, cfg Config) (*Engine, error) {
	if cfg.Runtime == "" {
		return nil, errors.New("podman: a runtime is required")
	}
	if cfg.StateDir == "" {
		cfg.StateDir = "/var/lib/sandpool"
	}
	switch cfg.Platform {
	case "", PlatformPtrace, PlatformSystrap:
	default:
		return nil, fmt.Errorf("podman: platform %q: must be ptrace or systrap", cfg.Platform)
	}
	if cfg.Platform != "" && !sandbox.IsGVisor(cfg.Runtime) {
		return nil, fmt.Errorf("podman: a platform applies to gVisor runtimes only, not %q", cfg.Runtime)
	}
	if cfg.RuntimeFlags == nil {
		cfg.RuntimeFlags = DefaultRuntimeFlags(cfg.Runtime, cfg.Platform)
	}
	rt, err := resolveRuntime(cfg.Runtime)
	if err != nil {
		return nil, err
	}
	e := &Engine{cfg: cfg, rt: rt, runtimePath: rt.binary, version: runtimeVersion(rt), log: cfg.Log, host: sandbox.LocalHost()}
	if err := os.MkdirAll(cfg.StateDir, 0o755); err != nil {
		return nil, fmt.Errorf("podman: state dir: %w", err)
	}
	if rt.current {
		if e.runtimePath, err = e.installWrapper(); err != nil {
			return nil, err
		}
	}
	if err := e.installAgent(); err != nil {
		return nil, err
	}
	if err := e.installSeccomp(); err != nil {
		return nil, err
	}
	e.emptyDir, e.emptyFile = filepath.Join(cfg.StateDir, "empty"), filepath.Join(cfg.StateDir, "empty-file")
	if err := os.MkdirAll(e.emptyDir, 0o755); err != nil {
		return nil, fmt.Errorf("podman: empty dir: %w", err)
	}
	if err := os.WriteFile(e.emptyFile, nil, 0o644); err != nil {
		return nil, fmt.Errorf("podman: empty file: %w", err)
	}
	if err := e.loadKey(); err != nil {
		return nil, err
	}
	e.socket = cfg.Socket
	if e.socket == "" {
		svc, err := e.startService(ctx, cfg.RuntimeFlags)
		if err != nil {
			return nil, err
		}
		e.service, e.socket = svc, svc.Socket()
	}
	conn, err := bindings.NewConnection(context.Background(), "unix://"+e.socket)
	if err != nil {
		e.Close()
		return nil, errcode.Wrap(errcode.Unavailable, "the podman service is unavailable", err)
	}
	e.conn = conn
	return e, nil
}

// startService starts a supervised podman service of the engine's runtime
// with flags.
func (e *Engine) startService(ctx context.Context, flags []string) (*Service, error) {
	sock := filepath.Join(e.cfg.StateDir, "run", fmt.Sprintf("podman-%s-%d-%s.sock", filepath.Base(e.cfg.Runtime), os.Getpid(), randHex(3)))
	return StartService(ctx, ServiceConfig{Podman: e.cfg.Podman, Runtime: e.runtimePath, RuntimeFlags: flags, Socket: sock, Log: e.cfg.Log})
}

// Close stops the supervised services (containers keep running).
func (e *Engine) Close() error {
	err := e.egress.close()
	if e.service != nil {
		err = errors.Join(e.service.Close(), err)
	}
	return err
}

// Socket is the podman service's socket path.
func (e *Engine) Socket() string { return e.socket }

// Runtime is the engine's OCI runtime name.
func (e *Engine) Runtime() string { return e.cfg.Runtime }

// RuntimeVersion is the runtime's version: for the current gVisor the
// pinned module version (sandbox.GVisorVersion).
func (e *Engine) RuntimeVersion() string { return e.version }

// RuntimePath is what podman is pointed at for this runtime (for the
// current gVisor, the sandpool-runsc wrapper).
func (e *Engine) RuntimePath() string { return e.runtimePath }

// RuntimeFlags are the flags of the engine's supervised service.
func (e *Engine) RuntimeFlags() []string { return slices.Clone(e.cfg.RuntimeFlags) }

// Service is the supervised podman service, or nil.
func (e *Engine) Service() *Service { return e.service }

// Host is the identity of the machine the containers run on.
func (e *Engine) Host() sandbox.HostIdentity { return e.host }

// installAgent copies the agent binary into a content-addressed directory
// that containers bind-mount: a rebuilt binary never changes under a
// running sandbox, and adopted sandboxes keep theirs.
func (e *Engine) installAgent() error {
	src := e.cfg.AgentPath
	if src == "" {
		var err error
		if src, err = findBinary("sandpool-agent"); err != nil {
			return err
		}
	}
	b, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("podman: read agent: %w", err)
	}
	dir, err := e.installFiles("agent", []installFile{{"sandpool-agent", b, 0o755}})
	if err != nil {
		return fmt.Errorf("podman: install agent: %w", err)
	}
	e.agentDir = dir
	return nil
}

// installFile is one file of a content-addressed directory.
type installFile struct {
	name string
	data []byte
	mode os.FileMode
}

// installFiles puts files in StateDir/kind/<hash of their contents>,
// unless they are there already, and returns the directory. A directory
// is never rewritten with other contents, so what a running container
// uses from it never changes.
func (e *Engine) installFiles(kind string, files []installFile) (string, error) {
	h := sha256.New()
	for _, f := range files {
		fmt.Fprintf(h, "%s\x00%d\x00", f.name, len(f.data))
		h.Write(f.data)
	}
	dir := filepath.Join(e.cfg.StateDir, kind, hex.EncodeToString(h.Sum(nil)[:8]))
	same := true
	for _, f := range files {
		cur, err := os.ReadFile(filepath.Join(dir, f.name))
		same = same && err == nil && bytes.Equal(cur, f.data)
	}
	if same {
		return dir, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	for _, f := range files {
		if err := writeAtomic(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
			return "", err
		}
	}
	return dir, nil
}

func (e *Engine) installSeccomp() error {
	b, err := SeccompProfile(e.rt.gvisor)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(b)
	p := filepath.Join(e.cfg.StateDir, "seccomp-"+hex.EncodeToString(sum[:8])+".json")
	if _, err := os.Stat(p); err != nil {
		if err := writeAtomic(p, b, 0o644); err != nil {
			return fmt.Errorf("podman: seccomp profile: %w", err)
		}
	}
	e.seccomp = p
	return nil
}

// loadKey reads the key agent tokens are derived from, creating it once.
// It must survive restarts: a restarted server derives the same tokens and
// can reach the sandboxes it adopts.
func (e *Engine) loadKey() error {
	p := filepath.Join(e.cfg.StateDir, "agent.key")
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		b = make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			return err
		}
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err == nil {
			_, err = f.Write(b)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		if errors.Is(err, os.ErrExist) { // another process made it first
			b, err = os.ReadFile(p)
		}
		if err != nil {
			return fmt.Errorf("podman: agent key: %w", err)
		}
	} else if err != nil {
		return fmt.Errorf("podman: agent key: %w", err)
	}
	if len(b) != 32 {
		return fmt.Errorf("podman: agent key %s is damaged", p)
	}
	e.key = b
	return nil
}

// token is the agent token of the container named name.
func (e *Engine) token(name string) []byte {
	m := hmac.New(sha256.New, e.key)
	m.Write([]byte("sandpool agent token\x00"))
	m.Write([]byte(name))
	return m.Sum(nil)
}

func writeAtomic(path string, b []byte, mode os.FileMode) error {
	tmp := fmt.Sprintf("%s.tmp-%d", path, os.Getpid())
	if err := os.WriteFile(tmp, b, mode); err != nil {
		return err
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// call returns a context for a bindings call: the caller's cancellation and
// deadline, with the engine's client.
func (e *Engine) call(ctx context.Context) context.Context {
	return bindingsCtx{Context: ctx, client: e.conn}
}

type bindingsCtx struct {
	context.Context
	client context.Context
}

func (c bindingsCtx) Value(k any) any {
	if v := c.Context.Value(k); v != nil {
		return v
	}
	return c.client.Value(k)
}

// engineErr classifies a podman API failure.
func engineErr(err error, what string) error {
	if err == nil {
		return nil
	}
	var ce *errcode.Error
	if errors.As(err, &ce) {
		return err
	}
	if errors.Is(err, context.Canceled) {
		return errcode.Wrap(errcode.Canceled, "the request was canceled", err)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return errcode.Wrap(errcode.Timeout, "the sandbox engine did not answer in time", err)
	}
	if isConnRefused(err) {
		return errcode.Wrap(errcode.Unavailable, "the sandbox engine (podman) is unavailable", err)
	}
	if status(err) == http.StatusNotFound {
		return errcode.Wrap(errcode.NotFound, "no such sandbox", err)
	}
	return errcode.Wrap(errcode.Internal, what+" failed", err)
}

func isConnRefused(err error) bool {
	var ne *net.OpError
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) ||
		(errors.As(err, &ne) && ne.Op == "dial") || strings.Contains(err.Error(), "connection refused") ||
		strings.Contains(err.Error(), "no such file or directory") && strings.Contains(err.Error(), "sock")
}

func status(err error) int {
	var em *errorhandling.ErrorModel
	if errors.As(err, &em) {
		return em.ResponseCode
	}
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.status
	}
	return 0
}

// notRunning reports an API error saying the container is gone or stopped.
func notRunning(err error) bool {
	if s := status(err); s == http.StatusNotFound || s == http.StatusConflict {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "no such container") || strings.Contains(msg, "container state improper")
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// randUID picks an even uid in [2^20, 2^30). Each sandbox gets its own, so
// per-uid accounting (RLIMIT_NPROC) is per sandbox and no two sandboxes can
// signal each other's processes even on a shared kernel; uid+1 is its bridge.
func randUID() int {
	n, _ := rand.Int(rand.Reader, big.NewInt(1<<29-1<<19))
	return int(n.Int64()+1<<19) * 2
}

// Create creates, starts and boots a sandbox: it returns once the agent
// answers, the isolation gate passed and the kernel is warm. On any failure
// the container is removed.
func (e *Engine) Create(ctx context.Context, spec sandbox.Spec) (_ *sandbox.Sandbox, retErr error) {
	if err := spec.Normalize(); err != nil {
		return nil, errcode.Wrap(errcode.InvalidArgument, "invalid sandbox spec: "+err.Error(), err)
	}
	ctx, cancel := context.WithTimeout(ctx, spec.StartTimeout)
	defer cancel()
	p, err := e.params(ctx, &spec, "sandpool-"+randHex(8), randUID(), "sbx-"+randHex(4))
	if err != nil {
		return nil, err
	}
	return e.start(ctx, &spec, buildSpec(&spec, p), p)
}

// params are the container parameters of a sandbox of spec with the given
// name, uid and hostname.
func (e *Engine) params(ctx context.Context, spec *sandbox.Spec, name string, uid int, hostname string) (containerParams, error) {
	p := containerParams{
		name:        name,
		uid:         uid,
		hostname:    hostname,
		agentDir:    e.agentDir,
		emptyDir:    e.emptyDir,
		emptyFile:   e.emptyFile,
		seccompPath: e.seccomp,
		runtime:     e.cfg.Runtime,
		gvisor:      e.rt.gvisor,
		specDigest:  specDigest(*spec),
	}
	th := agentproto.TokenHash(e.token(p.name))
	p.tokenHash = hex.EncodeToString(th[:])
	if spec.App != nil {
		var err error
		if p.appArgv, p.appDir, err = e.appArgv(ctx, spec); err != nil {
			return p, err
		}
	}
	return p, nil
}

// start creates and starts the container g and boots its sandbox; on any
// failure the container is removed.
func (e *Engine) start(ctx context.Context, spec *sandbox.Spec, g *specgen.SpecGenerator, p containerParams) (_ *sandbox.Sandbox, retErr error) {
	// Created and started without the caller's cancellation: a create the
	// service completes after its caller went away would leave a container
	// nobody knows the id of. Boot, below, stops early instead.
	octx, ocancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer ocancel()
	creator := e.conn
	if spec.Network == sandbox.NetworkEgress {
		var err error
		if creator, err = e.egressConn(octx); err != nil {
			return nil, err
		}
	}
	cctx := bindingsCtx{Context: octx, client: creator}
	resp, err := containers.CreateWithSpec(cctx, g, nil)
	if err != nil {
		return nil, engineErr(err, "creating the sandbox")
	}
	id := resp.ID
	defer func() {
		if retErr != nil {
			// The caller's context may be done: cleanup gets its own.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			if err := e.Remove(rctx, id); err != nil {
				e.log.Error().Err(err).Msg("removing a failed sandbox")
			}
		}
	}()
	if err := containers.Start(cctx, id, nil); err != nil {
		err = engineErr(err, "starting the sandbox")
		if _, restoring := g.Annotations[runscwrap.AnnotationRestore]; restoring && errcode.Of(err) == errcode.Internal {
			err = errcode.Wrap(errcode.CheckpointInvalid, "gVisor could not restore the checkpoint image; nothing was restored", err)
		}
		return nil, err
	}
	sb := e.handle(id, p.name, g.Labels, p.uid, spec.Isolation)
	info, err := sandbox.Boot(ctx, sb.Conn, spec.Isolation, e.host, spec.App)
	if err != nil {
		sb.Close()
		if spec.App != nil && errcode.Of(err) == errcode.SandboxGone {
			// The application exited, and the agent with it, before the
			// boot could ask why: the container's exit code says.
			code := -1
			if data, ierr := containers.Inspect(e.call(context.WithoutCancel(ctx)), id, nil); ierr == nil && data.State != nil {
				code = int(data.State.ExitCode)
			}
			return nil, errcode.Wrap(errcode.Unavailable, fmt.Sprintf("the container exited during startup (exit code %d)", code), err)
		}
		return nil, err
	}
	sb.BootInfo = info
	return sb, nil
}

// appArgv resolves a custom container's program line against its image,
// as Kubernetes does: Command replaces the entrypoint, Args the command
// (given Command alone, the image's command is dropped). The working
// directory is the image's, default /.
func (e *Engine) appArgv(ctx context.Context, s *sandbox.Spec) ([]string, string, error) {
	img, err := images.GetImage(e.call(ctx), s.Image, nil)
	if err != nil {
		if status(err) == http.StatusNotFound {
			return nil, "", errcode.Wrap(errcode.NotFound, "the pool's image is not in the podman image store (images are never pulled: build or load it)", err)
		}
		return nil, "", engineErr(err, "inspecting the image")
	}
	var entry, cmd []string
	dir := "/"
	if c := img.Config; c != nil {
		entry, cmd = c.Entrypoint, c.Cmd
		if c.WorkingDir != "" {
			dir = c.WorkingDir
		}
	}
	switch {
	case len(s.App.Command) > 0:
		entry, cmd = s.App.Command, s.App.Args
	case len(s.App.Args) > 0:
		cmd = s.App.Args
	}
	argv := append(append([]string(nil), entry...), cmd...)
	if len(argv) == 0 {
		return nil, "", errcode.New(errcode.InvalidArgument, "the image has no entrypoint or command, and the pool sets no command")
	}
	return argv, dir, nil
}

func (e *Engine) handle(id, name string, labels map[string]string, uid int, iso sandbox.Isolation) *sandbox.Sandbox {
	return &sandbox.Sandbox{
		ID:        id,
		Name:      name,
		Labels:    labels,
		Isolation: iso,
		Conn:      sandbox.NewConn(&dialer{e: e, id: id, uid: uid + 1, token: e.token(name)}),
	}
}

// Open connects to an existing sandbox, typically one a previous server
// process created: its kernel state is intact. The isolation gate runs again.
func (e *Engine) Open(ctx context.Context, id string) (*sandbox.Sandbox, error) {
	data, err := containers.Inspect(e.call(ctx), id, nil)
	if err != nil {
		return nil, engineErr(err, "finding the sandbox")
	}
	if data.Config == nil || data.Config.Labels[LabelEngine] == "" {
		return nil, errcode.New(errcode.NotFound, "no such sandbox")
	}
	if data.State == nil || !data.State.Running {
		return nil, sandbox.ErrGone
	}
	labels := data.Config.Labels
	uid, err := strconv.Atoi(labels[LabelUID])
	if err != nil {
		return nil, errcode.Wrap(errcode.Internal, "the sandbox has no valid uid label", err)
	}
	iso := sandbox.Isolation(labels[LabelIsolation])
	sb := e.handle(data.ID, strings.TrimPrefix(data.Name, "/"), labels, uid, iso)
	info, err := sb.Info(ctx, false, 0)
	if err == nil {
		err = sandbox.CheckIsolation(iso, e.host, info.Identity)
	}
	if err != nil {
		sb.Close()
		return nil, err
	}
	sb.BootInfo = info
	return sb, nil
}

// List returns the sandpool containers of this engine's runtime that carry
// every label in labels (an empty value matches any value).
func (e *Engine) List(ctx context.Context, labels map[string]string) ([]sandbox.Summary, error) {
	filters := map[string][]string{"label": {LabelEngine + "=" + e.cfg.Runtime}}
	for k, v := range labels {
		f := k
		if v != "" {
			f += "=" + v
		}
		filters["label"] = append(filters["label"], f)
	}
	list, err := containers.List(e.call(ctx), new(containers.ListOptions).WithAll(true).WithFilters(filters))
	if err != nil {
		return nil, engineErr(err, "listing sandboxes")
	}
	out := make([]sandbox.Summary, 0, len(list))
	for _, c := range list {
		name := ""
		if len(c.Names) > 0 {
			name = c.Names[0]
		}
		out = append(out, sandbox.Summary{ID: c.ID, Name: name, Labels: c.Labels, Running: c.State == "running", Created: c.Created})
	}
	return out, nil
}

// Remove kills and removes a sandbox. Removing one that is already gone
// is not an error.
func (e *Engine) Remove(ctx context.Context, id string) error {
	// A gVisor sandbox that has just stopped by itself may still be running
	// in podman's books: the forced stop then fails ("container state
	// improper: stopped") and the container would be left behind. podman
	// has caught up by the next try.
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return err
			case <-time.After(time.Duration(attempt) * 300 * time.Millisecond):
			}
		}
		if err = e.removeOnce(ctx, id); err == nil {
			return nil
		}
	}
	return err
}

func (e *Engine) removeOnce(ctx context.Context, id string) error {
	rep, err := containers.Remove(e.call(ctx), id, new(containers.RemoveOptions).WithForce(true).WithVolumes(true).WithTimeout(0))
	if err != nil {
		if status(err) == http.StatusNotFound {
			return nil
		}
		return engineErr(err, "removing the sandbox")
	}
	for _, r := range rep {
		if r.Err != nil && status(r.Err) != http.StatusNotFound && !strings.Contains(r.Err.Error(), "no such container") {
			return engineErr(r.Err, "removing the sandbox")
		}
	}
	return nil
}

// Kill stops a sandbox abruptly (SIGKILL) without removing it. For tests of
// what the rest of the system does when a sandbox dies.
func (e *Engine) Kill(ctx context.Context, id string) error {
	return engineErr(containers.Kill(e.call(ctx), id, new(containers.KillOptions).WithSignal("SIGKILL")), "killing the sandbox")
}

// Ping checks that the podman service answers.
func (e *Engine) Ping(ctx context.Context) error {
	if err := ping(ctx, e.socket); err != nil {
		return errcode.Wrap(errcode.Unavailable, "the sandbox engine (podman) is unavailable", err)
	}
	return nil
}

// dialer reaches a sandbox's agent by exec'ing the bridge as the bridge uid.
type dialer struct {
	e     *Engine
	id    string
	uid   int
	token []byte
}

// Dial implements sandbox.Dialer.
func (d *dialer) Dial(ctx context.Context) (io.ReadWriteCloser, error) {
	cfg := new(handlers.ExecCreateConfig)
	cfg.AttachStdin, cfg.AttachStdout, cfg.AttachStderr = true, true, true
	cfg.Cmd = []string{AgentBinary, "bridge"}
	cfg.User = fmt.Sprintf("%d:%d", d.uid, d.uid)
	cfg.Env = []string{"PATH=/usr/bin:/bin"}
	sid, err := containers.ExecCreate(d.e.call(ctx), d.id, cfg)
	if err != nil {
		if notRunning(err) {
			return nil, fmt.Errorf("%w (%v)", sandbox.ErrGone, err)
		}
		return nil, engineErr(err, "connecting to the sandbox")
	}
	st, err := startExec(ctx, d.e.socket, sid)
	if err != nil {
		if notRunning(err) {
			return nil, fmt.Errorf("%w (%v)", sandbox.ErrGone, err)
		}
		return nil, engineErr(err, "connecting to the sandbox")
	}
	if err := agentproto.WriteHello(st, d.token); err != nil {
		st.Close()
		return nil, engineErr(err, "connecting to the sandbox")
	}
	return st, nil
}

// Running implements sandbox.Prober.
func (d *dialer) Running(ctx context.Context) (bool, error) {
	data, err := containers.Inspect(d.e.call(ctx), d.id, nil)
	if err != nil {
		if status(err) == http.StatusNotFound {
			return false, nil
		}
		return false, engineErr(err, "inspecting the sandbox")
	}
	return data.State != nil && data.State.Running, nil
}

// egressService is a gVisor engine's second podman service, whose runtime
// flags give sandboxes a network (egressFlags). It creates and starts the
// sandboxes of egress pools; everything else about them (exec, inspect,
// removal) goes through the engine's main service, since podman keeps one
// set of books for both. It starts with the first egress sandbox.
type egressService struct {
	mu   sync.Mutex
	svc  *Service
	conn context.Context
}

func (s *egressService) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.svc == nil {
		return nil
	}
	return s.svc.Close()
}

// egressConn returns the bindings client that creates egress sandboxes.
func (e *Engine) egressConn(ctx context.Context) (context.Context, error) {
	flags := egressFlags(e.rt, e.cfg.RuntimeFlags)
	if flags == nil {
		return e.conn, nil
	}
	if e.service == nil {
		return nil, errcode.New(errcode.InvalidArgument, "egress under gVisor needs sandpool's own podman services (this runtime's engine has a socket configured)")
	}
	e.egress.mu.Lock()
	defer e.egress.mu.Unlock()
	if e.egress.conn != nil {
		return e.egress.conn, nil
	}
	svc, err := e.startService(ctx, flags)
	if err != nil {
		return nil, errcode.Wrap(errcode.Unavailable, "the sandbox engine (podman) is unavailable", err)
	}
	conn, err := bindings.NewConnection(context.Background(), svc.URI())
	if err != nil {
		svc.Close()
		return nil, errcode.Wrap(errcode.Unavailable, "the sandbox engine (podman) is unavailable", err)
	}
	e.egress.svc, e.egress.conn = svc, conn
	return conn, nil
}
