package battery_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sandpool/sandpool/sandbox"
)

// abuse is one resource-abuse execution and what its answer must show.
type abuse struct {
	id, name string
	code     string
	timeout  int
	// ok judges the answer: the status, stdout and stderr.
	ok func(runtime, status, stdout, stderr string) bool
	// after runs next in the same session and must succeed with this
	// stdout ("" means any).
	after, afterOut string
}

var abuses = []abuse{
	{"R1", "fork bomb", `import os, time
n = 0
try:
    while True:
        if os.fork() == 0:
            time.sleep(3)
            os._exit(0)
        n += 1
except OSError as e:
    print('stopped', n, e.errno)`, 60,
		// On every runtime the fork bomb meets EAGAIN and the session
		// lives on (under gVisor at the kernel's process budget, before
		// the sandbox's memory runs out).
		func(rt, st, out, _ string) bool {
			var n, e int
			fmt.Sscanf(out, "stopped %d %d", &n, &e)
			return st == "Succeeded" && e == 11 && n < 1024
		},
		"x = 1\nprint(x)", "1\n"},
	{"R1", "thread bomb", `import threading, time
ts = []
try:
    while True:
        t = threading.Thread(target=time.sleep, args=(3,))
        t.start()
        ts.append(t)
except RuntimeError as e:
    print('threads', len(ts))`, 60,
		func(rt, st, out, _ string) bool {
			var n int
			fmt.Sscanf(out, "threads %d", &n)
			return st == "Succeeded" && n > 0 && n < 1024
		},
		"print(1)", "1\n"},
	{"R2", "memory bomb", "a = []\nwhile True:\n    a.append(bytearray(64 << 20))", 60,
		func(rt, st, _, er string) bool { return st == "Failed" && strings.Contains(er, "MemoryError") },
		"del a\nprint(2)", "2\n"},
	{"R2", "numpy memory bomb", "import numpy as np\nx = np.ones(1 << 31)", 60,
		func(rt, st, _, er string) bool { return st == "Failed" && strings.Contains(er, "MemoryError") },
		"print(3)", "3\n"},
	{"R3", "CPU on every core", `import multiprocessing as mp, os, time
def spin():
    t = time.time()
    while time.time() - t < 3:
        pass
t0 = time.time()
ps = [mp.Process(target=spin) for _ in range(4)]
[p.start() for p in ps]
[p.join() for p in ps]
c = os.times()
print('cores %.2f' % ((c.children_user + c.children_system) / (time.time() - t0)))`, 60,
		// Under gVisor the CPU time the guest sees is the Sentry's own
		// accounting, not the host cgroup's quota: there the neighbour's
		// latency is the oracle.
		func(rt, st, out, _ string) bool {
			var c float64
			fmt.Sscanf(out, "cores %f", &c)
			return st == "Succeeded" && (c <= 1.25 || sandbox.IsGVisor(rt))
		},
		"", ""},
	{"R3", "CPU spin past the timeout", "while True:\n    pass", 3,
		func(rt, st, _, er string) bool { return st == "Failed" && strings.Contains(er, "timeout") },
		"print(4)", "4\n"},
	{"R5", "output flood", "import sys\nfor _ in range(64):\n    sys.stdout.write('x' * (1 << 20))", 120,
		func(rt, st, out, _ string) bool {
			return st == "Succeeded" && len(out) <= 1<<20+4096 && strings.Contains(out, "truncated")
		}, "print(5)", "5\n"},
	// Small writes: each was a system call of the kernel's and several of
	// the agent's, tens of microseconds each under gVisor.
	{"R5", "print flood", "for i in range(200000):\n    print('%07d' % i)", 30,
		func(rt, st, out, _ string) bool {
			return st == "Succeeded" && len(out) <= 1<<20+4096 && strings.Contains(out, "truncated")
		}, "print(5)", "5\n"},
	{"R5", "hostile bytes", "import sys\nsys.stdout.buffer.write(b'\\xff\\xfe\\x00\\x1b[2J\\x1b]0;title\\x07\\r\\nlevel=error msg=battery-fake-log-line\\n')", 30,
		func(rt, st, out, _ string) bool {
			return st == "Succeeded" && strings.Contains(out, "battery-fake-log-line")
		},
		"", ""},
	{"R6", "descriptor exhaustion", "fs = []\ntry:\n    while True:\n        fs.append(open('/dev/null'))\nexcept OSError as e:\n    print(len(fs), e.errno)", 60,
		func(rt, st, out, _ string) bool {
			var n, e int
			fmt.Sscanf(out, "%d %d", &n, &e)
			return st == "Succeeded" && e == 24 && n <= 1024
		},
		"del fs\nprint(6)", "6\n"},
	{"R7", "sleep past the timeout", "import time\ntime.sleep(1e9)", 2,
		func(rt, st, _, er string) bool { return st == "Failed" && strings.Contains(er, "timeout") },
		"print(7)", "7\n"},
	{"R7", "input()", "input()", 10,
		func(rt, st, _, er string) bool {
			return st == "Failed" && (strings.Contains(er, "EOFError") || strings.Contains(er, "StdinNotImplementedError"))
		},
		"print(8)", "8\n"},
	// Background processes outlive their execution (a server started by
	// one cell is used by the next) and end with the session (X5: no residue after delete).
	{"R8", "a detached daemon", `import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        while True:
            with open('/tmp/heartbeat', 'a') as f:
                f.write('.')
            time.sleep(0.1)
    os._exit(0)
time.sleep(0.5)`, 30,
		func(rt, st, _, _ string) bool { return st == "Succeeded" },
		"import os, time\na = os.path.getsize('/tmp/heartbeat')\ntime.sleep(1)\nprint(a < os.path.getsize('/tmp/heartbeat'))", "True\n"},
	{"R9", "zombies", `import os
n = 0
try:
    for _ in range(2000):
        if os.fork() == 0:
            os._exit(0)
        n += 1
    print('zombies', n)
except OSError as e:
    print('zombies', n, e.errno)`, 60,
		func(rt, st, out, _ string) bool { return st == "Succeeded" && strings.HasPrefix(out, "zombies") },
		"print(9)", "9\n"},
}

// TestResourceAbuse (R1-R10): each abuse in its own session, through the
// public API, while a neighbour session measures its own latency.
func TestResourceAbuse(t *testing.T) {
	eachRuntime(t, func(t *testing.T, l *lab) {
		a := l.alice
		a.run("neighbour", "x = 1", 30)
		var mu sync.Mutex
		var lat []time.Duration
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				case <-time.After(250 * time.Millisecond):
				}
				t0 := time.Now()
				r, er := a.exec("neighbour", "x += 1", 30)
				d := time.Since(t0)
				if r.status != 200 || er.Status != "Succeeded" {
					t.Errorf("the neighbour's execution failed: %d %.300s", r.status, r.body)
				}
				mu.Lock()
				lat = append(lat, d)
				mu.Unlock()
			}
		}()
		results := map[string]verdict{}
		for i, ab := range abuses {
			id := fmt.Sprintf("abuse-%d", i)
			t0 := time.Now()
			r, er := a.exec(id, ab.code, ab.timeout)
			d := time.Since(t0)
			ok := r.status == 200 && ab.ok(l.rt.Name, er.Status, er.Result.Stdout, er.Result.Stderr) && d < time.Duration(ab.timeout+30)*time.Second
			got := fmt.Sprintf("%s: %s after %v: %.120q", ab.name, er.Status, d.Round(time.Millisecond), er.Result.Stdout+er.Result.Stderr)
			if ok && ab.after != "" {
				r2, er2 := a.exec(id, ab.after, 30)
				if r2.status != 200 || er2.Status != "Succeeded" || ab.afterOut != "" && er2.Result.Stdout != ab.afterOut {
					ok = false
					got += fmt.Sprintf("; the session afterwards: %d %.200s", r2.status, r2.body)
				} else {
					got += "; the session works afterwards"
				}
			}
			if !ok {
				t.Errorf("%s %s UNSAFE: %s (%d %.300s)", l.rt.Name, ab.id, got, r.status, r.body)
			} else {
				t.Logf("%s %s: %s", l.rt.Name, ab.id, got)
			}
			v, seen := results[ab.id]
			if !seen {
				v.OK = true
			}
			v.OK = v.OK && ok
			v.Got += got + " | "
			results[ab.id] = v
			a.do("DELETE", "/session?api-version=2025-02-02-preview&identifier="+id, nil, "")
		}
		// R4 is F5 (every writable directory filled to its quota).
		// R10: hoarding. Sessions up to capacity, then 429 with
		// Retry-After; oversized code and uploads refused before a sandbox.
		var hoard []string
		var refused *http.Response
		for i := 0; i < 20 && refused == nil; i++ {
			id := fmt.Sprintf("hoard-%d", i)
			req, _ := http.NewRequest("POST", a.base+"/executions?"+v3+"&identifier="+id, strings.NewReader(`{"code":"1"}`))
			req.Header.Set("Authorization", "Bearer "+a.token)
			req.Header.Set("Content-Type", "application/json")
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode == http.StatusTooManyRequests {
				refused = res
			} else {
				hoard = append(hoard, id)
			}
		}
		big := a.do("POST", "/executions?"+v3+"&identifier=neighbour", strings.NewReader(`{"code":"`+strings.Repeat("x", 2<<20)+`"}`), "application/json")
		up := a.upload("neighbour", "big.bin", bytes.Repeat([]byte{1}, 200<<20))
		r10 := refused != nil && refused.Header.Get("Retry-After") != "" && big.status == 413 && up.status == 413
		results["R10"] = verdict{OK: r10, Got: fmt.Sprintf("%d sessions then 429 (Retry-After %q); 2 MiB of code: %d; 200 MB upload: %d",
			len(hoard), func() string {
				if refused == nil {
					return ""
				}
				return refused.Header.Get("Retry-After")
			}(), big.status, up.status)}
		if !r10 {
			t.Errorf("R10 UNSAFE: %s", results["R10"].Got)
		}
		for _, id := range hoard {
			a.do("DELETE", "/session?api-version=2025-02-02-preview&identifier="+id, nil, "")
		}
		close(stop)
		wg.Wait()
		mu.Lock()
		slices.Sort(lat)
		p99, worst := lat[len(lat)*99/100], lat[len(lat)-1]
		mu.Unlock()
		t.Logf("neighbour: %d executions during the abuse, p50 %v, p99 %v, max %v", len(lat), lat[len(lat)/2], p99, worst)
		if worst > 10*time.Second {
			t.Errorf("the neighbour waited %v for one execution during the abuse", worst)
		}
		for id, v := range results {
			v.Note = fmt.Sprintf("neighbour p99 %v", p99.Round(time.Millisecond))
			record(l.rt.Name, id, v)
		}
		if strings.Contains(l.serverLog.String(), "battery-fake-log-line") {
			t.Error("R5 UNSAFE: sandbox output reached the server log")
		}
	})
}
