package podman_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containers/podman/v5/pkg/api/handlers"
	"github.com/containers/podman/v5/pkg/bindings"
	"github.com/containers/podman/v5/pkg/bindings/containers"

	"github.com/sandpool/sandpool/internal/podmantest"
	"github.com/sandpool/sandpool/sandbox"
)

// Run with `make bench`. Figures are reported as custom metrics: p50 and
// p99 latency in milliseconds, and the per-op mean Go prints.

// BenchmarkExecuteTiny: `x = 1` round trip through Conn.Execute on a
// running sandbox (one long-lived multiplexed stream).
func BenchmarkExecuteTiny(b *testing.B) {
	for _, rt := range podmantest.AllRuntimes() {
		b.Run(rt.Name, func(b *testing.B) {
			e := podmantest.Engine(b, rt)
			sb := podmantest.Create(b, e, podmantest.Spec(rt))
			ctx := context.Background()
			req := sandbox.ExecRequest{Code: "x = 1", Timeout: 10 * time.Second}
			for i := 0; i < 20; i++ { // warm up
				if _, err := sb.Execute(ctx, req, nil); err != nil {
					b.Fatal(err)
				}
			}
			d := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				res, err := sb.Execute(ctx, req, nil)
				d = append(d, time.Since(t0))
				if err != nil || res.Status != sandbox.StatusOK {
					b.Fatal(res, err)
				}
			}
			b.StopTimer()
			podmantest.ReportLatency(b, d)
		})
	}
}

// BenchmarkPodmanExecBaseline: the naive design, one `podman exec` of
// `python3 -c "x = 1"` per request, through the bindings, in the same kind
// of sandbox.
func BenchmarkPodmanExecBaseline(b *testing.B) {
	for _, rt := range podmantest.AllRuntimes() {
		b.Run(rt.Name, func(b *testing.B) {
			e := podmantest.Engine(b, rt)
			sb := podmantest.Create(b, e, podmantest.Spec(rt))
			uid := sb.Labels["sandpool.uid"]
			d := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				// A connection per stream: the bindings' attach mutates its
				// client's transport.
				conn, err := bindings.NewConnection(context.Background(), "unix://"+e.Socket())
				if err != nil {
					b.Fatal(err)
				}
				cfg := new(handlers.ExecCreateConfig)
				cfg.AttachStdout, cfg.AttachStderr = true, true
				cfg.Cmd = []string{"python3", "-c", "x = 1"}
				cfg.User = uid + ":" + uid
				sid, err := containers.ExecCreate(conn, sb.ID, cfg)
				if err != nil {
					b.Fatal(err)
				}
				var out bytes.Buffer
				opts := new(containers.ExecStartAndAttachOptions).WithOutputStream(&out).WithErrorStream(&out).
					WithAttachOutput(true).WithAttachError(true)
				if err := containers.ExecStartAndAttach(conn, sid, opts); err != nil {
					b.Fatal(err, out.String())
				}
				d = append(d, time.Since(t0))
			}
			b.StopTimer()
			podmantest.ReportLatency(b, d)
		})
	}
}

// BenchmarkCreateReady: create to Ready (agent up, gate passed, numpy,
// pandas and matplotlib imported).
func BenchmarkCreateReady(b *testing.B) {
	for _, rt := range podmantest.AllRuntimes() {
		b.Run(rt.Name, func(b *testing.B) {
			e := podmantest.Engine(b, rt)
			d := make([]time.Duration, 0, b.N)
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				sb := podmantest.Create(b, e, podmantest.Spec(rt))
				d = append(d, time.Since(t0))
				b.StopTimer()
				podmantest.Remove(b, e, sb)
				b.StartTimer()
			}
			podmantest.ReportLatency(b, d)
		})
	}
}

// BenchmarkIdleMemory: host memory taken by one idle, warm sandbox, from
// the drop of MemAvailable while n sandboxes are up (podman's own stats
// are wrong under gVisor). Each iteration creates n sandboxes.
func BenchmarkIdleMemory(b *testing.B) {
	const n = 4
	for _, rt := range podmantest.AllRuntimes() {
		b.Run(rt.Name, func(b *testing.B) {
			e := podmantest.Engine(b, rt)
			var sum float64
			for i := 0; i < b.N; i++ {
				time.Sleep(2 * time.Second)
				before := memAvailable(b)
				var sbs []*sandbox.Sandbox
				for j := 0; j < n; j++ {
					sbs = append(sbs, podmantest.Create(b, e, podmantest.Spec(rt)))
				}
				time.Sleep(5 * time.Second) // settle
				after := memAvailable(b)
				sum += float64(before-after) / n / (1 << 20)
				for _, sb := range sbs {
					podmantest.Remove(b, e, sb)
				}
			}
			b.ReportMetric(sum/float64(b.N), "MiB/sandbox")
		})
	}
}

func memAvailable(b *testing.B) int64 {
	raw, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemAvailable:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	b.Fatal(fmt.Errorf("no MemAvailable"))
	return 0
}
