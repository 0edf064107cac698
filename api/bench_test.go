package api_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
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
