package mcp_test

import (
	"context"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/sandpool/sandpool/api"
	"github.com/sandpool/sandpool/internal/podmantest"
	"github.com/sandpool/sandpool/pool"
)

// Run with `make bench`.

var benchLimits = api.Limits{RequestsPerSecond: 1e6, Burst: 1e6, ConcurrentRequests: 1024}

func timedCall(b *testing.B, c *client.Client) time.Duration {
	var req mcp.CallToolRequest
	req.Params.Name, req.Params.Arguments = "execute_python", map[string]any{"code": "x = 1"}
	t0 := time.Now()
	res, err := c.CallTool(context.Background(), req)
	d := time.Since(t0)
	if err != nil || res.IsError {
		b.Fatalf("%v %+v", err, res)
	}
	return d
}

// BenchmarkMCPExecute: tools/call execute_python with x = 1 over Streamable
// HTTP on a warm session, beside the same execution through the pool in
// process (what MCP, HTTP, JSON and auth add).
func BenchmarkMCPExecute(b *testing.B) {
	for _, rt := range podmantest.Runtimes() {
		b.Run(rt.Name, func(b *testing.B) {
			e := newEnvWith(b, rt, benchLimits)
			c, _ := e.connect(aliceKey, nil)
			timedCall(b, c)
			id, _ := pool.ParseIdentifier("bench-direct")
			k := pool.Key("bench", id)
			viaMCP := make([]time.Duration, 0, b.N)
			direct := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				viaMCP = append(viaMCP, timedCall(b, c))
				b.StopTimer()
				t0 := time.Now()
				if _, err := e.pool.Execute(context.Background(), k, pool.ExecRequest{Code: "x = 1", Timeout: 10 * time.Second}, nil); err != nil {
					b.Fatal(err)
				}
				direct = append(direct, time.Since(t0))
				b.StartTimer()
			}
			b.StopTimer()
			podmantest.ReportLatency(b, viaMCP)
			podmantest.ReportLatencyAs(b, "direct-", direct)
		})
	}
}

// BenchmarkMCPFirstCall: the first tools/call (x = 1) of a new MCP session
// (initialized, not timed) with warm sandboxes waiting.
func BenchmarkMCPFirstCall(b *testing.B) {
	for _, rt := range podmantest.Runtimes() {
		b.Run(rt.Name, func(b *testing.B) {
			e := newEnvWith(b, rt, benchLimits)
			d := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				for st := e.pool.Status(); st.Ready < st.ReadySessionInstances || st.Allocated > 0; st = e.pool.Status() {
					time.Sleep(10 * time.Millisecond)
				}
				c, _ := e.connect(aliceKey, nil)
				b.StartTimer()
				d = append(d, timedCall(b, c))
				b.StopTimer()
				c.Close()
				b.StartTimer()
			}
			b.StopTimer()
			podmantest.ReportLatency(b, d)
		})
	}
}
