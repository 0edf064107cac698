package pool_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sandpool/sandpool/internal/podmantest"
	"github.com/sandpool/sandpool/pool"
	"github.com/sandpool/sandpool/sandbox"
)

// Run with `make bench`.

// BenchmarkFirstExecution: the first execution (`x = 1`) on a new
// identifier, with a warm sandbox waiting (warm) and with none, so the
// sandbox is created, started and warmed on the request (cold).
func BenchmarkFirstExecution(b *testing.B) {
	for _, rt := range podmantest.Runtimes() {
		for _, mode := range []string{"warm", "cold"} {
			b.Run(rt.Name+"/"+mode, func(b *testing.B) {
				ready := 0
				if mode == "warm" {
					ready = 4
				}
				h := newBenchHarness(b, rt, pool.Config{Scale: pool.ScaleConfig{MaxConcurrentSessions: 8, ReadySessionInstances: ptr(ready), CreationConcurrency: 4}})
				p := h.start().Pool(h.cfg.Name)
				d := make([]time.Duration, 0, b.N)
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					for ready > 0 && p.Status().Ready < ready {
						time.Sleep(10 * time.Millisecond)
					}
					id, _ := pool.ParseIdentifier(fmt.Sprintf("bench-%06d", i))
					k := pool.Key("bench", id)
					b.StartTimer()
					t0 := time.Now()
					res, err := p.Execute(context.Background(), k, sandbox.ExecRequest{Code: "x = 1", Timeout: 10 * time.Second}, nil)
					d = append(d, time.Since(t0))
					if err != nil || res.Status != sandbox.StatusOK {
						b.Fatal(res, err)
					}
					b.StopTimer()
					if err := p.Delete(context.Background(), k); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
				}
				b.StopTimer()
				podmantest.ReportLatency(b, d)
			})
		}
	}
}

// BenchmarkBurst: 50 new identifiers at once on a pool with 10 ready and
// a cap of 40. Exactly 40 must get a session and 10 the capacity error;
// then the pool must refill to 10 ready. Reports the burst's duration, the
// time to refill, and the sustained creation rate.
func BenchmarkBurst(b *testing.B) {
	for _, rt := range podmantest.Runtimes() {
		b.Run(rt.Name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				h := newBenchHarness(b, rt, pool.Config{Scale: pool.ScaleConfig{MaxConcurrentSessions: 40, ReadySessionInstances: ptr(10), CreationConcurrency: 4}})
				p := h.start().Pool(h.cfg.Name)
				for p.Status().Ready < 10 {
					time.Sleep(20 * time.Millisecond)
				}
				var ok, full atomic.Int32
				var wg sync.WaitGroup
				t0 := time.Now()
				for j := range 50 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						id, _ := pool.ParseIdentifier(fmt.Sprintf("burst-%03d", j))
						res, err := p.Execute(context.Background(), pool.Key("bench", id), sandbox.ExecRequest{Code: "x = 1", Timeout: 30 * time.Second}, nil)
						switch {
						case err == nil && res.Status == sandbox.StatusOK:
							ok.Add(1)
						case errors.Is(err, pool.ErrCapacity):
							full.Add(1)
						default:
							b.Errorf("burst request: %v %v", res, err)
						}
					}()
				}
				wg.Wait()
				burst := time.Since(t0)
				t1 := time.Now()
				for p.Status().Ready < 10 {
					time.Sleep(20 * time.Millisecond)
				}
				refill := time.Since(t1)
				if ok.Load() != 40 || full.Load() != 10 {
					b.Fatalf("%d succeeded and %d got the capacity error; want 40 and 10", ok.Load(), full.Load())
				}
				if n := h.count(); n != 50 {
					b.Fatalf("%d sandboxes, want 50 (40 allocated, 10 ready)", n)
				}
				b.ReportMetric(burst.Seconds(), "burst-s")
				b.ReportMetric(refill.Seconds(), "refill-s")
				// 30 cold creations in the burst plus 10 in the refill.
				b.ReportMetric(40/(burst+refill).Seconds(), "creations/s")
			}
		})
	}
}
