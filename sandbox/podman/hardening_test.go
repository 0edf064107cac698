package podman_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sandpool/sandpool/internal/podmantest"
	"github.com/sandpool/sandpool/sandbox"
	"github.com/sandpool/sandpool/sandbox/podman"
)

// TestF10SignalsToPID1: the sandbox's code signals the agent (its PID 1,
// same uid) with every signal that ends a Go program, the fault signals
// first; the agent, and with it the sandbox and the kernel's state, lives.
func TestF10SignalsToPID1(t *testing.T) {
	eachRuntime(t, func(t *testing.T, rt podmantest.Runtime, e *podman.Engine) {
		sb := podmantest.Create(t, e, podmantest.Spec(rt))
		run(t, sb, "kept = 'yes'", 10*time.Second)
		res, out := run(t, sb, `import ctypes, os, signal, time
libc = ctypes.CDLL(None, use_errno=True)
sent = []
for s in ('SIGABRT', 'SIGBUS', 'SIGFPE', 'SIGSEGV', 'SIGILL', 'SIGTRAP', 'SIGSYS', 'SIGQUIT', 'SIGSTKFLT',
          'SIGTERM', 'SIGINT', 'SIGHUP', 'SIGUSR1', 'SIGUSR2', 'SIGALRM', 'SIGPIPE', 'SIGXCPU', 'SIGXFSZ',
          'SIGPWR', 'SIGTSTP', 'SIGTTIN', 'SIGTTOU', 'SIGSTOP', 'SIGCONT', 'SIGKILL'):
    try:
        os.kill(1, getattr(signal, s, 16))
    except PermissionError:
        pass  # SIGKILL and SIGSTOP (which gVisor would deliver to PID 1)
    sent.append(s)
    time.sleep(0.02)
# The same by other routes: a pid with high bits the kernel drops, tgkill,
# and the agent's process group.
for nr, args in ((62, (0x100000001, 19)), (62, (0x100000001, 9)), (234, (1, 1, 19)), (200, (1, 19))):
    libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args])
try:
    os.setpgid(0, 1)
    os.kill(0, signal.SIGSTOP)
    print('joined the agent group')
except PermissionError:
    pass
print(len(sent))`, 30*time.Second)
		if res.Status != sandbox.StatusOK || string(out.Stdout) != "25\n" {
			t.Fatalf("sending the signals: %+v %q %+v", res, out.Stdout, out.Error)
		}
		time.Sleep(500 * time.Millisecond) // a dying agent takes the sandbox with it
		res, out = run(t, sb, "print(kept)", 30*time.Second)
		if res.Status != sandbox.StatusOK || string(out.Stdout) != "yes\n" || res.KernelRestarted {
			t.Errorf("after the signals: %+v %q", res, out.Stdout)
		}
	})
}

// forkBomb is the battery's R1: fork until the limit, children living 3 s.
const forkBomb = `import os, time
n = 0
try:
    while True:
        if os.fork() == 0:
            time.sleep(3)
            os._exit(0)
        n += 1
except OSError as e:
    print('stopped', n, e.errno)`

// TestF12ForkBomb: a fork bomb in the session's own code stops at EAGAIN
// and leaves the sandbox, and the kernel's state, alive on every runtime;
// so does one whose every process forks, which only a kernel restart ends.
func TestF12ForkBomb(t *testing.T) {
	eachRuntime(t, func(t *testing.T, rt podmantest.Runtime, e *podman.Engine) {
		sb := podmantest.Create(t, e, podmantest.Spec(rt))
		run(t, sb, "kept = 'yes'", 10*time.Second)
		res, out := run(t, sb, forkBomb, 60*time.Second)
		var n, errno int
		fmt.Sscanf(string(out.Stdout), "stopped %d %d", &n, &errno)
		if res.Status != sandbox.StatusOK || errno != 11 || n < 10 {
			t.Errorf("fork bomb: %+v %q %+v", res, out.Stdout, out.Error)
		}
		t.Logf("%s: the fork bomb stopped after %d processes", rt.Name, n)
		res, out = run(t, sb, "import time\ntime.sleep(4)\nprint(kept)", 30*time.Second)
		if res.Status != sandbox.StatusOK || string(out.Stdout) != "yes\n" {
			t.Fatalf("after the fork bomb: %+v %q %+v", res, out.Stdout, out.Error)
		}
		// Every process forks, forever: the timeout restarts the kernel
		// and kills them all.
		res, _ = run(t, sb, `import os, signal, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
while True:
    try:
        os.fork()
    except OSError:
        time.sleep(0.01)`, 5*time.Second)
		if res.Status != sandbox.StatusTimeout || !res.KernelRestarted {
			t.Errorf("forking forever: %+v", res)
		}
		res, out = run(t, sb, "import os\nprint(len([p for p in os.listdir('/proc') if p.isdigit()]) < 10)", 30*time.Second)
		if res.Status != sandbox.StatusOK || string(out.Stdout) != "True\n" {
			t.Errorf("after forking forever: %+v %q %+v", res, out.Stdout, out.Error)
		}
	})
}

// TestF12StdoutFlood: stdout floods finish well within a 30 s timeout on
// every runtime, truncated to the cap: the battery's R5 (64 writes of
// 1 MiB) and one of small writes (200 000 prints), which took 1.5 s under
// runc and ran into the timeout under gVisor while every print was a write
// of its own.
func TestF12StdoutFlood(t *testing.T) {
	eachRuntime(t, func(t *testing.T, rt podmantest.Runtime, e *podman.Engine) {
		sb := podmantest.Create(t, e, podmantest.Spec(rt))
		tests := []struct {
			name, code string
			bytes      int64
		}{
			{"64 MiB in 1 MiB writes", "import sys\nfor _ in range(64):\n    sys.stdout.write('x' * (1 << 20))", 64 << 20},
			{"200 000 prints", "for i in range(200000):\n    print(i % 10)", 400000},
		}
		for _, tc := range tests {
			start := time.Now()
			res, out := run(t, sb, tc.code, 30*time.Second)
			t.Logf("%s: %s in %v", rt.Name, tc.name, time.Since(start).Round(time.Millisecond))
			kept := min(tc.bytes, sandbox.DefaultMaxOutput)
			if res.Status != sandbox.StatusOK || res.StdoutTruncated != (tc.bytes > kept) || res.StdoutBytes != tc.bytes || int64(len(out.Stdout)) != kept {
				t.Errorf("%s: %+v, kept %d bytes", tc.name, res, len(out.Stdout))
			}
		}
		// Buffered output still streams, and comes in order with what a
		// subprocess prints.
		var col sandbox.Collector
		first := make(chan time.Duration, 1)
		start := time.Now()
		sink := col.Sink()
		res, err := sb.Execute(context.Background(), sandbox.ExecRequest{Code: "import subprocess, time\nprint('a')\nsubprocess.run(['echo', 'b'])\nprint('c')\ntime.sleep(2)\nprint('d')", Timeout: 30 * time.Second},
			func(ev sandbox.Event) {
				if ev.Kind == sandbox.EventStdout {
					select {
					case first <- time.Since(start):
					default:
					}
				}
				sink(ev)
			})
		if err != nil || res.Status != sandbox.StatusOK || string(col.Out.Stdout) != "a\nb\nc\nd\n" {
			t.Fatalf("streaming: %v %+v %q", err, res, col.Out.Stdout)
		}
		if f := <-first; f > time.Since(start)-time.Second {
			t.Errorf("the first output came %v after the start, with the end at %v", f, time.Since(start))
		}
	})
}

// TestF12Daemon: processes the code starts in the background, detached or
// not, outlive the execution that started them on every runtime, and end
// with a kernel restart (and with the sandbox).
func TestF12Daemon(t *testing.T) {
	eachRuntime(t, func(t *testing.T, rt podmantest.Runtime, e *podman.Engine) {
		sb := podmantest.Create(t, e, podmantest.Spec(rt))
		res, out := run(t, sb, `import os, subprocess, time
def beat(path):
    while True:
        with open(path, 'a') as f:
            f.write('.')
        time.sleep(0.05)
pid = os.fork()
if pid == 0:
    os.setsid()
    if os.fork() == 0:
        beat('/tmp/daemon')
    os._exit(0)
os.waitpid(pid, 0)
child = subprocess.Popen(['python3', '-c', 'import time\nwhile True:\n    open("/tmp/child", "a").write(".")\n    time.sleep(0.05)'])
time.sleep(0.5)
print('started')`, 20*time.Second)
		if res.Status != sandbox.StatusOK || string(out.Stdout) != "started\n" || res.Killed != 0 {
			t.Fatalf("starting them: %+v %q %+v", res, out.Stdout, out.Error)
		}
		const growing = `import os, time
a = [os.path.getsize(p) for p in ('/tmp/daemon', '/tmp/child')]
time.sleep(1)
print([os.path.getsize(p) > s for p, s in zip(('/tmp/daemon', '/tmp/child'), a)])`
		for i := range 2 {
			if _, out := run(t, sb, growing, 20*time.Second); string(out.Stdout) != "[True, True]\n" {
				t.Errorf("execution %d after: the daemon and the child are not both alive: %q %+v", i+1, out.Stdout, out.Error)
			}
		}
		res, _ = run(t, sb, "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\ntime.sleep(60)", 2*time.Second)
		if !res.KernelRestarted {
			t.Fatalf("the kernel did not restart: %+v", res)
		}
		if _, out := run(t, sb, growing, 20*time.Second); string(out.Stdout) != "[False, False]\n" {
			t.Errorf("after the kernel restart, the daemon or the child lives: %q %+v", out.Stdout, out.Error)
		}
	})
}

// TestF12AgentEnviron: the sandbox's code (same uid) cannot read the
// agent's environment or memory on any runtime: under runc the files are
// not readable (the agent is not dumpable); gVisor ignores dumpability for
// /proc, so there the agent has zeroed the block the file shows.
func TestF12AgentEnviron(t *testing.T) {
	eachRuntime(t, func(t *testing.T, rt podmantest.Runtime, e *podman.Engine) {
		sb := podmantest.Create(t, e, podmantest.Spec(rt))
		_, out := run(t, sb, `import os
r = {}
for f in ('environ', 'mem'):
    try:
        b = open('/proc/1/' + f, 'rb').read(1 << 16)
        r[f] = 'empty' if b.strip(b'\0') == b'' else 'read %r' % b[:80]
    except OSError as e:
        r[f] = type(e).__name__
print(r['environ'], r['mem'], b'PATH=' in open('/proc/self/environ', 'rb').read())`, 20*time.Second)
		got := string(out.Stdout)
		if got != "PermissionError PermissionError True\n" && got != "empty PermissionError True\n" {
			t.Errorf("the agent's /proc/1/environ and mem: %q %+v", got, out.Error)
		}
		t.Logf("%s: %q", rt.Name, got)
	})
}
