package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/sandpool/sandpool/api/wire"
	"github.com/sandpool/sandpool/pool"
	"github.com/sandpool/sandpool/sandbox"
)

// repeat runs fn n times and collects its durations.
func repeat(ctx context.Context, n int, fn func(i int) (time.Duration, error)) ([]time.Duration, error) {
	d := make([]time.Duration, 0, n)
	for i := range n {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		v, err := fn(i)
		if err != nil {
			return nil, err
		}
		d = append(d, v)
	}
	return d, nil
}

// sandpoolFigures measures every figure of rt through sandpool, with the
// baselines that are sandpool too (no warm sandbox, in process).
func (b *bench) sandpoolFigures(ctx context.Context, rt string) error {
	b.say("%s: starting pools (warm: 1 ready; cold: none ready)", rt)
	s, err := b.startServer(ctx, rt, b.poolConfig(rt, "warm", 8, 1), b.poolConfig(rt, "cold", 2, 0))
	if err != nil {
		return err
	}
	defer s.close(ctx)
	for _, step := range []func(context.Context, *benchServer) error{b.figExecute, b.figWS, b.figMCP, b.figFirst} {
		if err := step(ctx, s); err != nil {
			return err
		}
	}
	s.close(ctx)
	if err := b.figBurst(ctx, rt); err != nil {
		return err
	}
	if err := b.figIdle(ctx, rt); err != nil {
		return err
	}
	return b.figCheckpoint(ctx, rt)
}

func (b *bench) figExecute(ctx context.Context, s *benchServer) error {
	p := s.pool("warm")
	b.say("%s: execute over HTTP: %d samples", s.rt, b.o.samples)
	if _, err := s.execute(ctx, p, "bench-http", benchCode); err != nil { // allocates
		return err
	}
	if err := waitQuiet(ctx, p, 1); err != nil {
		return err
	}
	if _, err := repeat(ctx, 10, func(int) (time.Duration, error) { return s.execute(ctx, p, "bench-http", benchCode) }); err != nil {
		return err
	}
	d, err := repeat(ctx, b.o.samples, func(int) (time.Duration, error) { return s.execute(ctx, p, "bench-http", benchCode) })
	if err != nil {
		return err
	}
	b.fig(s.rt, "execute").Sandpool = latencyValue(d)
	return nil
}

func (b *bench) figWS(ctx context.Context, s *benchServer) error {
	p := s.pool("warm")
	b.say("%s: WebSocket first chunk: %d samples", s.rt, b.o.samples)
	u := "ws" + strings.TrimPrefix(s.base, "http") + "/pools/" + p.Name() + "/ws?identifier=bench-ws"
	dialer := websocket.Dialer{HandshakeTimeout: 10 * time.Second, Subprotocols: []string{wire.WSSubprotocol}}
	conn, res, err := dialer.DialContext(ctx, u, http.Header{"Authorization": {"Bearer " + b.key}})
	if err != nil {
		if res != nil {
			return fmt.Errorf("WebSocket upgrade: %s", res.Status)
		}
		return err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	// run sends code and returns the time to its first stdout chunk,
	// reading until the execution is done. (ids: 8 to 64 letters, digits
	// or '-'.)
	run := func(id, code string) (time.Duration, error) {
		t0 := time.Now()
		if err := conn.WriteJSON(wire.WSRequest{Type: "execute", ID: id, Code: code}); err != nil {
			return 0, err
		}
		var first time.Duration
		for {
			_ = conn.SetReadDeadline(time.Now().Add(time.Minute))
			var m wire.WSMessage
			if err := conn.ReadJSON(&m); err != nil {
				return 0, err
			}
			if m.ID != id && (m.ID != "" || m.Type != "failure") {
				continue
			}
			switch m.Type {
			case "stdout":
				if first == 0 {
					first = time.Since(t0)
				}
			case "failure":
				return 0, fmt.Errorf("WebSocket execution: %s: %s", m.Code, m.Message)
			case "done":
				if m.Status != string(sandbox.StatusOK) || first == 0 {
					return 0, fmt.Errorf("WebSocket execution: status %s, stdout seen: %v", m.Status, first != 0)
				}
				return first, nil
			}
		}
	}
	if _, err := run("ws-warmup", benchStreamCode); err != nil { // allocates
		return err
	}
	if err := waitQuiet(ctx, p, 1); err != nil {
		return err
	}
	d, err := repeat(ctx, b.o.samples, func(i int) (time.Duration, error) { return run(fmt.Sprintf("ws-%06d", i), benchStreamCode) })
	if err != nil {
		return err
	}
	b.fig(s.rt, "ws_first_chunk").Sandpool = latencyValue(d)
	_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	return nil
}

func (b *bench) figMCP(ctx context.Context, s *benchServer) error {
	p := s.pool("warm")
	b.say("%s: MCP execute_python: %d samples, beside the pool in process", s.rt, b.o.samples)
	c, err := client.NewStreamableHttpClient(s.base+"/mcp", transport.WithHTTPHeaders(map[string]string{"Authorization": "Bearer " + b.key}))
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Start(ctx); err != nil {
		return fmt.Errorf("MCP: %w", err)
	}
	var ir mcp.InitializeRequest
	ir.Params.ClientInfo = mcp.Implementation{Name: "sandpool-bench", Version: version}
	ir.Params.ProtocolVersion = mcp.LATEST_LEGACY_PROTOCOL_VERSION
	if _, err := c.Initialize(ctx, ir); err != nil {
		return fmt.Errorf("MCP initialize: %w", err)
	}
	call := func(int) (time.Duration, error) {
		var req mcp.CallToolRequest
		req.Params.Name, req.Params.Arguments = "execute_python", map[string]any{"code": benchCode}
		t0 := time.Now()
		res, err := c.CallTool(ctx, req)
		d := time.Since(t0)
		if err != nil {
			return 0, fmt.Errorf("MCP tools/call: %w", err)
		}
		if res.IsError {
			var text []string
			for _, ct := range res.Content {
				if tc, ok := mcp.AsTextContent(ct); ok {
					text = append(text, tc.Text)
				}
			}
			return 0, fmt.Errorf("MCP tools/call: %.300s", strings.Join(text, " "))
		}
		return d, nil
	}
	id, err := pool.ParseIdentifier("bench-direct")
	if err != nil {
		return err
	}
	k := pool.Key("bench", id)
	direct := func(int) (time.Duration, error) {
		t0 := time.Now()
		res, err := p.Execute(ctx, k, sandbox.ExecRequest{Code: benchCode, Timeout: 30 * time.Second}, nil)
		d := time.Since(t0)
		if err != nil {
			return 0, err
		}
		if res.Status != sandbox.StatusOK {
			return 0, fmt.Errorf("in-process execution: %s", res.Status)
		}
		return d, nil
	}
	for _, warm := range []func(int) (time.Duration, error){call, direct} { // both allocate
		if _, err := warm(0); err != nil {
			return err
		}
	}
	if err := waitQuiet(ctx, p, 1); err != nil {
		return err
	}
	var viaMCP, inProcess []time.Duration
	for i := range b.o.samples {
		for _, m := range []struct {
			fn func(int) (time.Duration, error)
			d  *[]time.Duration
		}{{call, &viaMCP}, {direct, &inProcess}} {
			if err := ctx.Err(); err != nil {
				return err
			}
			v, err := m.fn(i)
			if err != nil {
				return err
			}
			*m.d = append(*m.d, v)
		}
	}
	b.fig(s.rt, "mcp_execute").Sandpool = latencyValue(viaMCP)
	b.baseline(s.rt, "mcp_execute", "pool.Execute in process (no HTTP, no MCP)", latencyValue(inProcess))
	return nil
}

func (b *bench) figFirst(ctx context.Context, s *benchServer) error {
	warm, cold := s.pool("warm"), s.pool("cold")
	colds := min(maxColdSamples, max(1, b.o.firstSamples/4))
	b.say("%s: first executions: %d with a warm sandbox waiting, %d without", s.rt, b.o.firstSamples, colds)
	first := func(p *pool.Pool, ready int, prefix string) func(int) (time.Duration, error) {
		return func(i int) (time.Duration, error) {
			if err := waitQuiet(ctx, p, ready); err != nil {
				return 0, err
			}
			id := fmt.Sprintf("%s-%06d", prefix, i)
			d, err := s.execute(ctx, p, id, benchCode)
			if err != nil {
				return 0, err
			}
			return d, s.deleteSession(ctx, p, id)
		}
	}
	d, err := repeat(ctx, b.o.firstSamples, first(warm, 1, "first"))
	if err != nil {
		return err
	}
	b.fig(s.rt, "first_execution").Sandpool = latencyValue(d)
	d, err = repeat(ctx, colds, first(cold, 0, "cold"))
	if err != nil {
		return err
	}
	b.baseline(s.rt, "first_execution", "sandpool, no warm sandbox (created on request)", latencyValue(d))
	return nil
}

func (b *bench) figBurst(ctx context.Context, rt string) error {
	n := b.o.burst
	b.say("%s: burst of %d new identifiers (filling the pool to %d ready first)", rt, n, n)
	s, err := b.startServer(ctx, rt, b.poolConfig(rt, "burst", 2*n, n))
	if err != nil {
		return err
	}
	defer s.close(ctx)
	p := s.pool("burst")
	if err := waitQuiet(ctx, p, n); err != nil {
		return err
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	t0 := time.Now()
	for j := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[j] = s.execute(ctx, p, fmt.Sprintf("burst-%04d", j), benchCode)
		}()
	}
	wg.Wait()
	answered := time.Since(t0)
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for st := p.Status(); st.Ready < n; st = p.Status() {
		if st.CreationFailures >= 3 {
			return fmt.Errorf("refilling the burst pool: %s", st.LastError)
		}
		if time.Since(t0) > benchPoolTimeout {
			return fmt.Errorf("the burst pool did not refill within %s", benchPoolTimeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	refilled := time.Since(t0)
	b.fig(rt, "burst_answered").Sandpool = singleValue("s", n, answered.Seconds())
	b.fig(rt, "burst_refilled").Sandpool = singleValue("s", n, refilled.Seconds())
	return nil
}

func (b *bench) figIdle(ctx context.Context, rt string) error {
	k := b.o.idle
	b.say("%s: memory of %d idle warm sandboxes", rt, k)
	s, err := b.startServer(ctx, rt, b.poolConfig(rt, "idle", k, k))
	if err != nil {
		return err
	}
	defer s.close(ctx)
	p := s.pool("idle")
	if err := waitQuiet(ctx, p, k); err != nil {
		return err
	}
	list, err := b.engines[rt].List(ctx, map[string]string{pool.LabelServer: b.serverID, pool.LabelPool: p.Name()})
	if err != nil {
		return err
	}
	ids := make([]string, len(list))
	for i, c := range list {
		ids[i] = c.ID
	}
	mib, err := settledMemory(ctx, ids)
	if err != nil {
		return err
	}
	b.fig(rt, "idle_memory").Sandpool = singleValue("MiB/sandbox", len(ids), mib)
	b.fig(rt, "idle_density").Sandpool = singleValue("sandboxes/GiB", len(ids), 1024/mib)
	return nil
}

// settledMemory waits for the containers to settle and returns their mean
// memory in MiB.
func settledMemory(ctx context.Context, ids []string) (float64, error) {
	select {
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(benchSettle):
	}
	mem, err := containerMemory(ids)
	if err != nil {
		return 0, err
	}
	var sum int64
	for _, m := range mem {
		sum += m
	}
	return float64(sum) / float64(len(ids)) / (1 << 20), nil
}

// containerMemory returns, for each container id (full ids), the
// proportional set size (PSS) in bytes of the host processes that are the
// container's: those in its cgroup (under gVisor: the sandbox, the gofer
// and the stub processes of guest address spaces) and its conmon
// monitors. PSS splits a shared page among the processes that map it, so
// the sum is what the container adds to the host, even while other work
// runs (unlike the drop of MemAvailable), and under gVisor (unlike
// podman stats).
func containerMemory(ids []string) (map[string]int64, error) {
	if len(ids) == 0 {
		return nil, errors.New("no containers to measure")
	}
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, p := range procs {
		pid := p.Name()
		if _, err := strconv.Atoi(pid); err != nil {
			continue
		}
		cg, err := os.ReadFile(filepath.Join("/proc", pid, "cgroup"))
		if err != nil {
			continue // exited
		}
		owner := ""
		for _, id := range ids {
			if bytes.Contains(cg, []byte(id)) {
				owner = id
				break
			}
		}
		if owner == "" {
			argv, _ := os.ReadFile(filepath.Join("/proc", pid, "cmdline"))
			args := strings.Split(string(argv), "\x00")
			if filepath.Base(args[0]) != "conmon" {
				continue
			}
			for _, id := range ids {
				if slices.Contains(args, id) {
					owner = id
					break
				}
			}
		}
		if owner == "" {
			continue
		}
		pss, err := readPss(pid)
		if err != nil {
			continue // exited
		}
		out[owner] += pss
	}
	for _, id := range ids {
		if out[id] == 0 {
			return nil, fmt.Errorf("no host process of container %.12s found in /proc (is this podman's host?)", id)
		}
	}
	return out, nil
}

// readPss is the Pss line of /proc/pid/smaps_rollup, in bytes.
func readPss(pid string) (int64, error) {
	f, err := os.Open(filepath.Join("/proc", pid, "smaps_rollup"))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "Pss:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, nil // a kernel thread
}
