package podman_test

import (
	"context"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sandpool/sandpool/internal/errcode"
	"github.com/sandpool/sandpool/internal/podmantest"
	"github.com/sandpool/sandpool/sandbox"
	"github.com/sandpool/sandpool/sandbox/podman"
)

// TestBadCode runs hostile or broken code: every call returns within its
// timeout with a clear status, and the sandbox keeps working after it.
func TestBadCode(t *testing.T) {
	eachRuntime(t, func(t *testing.T, rt podmantest.Runtime, e *podman.Engine) {
		sb := podmantest.Create(t, e, podmantest.Spec(rt))
		run(t, sb, "kept = 'yes'", 10*time.Second)
		tests := []struct {
			name    string
			code    string
			timeout time.Duration
			check   func(t *testing.T, res *sandbox.Result, out *sandbox.Output)
		}{
			{"loops forever", "while True:\n    pass", 2 * time.Second, func(t *testing.T, res *sandbox.Result, out *sandbox.Output) {
				if res.Status != sandbox.StatusTimeout || res.KernelRestarted || out.Error == nil || out.Error.Name != "KeyboardInterrupt" {
					t.Errorf("got %+v, error %+v", res, out.Error)
				}
			}},
			{"sleeps", "import time\ntime.sleep(3600)", 2 * time.Second, func(t *testing.T, res *sandbox.Result, out *sandbox.Output) {
				if res.Status != sandbox.StatusTimeout || res.KernelRestarted {
					t.Errorf("got %+v", res)
				}
			}},
			{"ignores interrupts", "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\ntime.sleep(3600)", 2 * time.Second, func(t *testing.T, res *sandbox.Result, out *sandbox.Output) {
				if res.Status != sandbox.StatusTimeout || !res.KernelRestarted || !strings.Contains(res.Reason, "restarted") {
					t.Errorf("got %+v", res)
				}
			}},
			{"reads stdin", "name = input('name? ')", 10 * time.Second, func(t *testing.T, res *sandbox.Result, out *sandbox.Output) {
				if res.Status != sandbox.StatusError || out.Error == nil || out.Error.Name != "EOFError" {
					t.Errorf("got %+v, error %+v", res, out.Error)
				}
			}},
			{"prints 200 MB", "import sys\nchunk = 'x' * (1 << 20)\nfor _ in range(200):\n    sys.stdout.write(chunk)", 120 * time.Second, func(t *testing.T, res *sandbox.Result, out *sandbox.Output) {
				if res.Status != sandbox.StatusOK || !res.StdoutTruncated || res.StdoutBytes != 200<<20 || len(out.Stdout) != sandbox.DefaultMaxOutput {
					t.Errorf("got %+v, kept %d bytes", res, len(out.Stdout))
				}
			}},
			{"fills /mnt/data", "import errno\ntry:\n    with open('big', 'wb') as f:\n        while True:\n            f.write(b'\\0' * (1 << 20))\nexcept OSError as e:\n    print(errno.errorcode[e.errno])", 120 * time.Second, func(t *testing.T, res *sandbox.Result, out *sandbox.Output) {
				if res.Status != sandbox.StatusOK || string(out.Stdout) != "ENOSPC\n" {
					t.Errorf("got %+v %q %+v", res, out.Stdout, out.Error)
				}
			}},
			{"space again after delete", "import os\nos.remove('big')\nopen('small', 'w').write('ok')", 20 * time.Second, func(t *testing.T, res *sandbox.Result, out *sandbox.Output) {
				if res.Status != sandbox.StatusOK {
					t.Errorf("got %+v %+v", res, out.Error)
				}
			}},
			{"exhausts memory", "hog = []\nwhile True:\n    hog.append(bytearray(32 << 20))", 120 * time.Second, func(t *testing.T, res *sandbox.Result, out *sandbox.Output) {
				// The kernel's address-space cap turns a memory bomb into a
				// MemoryError; a kill by the OOM killer would be reported as
				// a crash with a restart instead.
				ok := (res.Status == sandbox.StatusError && out.Error != nil && out.Error.Name == "MemoryError") ||
					(res.Status == sandbox.StatusCrashed && res.KernelRestarted)
				if !ok {
					t.Errorf("got %+v, error %+v", res, out.Error)
				}
			}},
			{"memory is back", "hog = None\nimport gc\ngc.collect()\nlen(bytearray(256 << 20))", 60 * time.Second, func(t *testing.T, res *sandbox.Result, out *sandbox.Output) {
				if res.Status != sandbox.StatusOK || result(out) != "268435456" {
					t.Errorf("got %+v %q %+v", res, result(out), out.Error)
				}
			}},
			{"kills its kernel", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)", 20 * time.Second, func(t *testing.T, res *sandbox.Result, out *sandbox.Output) {
				if res.Status != sandbox.StatusCrashed || !res.KernelRestarted || !strings.Contains(res.Reason, "SIGKILL") {
					t.Errorf("got %+v", res)
				}
			}},
		}
		for _, tc := range tests {
			start := time.Now()
			stopSampling := sampleHeap()
			res, out := run(t, sb, tc.code, tc.timeout)
			if peak, base := stopSampling(); peak > base+64<<20 {
				// The server streams and caps output: 200 MB through it must
				// not show in its heap.
				t.Errorf("%s: server heap grew from %d MiB to %d MiB", tc.name, base>>20, peak>>20)
			}
			if el := time.Since(start); el > tc.timeout+sandbox.ExecGrace/3 {
				t.Errorf("%s: took %s with a %s timeout", tc.name, el, tc.timeout)
			}
			t.Run(tc.name, func(t *testing.T) { tc.check(t, res, out) })
			// The sandbox still works (with its state, unless it said the
			// kernel restarted).
			res2, out2 := run(t, sb, "print('alive')", 60*time.Second)
			if res2.Status != sandbox.StatusOK || string(out2.Stdout) != "alive\n" {
				t.Fatalf("after %s: %+v %q", tc.name, res2, out2.Stdout)
			}
		}
	})
}

// TestSandboxKilledMidExecution: the caller gets a clear error, not a hang.
func TestSandboxKilledMidExecution(t *testing.T) {
	eachRuntime(t, func(t *testing.T, rt podmantest.Runtime, e *podman.Engine) {
		sb := podmantest.Create(t, e, podmantest.Spec(rt))
		errc := make(chan error, 1)
		started := make(chan struct{})
		var once sync.Once
		go func() {
			_, err := sb.Execute(context.Background(), sandbox.ExecRequest{Code: "print('go', flush=True)\nimport time\ntime.sleep(120)", Timeout: 5 * time.Minute},
				func(ev sandbox.Event) {
					if ev.Kind == sandbox.EventStdout {
						once.Do(func() { close(started) })
					}
				})
			errc <- err
		}()
		<-started
		killed := time.Now()
		if err := e.Kill(context.Background(), sb.ID); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-errc:
			if c := errcode.Of(err); c != errcode.SandboxGone {
				t.Errorf("error %v (%s), want sandbox_gone", err, c)
			}
			t.Logf("execution failed %s after the kill: %v", time.Since(killed), err)
		case <-time.After(60 * time.Second):
			t.Fatal("Execute hangs after its sandbox was killed")
		}
		if _, err := sb.Info(context.Background(), false, 0); errcode.Of(err) != errcode.SandboxGone {
			t.Errorf("next call: %v, want sandbox_gone", err)
		}
	})
}

// TestPodmanServiceOutage: with the podman service stopped, calls fail fast
// with "unavailable"; once it is back, the same sandbox works with its state.
func TestPodmanServiceOutage(t *testing.T) {
	eachRuntime(t, func(t *testing.T, rt podmantest.Runtime, shared *podman.Engine) {
		e, err := podmantest.NewEngine(t, rt, podmantest.Agent(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.Close() })
		sb := podmantest.Create(t, e, podmantest.Spec(rt))
		run(t, sb, "x = 7", 10*time.Second)

		e.Service().Stop()
		start := time.Now()
		_, err = sb.Execute(context.Background(), sandbox.ExecRequest{Code: "x", Timeout: 10 * time.Second}, nil)
		if errcode.Of(err) != errcode.Unavailable || time.Since(start) > 20*time.Second {
			t.Errorf("with the service stopped: %v (%s) after %s, want unavailable", err, errcode.Of(err), time.Since(start))
		}
		if err := e.Ping(context.Background()); errcode.Of(err) != errcode.Unavailable {
			t.Errorf("ping: %v", err)
		}

		if err := e.Service().Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		if _, out := run(t, sb, "x", 10*time.Second); result(out) != "7" {
			t.Errorf("after the service came back: %q", result(out))
		}

		// A crash of the service: the supervisor restarts it.
		e.Service().Kill()
		deadline := time.Now().Add(60 * time.Second)
		for {
			res, err := sb.Execute(context.Background(), sandbox.ExecRequest{Code: "x + 1", Timeout: 10 * time.Second}, nil)
			if err == nil && res.Status == sandbox.StatusOK {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the service did not come back after a crash: %v", err)
			}
			time.Sleep(200 * time.Millisecond)
		}
		if e.Service().Restarts() < 1 {
			t.Errorf("restarts %d", e.Service().Restarts())
		}
	})
}

// TestServerRestartKeepsState: a new engine (a restarted server, with a new
// podman service) reconnects to a sandbox and finds its kernel as it was.
func TestServerRestartKeepsState(t *testing.T) {
	eachRuntime(t, func(t *testing.T, rt podmantest.Runtime, shared *podman.Engine) {
		first, err := podmantest.NewEngine(t, rt, podmantest.Agent(t))
		if err != nil {
			t.Fatal(err)
		}
		sb, err := first.Create(context.Background(), podmantest.Spec(rt))
		if err != nil {
			first.Close()
			t.Fatal(err)
		}
		t.Cleanup(func() { podmantest.Remove(t, shared, sb) })
		run(t, sb, "import os\nsecret = 'kept'\npid = os.getpid()\nopen('f.txt', 'w').write('file kept')", 10*time.Second)
		gen := sb.BootInfo.Kernel.Generation
		first.Close() // the server goes away, and its podman service with it

		again, err := shared.Open(context.Background(), sb.ID)
		if err != nil {
			t.Fatal(err)
		}
		defer again.Close()
		_, out := run(t, again, "(secret, os.getpid() == pid, open('f.txt').read())", 10*time.Second)
		if result(out) != "('kept', True, 'file kept')" {
			t.Errorf("after reconnecting: %q %+v", result(out), out.Error)
		}
		if again.BootInfo.Kernel.Generation != gen {
			t.Errorf("kernel generation %d, was %d", again.BootInfo.Kernel.Generation, gen)
		}
	})
}

// sampleHeap samples this process's heap until the returned function is
// called, which reports the peak and the heap at the start.
func sampleHeap() func() (peak, base uint64) {
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	peak := base
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				peak = max(peak, ms.HeapAlloc)
			}
		}
	}()
	return func() (uint64, uint64) {
		close(stop)
		<-done
		return peak, base
	}
}
