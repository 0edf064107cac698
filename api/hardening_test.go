package api_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/sandpool/sandpool/api"
	"github.com/sandpool/sandpool/pool"
	"github.com/sandpool/sandpool/sandbox"
)

// noEngine is an Engine with no sandboxes: for tests of the HTTP layer in
// front of the pools, where no request may reach a sandbox.
type noEngine struct{}

var errNoSandboxes = errors.New("this test has no sandboxes")

func (noEngine) Create(context.Context, sandbox.Spec) (*sandbox.Sandbox, error) {
	return nil, errNoSandboxes
}
func (noEngine) Open(context.Context, string) (*sandbox.Sandbox, error) { return nil, errNoSandboxes }
func (noEngine) List(context.Context, map[string]string) ([]sandbox.Summary, error) {
	return nil, nil
}
func (noEngine) Remove(context.Context, string) error { return nil }

// frontServer serves opt over a pool named "front" that has no sandboxes.
func frontServer(t *testing.T, opt api.Options) (addr string) {
	t.Helper()
	zero := 0
	cfg := pool.Config{Name: "front", Runtime: "runc", Image: "localhost/none:1"}
	cfg.Scale.ReadySessionInstances = &zero
	mgr, err := pool.NewManager(context.Background(), []pool.Config{cfg}, pool.ManagerOptions{
		Engines: map[string]pool.Engine{"runc": noEngine{}}, StateDir: t.TempDir(),
		Settings: pool.Settings{ServerID: "front", Log: zerolog.Nop()},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mgr.Close(context.Background()) })
	opt.Manager = mgr
	opt.Log = zerolog.Nop()
	s, err := api.New(context.Background(), opt)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := s.HTTPServer(nil)
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(s.Listener(ln)) }()
	t.Cleanup(func() {
		srv.Close()
		<-done
		s.Close(context.Background())
	})
	return ln.Addr().String()
}

// settle waits for the goroutine count to come back to at most base+slack.
func settle(t *testing.T, base, slack int) {
	t.Helper()
	var n int
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if n = runtime.NumGoroutine(); n <= base+slack {
			return
		}
	}
	buf := make([]byte, 1<<20)
	t.Fatalf("goroutines: %d, baseline %d\n%s", n, base, buf[:runtime.Stack(buf, true)])
}

// TestF1Slowloris: requests that announce a body and never send it, with
// no token, each get their 401 or are closed within the body deadline, and
// hold nothing afterwards.
func TestF1Slowloris(t *testing.T) {
	const timeout = 2 * time.Second
	addr := frontServer(t, api.Options{
		Auth:   api.AuthConfig{APIKeys: []api.APIKey{{Name: "alice", Key: aliceKey}}},
		Limits: api.Limits{BodyTimeoutSeconds: int(timeout / time.Second)},
	})
	base := runtime.NumGoroutine()
	heads := []string{
		"POST /pools/front/executions?identifier=abcd HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 200000\r\n\r\n",
		"POST /pools/front/executions?identifier=abcd HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
		// With a token: the body deadline alone ends it.
		"POST /pools/front/executions?identifier=abcd HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + aliceKey + "\r\nContent-Type: application/json\r\nContent-Length: 200000\r\n\r\n{\"code\":",
		"POST /pools/front/files?identifier=abcd HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=x\r\nContent-Length: 200000\r\n\r\n",
	}
	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, n)
	start := time.Now()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			head := heads[i%len(heads)]
			c, err := net.Dial("tcp", addr)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			if _, err := io.WriteString(c, head); err != nil {
				errs <- err
				return
			}
			_ = c.SetReadDeadline(time.Now().Add(timeout + 10*time.Second))
			res, err := http.ReadResponse(bufio.NewReader(c), nil)
			switch {
			case err == nil:
				res.Body.Close()
				if strings.Contains(head, "Bearer") {
					if res.StatusCode < 400 {
						errs <- fmt.Errorf("a body that never came: status %d", res.StatusCode)
					}
				} else if res.StatusCode != http.StatusUnauthorized {
					errs <- fmt.Errorf("no token: status %d, want 401", res.StatusCode)
				} else if !res.Close {
					errs <- errors.New("a refusal before the body was read does not close the connection")
				}
			case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
				// Closed at the deadline: fine.
			default:
				errs <- fmt.Errorf("neither answered nor closed: %w", err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if d := time.Since(start); d > timeout+10*time.Second {
		t.Errorf("the connections took %v, beyond the body deadline of %v", d, timeout)
	}
	settle(t, base, 5)
}

// TestF1ConnectionCaps: connections over the per-address cap are closed at
// once, and their places come back when they close.
func TestF1ConnectionCaps(t *testing.T) {
	addr := frontServer(t, api.Options{Limits: api.Limits{MaxConnections: 40, MaxConnectionsPerAddress: 10}})
	base := runtime.NumGoroutine()
	var conns []net.Conn
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	for range 30 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	// Of 30 idle connections from one address, 10 stay open; the others
	// are closed at once.
	open := 0
	for _, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		_, err := c.Read(make([]byte, 1))
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			open++
		}
	}
	if open != 10 {
		t.Fatalf("%d of 30 connections from one address stayed open, want 10", open)
	}
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	settle(t, base, 5)
	// Once they are closed, the address may connect again.
	res, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("healthz after the cap: %d", res.StatusCode)
	}
}
