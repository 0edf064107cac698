package battery_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/sandpool/sandpool/api"
	"github.com/sandpool/sandpool/internal/podmantest"
	"github.com/sandpool/sandpool/pool"
)

// server is one start of sandpool (a pool manager and the HTTP API) over
// a state directory, as `sandpool serve` would be.
type server struct {
	a     *attacker
	m     *pool.Manager
	close func()
}

// start starts a server with its own server id on stateDir; the test
// removes every sandbox of that id when it ends.
func start(t *testing.T, rt podmantest.Runtime, serverID, stateDir string, ready int) *server {
	t.Helper()
	eng := podmantest.Engine(t, rt)
	podmantest.RemoveLabelled(t, eng, map[string]string{pool.LabelServer: serverID})
	cfg := pool.Config{Name: "faults-" + rt.Name, Scale: pool.ScaleConfig{MaxConcurrentSessions: 4, ReadySessionInstances: ptr(ready)}}
	m := podmantest.Manager(t, rt, cfg, func(o *pool.ManagerOptions) {
		o.Settings.ServerID, o.StateDir = serverID, stateDir
		o.Settings.HealthInterval = 500 * time.Millisecond
	})
	url, stop := podmantest.Serve(t, api.Options{Manager: m,
		Auth: api.AuthConfig{APIKeys: []api.APIKey{{Name: "alice", Key: aliceKey}}}, Log: zerolog.Nop()})
	closeAll := sync.OnceFunc(func() {
		stop()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := m.Close(ctx); err != nil {
			t.Errorf("closing the manager: %v", err)
		}
	})
	t.Cleanup(closeAll)
	var mu sync.Mutex
	var bad []string
	return &server{m: m, close: closeAll,
		a: &attacker{t: t, base: url + "/pools/" + cfg.Name, token: aliceKey, mu: &mu, bad: &bad}}
}

func faultID(t *testing.T, rt podmantest.Runtime) string {
	return podmantest.ServerID(fmt.Sprintf("faults-%s-%d", rt.Name, time.Now().UnixNano()%1e6))
}

// TestFaults: each fault ends in a clear answer, and where state could
// survive, it does. (A stopped and restarted podman service is
// pool.TestEngineOutage and podman.TestPodmanServiceOutage.)
func TestFaults(t *testing.T) {
	for _, rt := range podmantest.Runtimes() {
		t.Run(rt.Name, func(t *testing.T) {
			t.Parallel()
			t.Run("sandbox killed mid-execution", func(t *testing.T) {
				id := faultID(t, rt)
				s := start(t, rt, id, t.TempDir(), 0)
				s.a.run("victim", "x = 1", 60)
				done := make(chan answer, 1)
				go func() { r, _ := s.a.exec("victim", "import time\ntime.sleep(60)", 90); done <- r }()
				time.Sleep(2 * time.Second)
				eng := podmantest.Engine(t, rt)
				list, err := eng.List(context.Background(), map[string]string{pool.LabelServer: id})
				if err != nil || len(list) != 1 {
					t.Fatalf("%d sandboxes, %v; want the victim's alone", len(list), err)
				}
				if err := eng.Kill(context.Background(), list[0].ID); err != nil {
					t.Fatal(err)
				}
				select {
				case r := <-done:
					if r.status != http.StatusGone || !strings.Contains(string(r.body), "session_lost") {
						t.Errorf("the execution in flight: %d %s", r.status, r.body)
					}
				case <-time.After(30 * time.Second):
					t.Fatal("the execution in flight did not end 30 s after its sandbox was killed")
				}
				// The next request starts a new session: x is gone, and says so.
				_, er := s.a.exec("victim", "x", 60)
				if er.Status != "Failed" || !strings.Contains(er.Result.Stderr, "NameError") {
					t.Errorf("after the loss: %+v", er)
				}
			})
			t.Run("kernel killed", func(t *testing.T) {
				s := start(t, rt, faultID(t, rt), t.TempDir(), 0)
				s.a.run("kernel", "x = 1\nopen('/mnt/data/kept.txt', 'w').write('kept')", 60)
				_, er := s.a.exec("kernel", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)", 60)
				if er.Status != "Failed" || !strings.Contains(er.Result.Stderr, "restarted") {
					t.Errorf("a killed kernel: %+v", er)
				}
				if out := s.a.run("kernel", "print(open('/mnt/data/kept.txt').read(), 'x' in globals())", 60); out != "kept False\n" {
					t.Errorf("after the kernel restart: %q, want the file kept and the variable gone", out)
				}
			})
			t.Run("out of memory", func(t *testing.T) {
				s := start(t, rt, faultID(t, rt), t.TempDir(), 0)
				s.a.run("oom-victim", "open('/mnt/data/kept.txt', 'w').write('kept')", 60)
				// Four processes, each under the kernel's address-space cap,
				// together well over the sandbox's 1 GiB.
				r, er := s.a.exec("oom-victim", `import multiprocessing as mp, time
def hog():
    b = bytearray(400 << 20)
    for i in range(0, len(b), 4096):
        b[i] = 1
    time.sleep(3)
ps = [mp.Process(target=hog) for _ in range(4)]
[p.start() for p in ps]
[p.join() for p in ps]
print(sorted(p.exitcode for p in ps))`, 120)
				switch {
				case r.status == http.StatusOK && strings.Contains(er.Result.Stdout, "-9"):
					t.Logf("the OOM killer took a process: %s", er.Result.Stdout)
				case r.status == http.StatusOK && er.Status == "Failed" && strings.Contains(er.Result.Stderr, "memory"):
					t.Logf("the kernel was killed: %s", er.Result.Stderr)
				case r.status == http.StatusGone && strings.Contains(string(r.body), "session_lost"):
					t.Logf("the sandbox died (expected under gVisor): %s", r.body)
				default:
					t.Errorf("out of memory: %d %.500s", r.status, r.body)
				}
				if _, er := s.a.exec("oom-victim", "print('alive')", 60); er.Result.Stdout != "alive\n" {
					t.Errorf("the identifier after the OOM: %+v", er)
				}
			})
			t.Run("restart mid-use", func(t *testing.T) {
				id, state := faultID(t, rt), t.TempDir()
				s := start(t, rt, id, state, 1)
				s.a.run("restart", "x = 42\nopen('/mnt/data/kept.txt', 'w').write('kept')", 60)
				done := make(chan string, 1)
				go func() {
					r, er := s.a.exec("restart", "import time\ntime.sleep(2)\ny = 1\nprint('finished')", 60)
					done <- fmt.Sprintf("%d %s", r.status, er.Result.Stdout)
				}()
				time.Sleep(500 * time.Millisecond)
				s.close() // drains the execution in flight
				if got := <-done; got != "200 finished\n" {
					t.Errorf("the execution in flight at shutdown: %q", got)
				}
				s = start(t, rt, id, state, 1)
				if out := s.a.run("restart", "print(x, y, open('/mnt/data/kept.txt').read())", 60); out != "42 1 kept\n" {
					t.Errorf("after the restart: %q, want every variable and file", out)
				}
			})
			t.Run("host state directory full", func(t *testing.T) {
				id, state := faultID(t, rt), t.TempDir()
				if err := unix.Mount("tmpfs", state, "tmpfs", 0, "size=256k"); err != nil {
					t.Skipf("cannot mount a small tmpfs: %v", err)
				}
				t.Cleanup(func() { _ = unix.Unmount(state, unix.MNT_DETACH) })
				s := start(t, rt, id, state, 0)
				fill := filepath.Join(state, "fill")
				f, err := os.Create(fill)
				if err != nil {
					t.Fatal(err)
				}
				for _, err = f.Write(make([]byte, 64<<10)); err == nil; _, err = f.Write(make([]byte, 4<<10)) {
				}
				f.Close()
				// Sessions still work while their state cannot be saved ...
				s.a.run("full-a", "x = 'a'", 60)
				os.Remove(fill)
				// ... and are saved with the next change once there is room.
				s.a.run("full-b", "x = 'b'", 60)
				s.close()
				s = start(t, rt, id, state, 0)
				if out := s.a.run("full-a", "print(x)", 60); out != "a\n" {
					t.Errorf("a session created while the state directory was full, after a restart: %q", out)
				}
			})
		})
	}
}
