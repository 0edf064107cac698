package api_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sandpool/sandpool/api"
	"github.com/sandpool/sandpool/internal/podmantest"
	"github.com/sandpool/sandpool/pool"
	"github.com/sandpool/sandpool/sandbox"
)

// Run with `make bench`.

// benchServer is an env and a server whose rate limits stay out of the way.
func benchServer(b *testing.B, rt podmantest.Runtime, cfg pool.Config) (*env, *client) {
	e := newEnv(b, rt, cfg)
	return e, e.server(api.Options{Limits: api.Limits{RequestsPerSecond: 1e6, Burst: 1e6, ConcurrentRequests: 1024}}, nil)
}

// execOnce posts x = 1 to executions and times it.
func (c *client) execOnce(hc *http.Client, identifier string) (time.Duration, error) {
	req, _ := http.NewRequest("POST", c.base+"/executions?api-version=2025-10-02-preview&identifier="+identifier, strings.NewReader(`{"code":"x = 1"}`))
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	t0 := time.Now()
	res, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	d := time.Since(t0)
	if res.StatusCode != 200 || !strings.Contains(string(body), `"Succeeded"`) {
		return d, fmt.Errorf("%d %s", res.StatusCode, body)
	}
	return d, nil
}

func (c *client) benchExec(b *testing.B, hc *http.Client, identifier string) time.Duration {
	d, err := c.execOnce(hc, identifier)
	if err != nil {
		b.Fatal(err)
	}
	return d
}

// BenchmarkExecuteHTTP: `x = 1` through POST executions on an allocated
// session, beside the same execution through the pool in process (the
// baseline: what HTTP, JSON and auth add).
func BenchmarkExecuteHTTP(b *testing.B) {
	for _, rt := range podmantest.Runtimes() {
		b.Run(rt.Name, func(b *testing.B) {
			e, c := benchServer(b, rt, pool.Config{Scale: pool.ScaleConfig{MaxConcurrentSessions: 2, ReadySessionInstances: ptr(1)}})
			hc := &http.Client{}
			c.benchExec(b, hc, "bench-http")
			p := e.mgr.Pool(e.cfg.Name)
			id, _ := pool.ParseIdentifier("bench-direct")
			k := pool.Key("bench", id)
			direct := make([]time.Duration, 0, b.N)
			viaHTTP := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				viaHTTP = append(viaHTTP, c.benchExec(b, hc, "bench-http"))
				b.StopTimer()
				t0 := time.Now()
				if _, err := p.Execute(context.Background(), k, sandbox.ExecRequest{Code: "x = 1", Timeout: 10 * time.Second}, nil); err != nil {
					b.Fatal(err)
				}
				direct = append(direct, time.Since(t0))
				b.StartTimer()
			}
			b.StopTimer()
			podmantest.ReportLatency(b, viaHTTP)
			podmantest.ReportLatencyAs(b, "direct-", direct)
		})
	}
}

// BenchmarkFirstRequestHTTP: the first request (x = 1) on a new
// identifier with a warm sandbox waiting.
func BenchmarkFirstRequestHTTP(b *testing.B) {
	for _, rt := range podmantest.Runtimes() {
		b.Run(rt.Name, func(b *testing.B) {
			const ready = 4
			e, c := benchServer(b, rt, pool.Config{Scale: pool.ScaleConfig{MaxConcurrentSessions: 8, ReadySessionInstances: ptr(ready)}})
			p := e.mgr.Pool(e.cfg.Name)
			hc := &http.Client{}
			d := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				for p.Status().Ready < ready {
					time.Sleep(10 * time.Millisecond)
				}
				id := fmt.Sprintf("first-%06d", i)
				b.StartTimer()
				d = append(d, c.benchExec(b, hc, id))
				b.StopTimer()
				c.do("DELETE", "/session?identifier="+id, nil, "")
				b.StartTimer()
			}
			b.StopTimer()
			podmantest.ReportLatency(b, d)
		})
	}
}

// BenchmarkConcurrentHTTP: 32 clients, each on its own session, running
// x = 1 as fast as they can; reports executions per second.
func BenchmarkConcurrentHTTP(b *testing.B) {
	const clients = 32
	for _, rt := range podmantest.Runtimes() {
		b.Run(rt.Name, func(b *testing.B) {
			_, c := benchServer(b, rt, pool.Config{Scale: pool.ScaleConfig{MaxConcurrentSessions: clients, ReadySessionInstances: ptr(0), CreationConcurrency: 8}})
			hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
			run := func(n int) error {
				var wg sync.WaitGroup
				errs := make([]error, clients)
				for i := range clients {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for range n {
							if _, err := c.execOnce(hc, fmt.Sprintf("conc-%03d", i)); err != nil {
								errs[i] = err
								return
							}
						}
					}()
				}
				wg.Wait()
				return errors.Join(errs...)
			}
			if err := run(1); err != nil { // allocate the sessions
				b.Fatal(err)
			}
			per := max(1, b.N/clients)
			b.ResetTimer()
			t0 := time.Now()
			if err := run(per); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			b.ReportMetric(float64(per*clients)/time.Since(t0).Seconds(), "exec/s")
		})
	}
}

// printStamps prints the wall clock n times, 10 ms apart, each flushed:
// the receiving side subtracts it from its own clock (the sandbox's clock
// is the host's).
const printStamps = "import time\nfor _ in range(%d):\n    print(time.time_ns(), flush=True)\n    time.sleep(0.01)"

// stampLatency turns stdout chunks of printStamps into latencies.
func stampLatency(text string, at time.Time, d *[]time.Duration) {
	for _, line := range strings.Fields(text) {
		var ns int64
		if _, err := fmt.Sscan(line, &ns); err == nil {
			*d = append(*d, at.Sub(time.Unix(0, ns)))
		}
	}
}

// BenchmarkWSFirstChunk: from a print inside the sandbox to its chunk at a
// WebSocket client, beside the same through the pool in process (the
// sink's view; what the WebSocket adds is the difference).
func BenchmarkWSFirstChunk(b *testing.B) {
	for _, rt := range podmantest.Runtimes() {
		b.Run(rt.Name, func(b *testing.B) {
			e, c := benchServer(b, rt, pool.Config{Scale: pool.ScaleConfig{MaxConcurrentSessions: 2, ReadySessionInstances: ptr(1)}})
			w, _ := c.dialWS(b, "bench-ws", false)
			w.exec("warm-0001", "1")
			p := e.mgr.Pool(e.cfg.Name)
			id, _ := pool.ParseIdentifier("bench-direct")
			k := pool.Key("bench", id)
			var viaWS, direct []time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				code := fmt.Sprintf(printStamps, 20)
				for _, m := range w.exec(fmt.Sprintf("stamp-%06d", i), code) {
					if m.Type == "stdout" {
						stampLatency(m.Text, m.at, &viaWS)
					}
				}
				b.StopTimer()
				if _, err := p.Execute(context.Background(), k, sandbox.ExecRequest{Code: code, Timeout: 30 * time.Second}, func(ev sandbox.Event) {
					if ev.Kind == sandbox.EventStdout {
						stampLatency(string(ev.Text), time.Now(), &direct)
					}
				}); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.StopTimer()
			podmantest.ReportLatency(b, viaWS)
			podmantest.ReportLatencyAs(b, "direct-", direct)
		})
	}
}

// BenchmarkWSThroughput: 50 MB of output streamed to a WebSocket client;
// reports MB/s and how much the server's live heap grew at most while it
// streamed, beside the same output through the pool in process.
func BenchmarkWSThroughput(b *testing.B) {
	const mb = 50
	code := fmt.Sprintf("import sys\nline = 'x' * 1023 + '\\n'\nfor _ in range(%d * 1024): sys.stdout.write(line)", mb)
	for _, rt := range podmantest.Runtimes() {
		b.Run(rt.Name, func(b *testing.B) {
			e, c := benchServer(b, rt, pool.Config{Scale: pool.ScaleConfig{MaxConcurrentSessions: 2, ReadySessionInstances: ptr(1)},
				Execution: pool.ExecutionConfig{MaxOutput: 64 << 20}})
			w, _ := c.dialWS(b, "bench-flood", false)
			p := e.mgr.Pool(e.cfg.Name)
			id, _ := pool.ParseIdentifier("bench-direct")
			k := pool.Key("bench", id)
			var wsTime, directTime time.Duration
			var grew int64
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				stop := watchLiveHeap()
				t0 := time.Now()
				n := w.drain(fmt.Sprintf("flood-%06d", i), code)
				wsTime += time.Since(t0)
				grew = max(grew, stop())
				if n != mb<<20 {
					b.Fatalf("received %d bytes", n)
				}
				b.StopTimer()
				t0 = time.Now()
				if _, err := p.Execute(context.Background(), k, sandbox.ExecRequest{Code: code, Timeout: 2 * time.Minute, MaxOutput: 64 << 20}, func(sandbox.Event) {}); err != nil {
					b.Fatal(err)
				}
				directTime += time.Since(t0)
				b.StartTimer()
			}
			b.StopTimer()
			b.ReportMetric(float64(mb*b.N)/wsTime.Seconds(), "MB/s")
			b.ReportMetric(float64(mb*b.N)/directTime.Seconds(), "direct-MB/s")
			b.ReportMetric(float64(grew)/(1<<20), "live-heap-growth-MiB")
		})
	}
}

// hostApp runs the example application as a plain host process on a free
// loopback port (the floor of BenchmarkCustomGET) and returns its URL.
func hostApp(b *testing.B) string {
	bin := filepath.Join(b.TempDir(), "app")
	build := exec.Command("go", "build", "-o", bin, "github.com/sandpool/sandpool/examples/custom-container")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("building the example: %v\n%s", err, out)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command(bin)
	cmd.Env = []string{fmt.Sprintf("PORT=%d", port)}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	u := fmt.Sprintf("http://127.0.0.1:%d", port)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if res, err := http.Get(u + "/healthz"); err == nil {
			res.Body.Close()
			return u
		}
		if time.Now().After(deadline) {
			b.Fatal("the host app did not start")
		}
	}
}

// getOnce times one GET and checks it answered 200.
func getOnce(b *testing.B, hc *http.Client, u, token string) time.Duration {
	req, _ := http.NewRequest("GET", u, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	t0 := time.Now()
	res, err := hc.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	d := time.Since(t0)
	if res.StatusCode != 200 {
		b.Fatalf("GET %s: %d", u, res.StatusCode)
	}
	return d
}

// BenchmarkCustomGET: a small GET (/count) forwarded to an allocated
// custom-container session, beside the same GET to the same application
// binary run on host loopback outside any container (the floor).
func BenchmarkCustomGET(b *testing.B) {
	floor := hostApp(b) + "/count"
	for _, rt := range podmantest.Runtimes() {
		b.Run(rt.Name, func(b *testing.B) {
			_, c := benchServer(b, rt, appConfig(b, pool.Timed))
			hc := &http.Client{}
			routed := c.base + "/count?identifier=bench-get"
			getOnce(b, hc, routed, c.token)
			viaSandpool := make([]time.Duration, 0, b.N)
			direct := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				viaSandpool = append(viaSandpool, getOnce(b, hc, routed, c.token))
				b.StopTimer()
				direct = append(direct, getOnce(b, hc, floor, ""))
				b.StartTimer()
			}
			b.StopTimer()
			podmantest.ReportLatency(b, viaSandpool)
			podmantest.ReportLatencyAs(b, "loopback-", direct)
		})
	}
}
