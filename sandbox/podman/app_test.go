package podman_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sandpool/sandpool/internal/errcode"
	"github.com/sandpool/sandpool/internal/podmantest"
	"github.com/sandpool/sandpool/sandbox"
	"github.com/sandpool/sandpool/sandbox/podman"
)

// get sends one HTTP/1.1 GET over a fresh connection to the application.
func get(t *testing.T, sb *sandbox.Sandbox, path string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := sb.DialApp(ctx)
	if err != nil {
		t.Fatalf("DialApp: %v", err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n", path)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestCustomContainer(t *testing.T) {
	eachRuntime(t, func(t *testing.T, rt podmantest.Runtime, e *podman.Engine) {
		sb := podmantest.Create(t, e, podmantest.AppSpec(t, rt))
		if a := sb.BootInfo.App; a == nil || !a.Listening {
			t.Fatalf("boot info: %+v", sb.BootInfo.App)
		}
		for i := 1; i <= 2; i++ {
			if code, body := get(t, sb, "/count"); code != 200 || !strings.Contains(body, fmt.Sprintf(`"count":%d`, i)) {
				t.Errorf("count %d: %d %q", i, code, body)
			}
		}
		// The sandbox has no network interface but loopback, as a Python one.
		if sb.Isolation == sandbox.IsolationContainer {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := sb.Execute(ctx, sandbox.ExecRequest{Code: "1", Timeout: time.Second}, nil); errcode.Of(err) != errcode.Unavailable {
				t.Errorf("execute in a custom container: %v", err)
			}
		}
		// Exiting ends the sandbox: the next dial finds it gone.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := sb.DialApp(ctx)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "POST /exit?code=7 HTTP/1.1\r\nHost: app\r\nContent-Length: 0\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("exit: %v", err)
		}
		c.Close()
		deadline := time.Now().Add(20 * time.Second)
		for {
			_, err := sb.DialApp(ctx)
			if code := errcode.Of(err); code == errcode.SandboxGone {
				break
			} else if time.Now().After(deadline) {
				t.Fatalf("after exit: %v", err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
}

func TestCustomContainerNeverReady(t *testing.T) {
	eachRuntime(t, func(t *testing.T, rt podmantest.Runtime, e *podman.Engine) {
		cases := []struct {
			name string
			edit func(*sandbox.Spec)
			code errcode.Code
			msg  string
		}{
			{"wrong port", func(s *sandbox.Spec) { s.App.Port = 9999 }, errcode.Timeout, "in time"},
			{"never ready", func(s *sandbox.Spec) { s.Env["DEMO_NEVER_READY"] = "1" }, errcode.Timeout, "readiness path did not answer 2xx in time (last: status 503)"},
			{"exits at once", func(s *sandbox.Spec) { s.App.Command = []string{"/app-missing"} }, errcode.Unavailable, "exited during startup (exit code 127)"},
		}
		for _, tc := range cases {
			spec := podmantest.AppSpec(t, rt)
			tc.edit(&spec)
			spec.StartTimeout = 15 * time.Second
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			t0 := time.Now()
			sb, err := e.Create(ctx, spec)
			cancel()
			if err == nil {
				podmantest.Remove(t, e, sb)
				t.Errorf("%s: created", tc.name)
				continue
			}
			if errcode.Of(err) != tc.code || !strings.Contains(errcode.Public(err), tc.msg) {
				t.Errorf("%s: %v", tc.name, err)
			}
			if d := time.Since(t0); d > 45*time.Second {
				t.Errorf("%s: took %v", tc.name, d)
			}
		}
	})
}
