package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mcpclient "github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/sandpool/sandpool/api/client"
	"github.com/sandpool/sandpool/internal/podmantest"
	"github.com/sandpool/sandpool/pool"
)

// TestSoak runs `sandpool serve` in this process and many concurrent
// clients over REST, WebSocket (the Go client) and MCP against it for
// SANDPOOL_SOAK (a duration, e.g. 3m; `make soak`), loopback only. It
// wants no unexpected error, no container or goroutine left, and the
// server's memory flat. It is skipped without SANDPOOL_SOAK.
func TestSoak(t *testing.T) {
	d, err := time.ParseDuration(os.Getenv("SANDPOOL_SOAK"))
	if err != nil {
		t.Skip("set SANDPOOL_SOAK to a duration (make soak) to run the soak test")
	}
	const (
		restClients, wsClients, mcpClients = 4, 2, 2
		key                                = "soak-key-0123456789ab"
	)
	serverID := podmantest.ServerID("soak")
	addr := startServeWith(t, serverID, key, "  limits: {requestsPerSecond: 10000, burst: 10000}\n",
		"    scaleConfiguration: {maxConcurrentSessions: 12, readySessionInstances: 2}\n")
	base := "http://" + addr
	before := runtime.NumGoroutine()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()

	var ops, failures atomic.Int64
	var mu sync.Mutex
	var firstErrs []string
	fail := func(kind string, err error) {
		failures.Add(1)
		mu.Lock()
		if len(firstErrs) < 10 {
			firstErrs = append(firstErrs, kind+": "+err.Error())
		}
		mu.Unlock()
	}
	var wg sync.WaitGroup
	for i := 0; i < restClients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("soak-rest-%d", i)
			hc := &http.Client{Timeout: time.Minute}
			for n := 1; ctx.Err() == nil; n++ {
				body := `{"code": "n = globals().get('n', 0) + 1\nn"}`
				req, _ := http.NewRequest("POST", base+"/pools/chat/executions?api-version=2025-10-02-preview&identifier="+id, strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+key)
				req.Header.Set("Content-Type", "application/json")
				res, err := hc.Do(req)
				if err != nil {
					fail("rest", err)
					continue
				}
				b, _ := io.ReadAll(res.Body)
				res.Body.Close()
				var v struct {
					Result struct{ ExecutionResult any }
				}
				if res.StatusCode != 200 || json.Unmarshal(b, &v) != nil || fmt.Sprint(v.Result.ExecutionResult) != fmt.Sprint(n) {
					fail("rest", fmt.Errorf("%d %.200s (want n = %d)", res.StatusCode, b, n))
					return
				}
				ops.Add(1)
			}
		}()
	}
	for i := 0; i < wsClients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := client.New(base, "chat", key)
			if err != nil {
				fail("ws", err)
				return
			}
			id, _ := pool.ParseIdentifier(fmt.Sprintf("soak-ws-%d", i))
			k := pool.Key("", id)
			for ctx.Err() == nil {
				var out bytes.Buffer
				res, err := c.Execute(ctx, k, pool.ExecRequest{Code: "for i in range(100): print(i)", Timeout: time.Minute},
					func(e pool.Event) {
						if e.Kind == pool.EventStdout {
							out.Write(e.Text)
						}
					})
				if ctx.Err() != nil {
					return
				}
				if err != nil || res.Status != pool.StatusOK || !strings.HasSuffix(out.String(), "99\n") {
					fail("ws", fmt.Errorf("%v %+v %q", err, res, out.String()))
					return
				}
				ops.Add(1)
			}
		}()
	}
	for i := 0; i < mcpClients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := mcpclient.NewStreamableHttpClient(base+"/mcp", transport.WithHTTPHeaders(map[string]string{"Authorization": "Bearer " + key}))
			if err != nil {
				fail("mcp", err)
				return
			}
			defer c.Close()
			if err := c.Start(ctx); err != nil {
				fail("mcp", err)
				return
			}
			var ir mcp.InitializeRequest
			ir.Params.ClientInfo = mcp.Implementation{Name: "soak", Version: "1"}
			ir.Params.ProtocolVersion = mcp.LATEST_LEGACY_PROTOCOL_VERSION
			if _, err := c.Initialize(ctx, ir); err != nil {
				fail("mcp", err)
				return
			}
			for n := 1; ctx.Err() == nil; n++ {
				var req mcp.CallToolRequest
				req.Params.Name = "execute_python"
				req.Params.Arguments = map[string]any{"code": "m = globals().get('m', 0) + 1\nprint(m)"}
				res, err := c.CallTool(ctx, req)
				if ctx.Err() != nil {
					return
				}
				if err != nil || res.IsError || len(res.Content) == 0 {
					fail("mcp", fmt.Errorf("%v %+v", err, res))
					return
				}
				tc, _ := mcp.AsTextContent(res.Content[0])
				if tc == nil || !strings.Contains(tc.Text, fmt.Sprint(n)) {
					fail("mcp", fmt.Errorf("call %d: %+v", n, res.Content))
					return
				}
				ops.Add(1)
			}
		}()
	}
	// The server's memory, sampled while the clients run.
	var heap []uint64
	tick := time.NewTicker(5 * time.Second)
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-tick.C:
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			heap = append(heap, ms.HeapInuse)
		}
	}
	tick.Stop()
	wg.Wait()
	if path := os.Getenv("SANDPOOL_SOAK_HEAP"); path != "" {
		// A heap profile of the server after the run, for `go tool pprof`.
		runtime.GC()
		if f, err := os.Create(path); err == nil {
			_ = pprof.WriteHeapProfile(f)
			f.Close()
		}
	}
	t.Logf("soak: %v, %d operations (%.0f/s), %d failures; heap in use (MiB) over time: %v",
		d, ops.Load(), float64(ops.Load())/d.Seconds(), failures.Load(), mib(heap))
	if failures.Load() > 0 {
		t.Errorf("%d unexpected errors, first: %v", failures.Load(), firstErrs)
	}
	if len(heap) >= 4 {
		early, late := heap[1], heap[len(heap)-1]
		if late > early*3/2+32<<20 {
			t.Errorf("the server's heap grew from %d MiB to %d MiB", early>>20, late>>20)
		}
	}
	// Sessions end; only the warm sandboxes may remain, and the
	// goroutines of the clients and their connections are gone.
	for _, id := range []string{"soak-rest-0", "soak-rest-1", "soak-rest-2", "soak-rest-3", "soak-ws-0", "soak-ws-1"} {
		req, _ := http.NewRequest("DELETE", base+"/pools/chat/session?api-version=2025-02-02-preview&identifier="+id, nil)
		req.Header.Set("Authorization", "Bearer "+key)
		if res, err := http.DefaultClient.Do(req); err == nil {
			res.Body.Close()
		}
	}
	http.DefaultClient.CloseIdleConnections()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(500 * time.Millisecond) {
		n := count(t, serverID)
		if n <= 2+mcpClients {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("%d sandboxes left after the soak's sessions were deleted", n)
			break
		}
	}
	// What the clients and their connections used is gone.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		n := runtime.NumGoroutine()
		if n <= before+10 {
			t.Logf("goroutines: %d before the clients, %d after", before, n)
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("goroutines: %d before the clients, %d after", before, n)
			break
		}
	}
}

func mib(v []uint64) []uint64 {
	out := make([]uint64, len(v))
	for i, x := range v {
		out[i] = x >> 20
	}
	return out
}
