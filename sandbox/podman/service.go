package podman

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"
)

// ServiceConfig configures a supervised podman API service.
type ServiceConfig struct {
	// Podman is the podman binary; default "podman".
	Podman string
	// Runtime is the OCI runtime the service uses for every container
	// (the service picks it, not the container spec).
	Runtime string
	// RuntimeFlags are passed as --runtime-flag (e.g. "network=none").
	RuntimeFlags []string
	// Socket is the unix socket path to serve on.
	Socket string
	Log    zerolog.Logger
}

// Service is a `podman system service` process that sandpool started and
// keeps running: it is restarted with backoff when it dies, and it dies with
// sandpool (containers do not: conmon keeps them). Start and Stop pause and
// resume it, which tests use to simulate an outage.
type Service struct {
	cfg ServiceConfig

	reqs chan svcReq
	done chan struct{}

	mu       sync.Mutex
	pid      int
	restarts int
	lastErr  string
	closed   bool
}

type svcOp int

const (
	opStart svcOp = iota
	opStop
	opKill
	opClose
)

type svcReq struct {
	op    svcOp
	reply chan struct{}
}

// readyTimeout bounds how long a started service may take to answer.
const readyTimeout = 30 * time.Second

// StartService starts a supervised service and waits until it answers.
func StartService(ctx context.Context, cfg ServiceConfig) (*Service, error) {
	if cfg.Podman == "" {
		cfg.Podman = "podman"
	}
	if cfg.Runtime == "" || cfg.Socket == "" {
		return nil, errors.New("podman service: runtime and socket are required")
	}
	if _, err := exec.LookPath(cfg.Podman); err != nil {
		return nil, fmt.Errorf("podman service: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(cfg.Socket), 0o700); err != nil {
		return nil, fmt.Errorf("podman service: %w", err)
	}
	s := &Service{cfg: cfg, reqs: make(chan svcReq), done: make(chan struct{})}
	go s.supervise()
	if err := s.waitReady(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// URI is the service's address for the podman bindings.
func (s *Service) URI() string { return "unix://" + s.cfg.Socket }

// Socket is the service's socket path.
func (s *Service) Socket() string { return s.cfg.Socket }

// PID is the current service process, or 0.
func (s *Service) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pid
}

// Restarts counts restarts after crashes.
func (s *Service) Restarts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.restarts
}

func (s *Service) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	for {
		if ping(ctx, s.cfg.Socket) == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			s.mu.Lock()
			last := s.lastErr
			s.mu.Unlock()
			return fmt.Errorf("podman service (%s) did not become ready: %s", s.cfg.Runtime, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (s *Service) request(op svcOp) {
	r := svcReq{op: op, reply: make(chan struct{})}
	select {
	case s.reqs <- r:
		<-r.reply
	case <-s.done:
	}
}

// Stop stops the service and keeps it stopped until Start.
func (s *Service) Stop() { s.request(opStop) }

// Start starts a stopped service and waits until it answers.
func (s *Service) Start(ctx context.Context) error {
	s.request(opStart)
	return s.waitReady(ctx)
}

// Kill kills the service process as a crash would; the supervisor restarts it.
func (s *Service) Kill() { s.request(opKill) }

// Close stops the service for good and waits for the supervisor.
func (s *Service) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.request(opClose)
	<-s.done
	_ = os.Remove(s.cfg.Socket)
	return nil
}

// supervise owns the service process. It runs on a locked OS thread
// because Pdeathsig fires when the thread that forked the child exits: a
// locked thread lives as long as this goroutine, so the service dies with
// sandpool and not before.
func (s *Service) supervise() {
	runtime.LockOSThread()
	defer close(s.done)
	want := true
	var cmd *exec.Cmd
	var exited chan error
	backoff := 250 * time.Millisecond
	var retry <-chan time.Time
	var started time.Time

	stop := func(sig syscall.Signal) {
		if cmd == nil {
			return
		}
		_ = cmd.Process.Signal(sig)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		cmd, exited = nil, nil
		s.setPid(0)
	}
	for {
		if want && cmd == nil && retry == nil {
			var err error
			cmd, exited, err = s.spawn()
			if err != nil {
				s.setErr(err.Error())
				retry = time.After(backoff)
				backoff = min(backoff*2, 30*time.Second)
			} else {
				started = time.Now()
			}
		}
		select {
		case err := <-exited:
			cmd, exited = nil, nil
			s.setPid(0)
			if want {
				s.mu.Lock()
				s.restarts++
				s.mu.Unlock()
				s.setErr(fmt.Sprintf("service exited: %v", err))
				s.cfg.Log.Warn().Str("ociRuntime", s.cfg.Runtime).Err(err).Msg("podman service exited; restarting")
				if time.Since(started) > time.Minute {
					backoff = 250 * time.Millisecond
				}
				retry = time.After(backoff)
				backoff = min(backoff*2, 30*time.Second)
			}
		case <-retry:
			retry = nil
		case r := <-s.reqs:
			switch r.op {
			case opStart:
				want, retry = true, nil
			case opStop:
				want, retry = false, nil
				stop(syscall.SIGTERM)
			case opKill:
				if cmd != nil {
					_ = cmd.Process.Kill()
				}
			case opClose:
				stop(syscall.SIGTERM)
				close(r.reply)
				return
			}
			close(r.reply)
		}
	}
}

func (s *Service) spawn() (*exec.Cmd, chan error, error) {
	_ = os.Remove(s.cfg.Socket) // a stale socket would make the service fail
	args := []string{"--runtime", s.cfg.Runtime}
	for _, f := range s.cfg.RuntimeFlags {
		args = append(args, "--runtime-flag", f)
	}
	args = append(args, "system", "service", "--time=0", "unix://"+s.cfg.Socket)
	cmd := exec.Command(s.cfg.Podman, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM, Setpgid: true}
	cmd.Stdout = nil
	stderr := &tailBuffer{max: 2048}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	s.setPid(cmd.Process.Pid)
	exited := make(chan error, 1)
	go func() {
		err := cmd.Wait()
		if err != nil && stderr.Len() > 0 {
			err = fmt.Errorf("%w: %s", err, stderr.String())
		}
		exited <- err
	}()
	return cmd, exited, nil
}

func (s *Service) setPid(pid int) {
	s.mu.Lock()
	s.pid = pid
	s.mu.Unlock()
}

func (s *Service) setErr(e string) {
	s.mu.Lock()
	s.lastErr = e
	s.mu.Unlock()
}

// ping asks the service at socket for /_ping.
func ping(ctx context.Context, socket string) error {
	c := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		DisableKeepAlives: true,
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://d/_ping", nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("ping: %s", resp.Status)
	}
	return nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append([]byte(nil), t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.b)
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
