package mcp_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/rs/zerolog"

	"github.com/sandpool/sandpool/pool"
	"github.com/sandpool/sandpool/tools"
	mcpsrv "github.com/sandpool/sandpool/tools/mcp"
)

// These tests run the MCP server over HTTP in process, with a scripted
// backend in place of a pool: they test the session handling, not
// sandboxes.

// slowBackend is a tools.Backend whose executions print "tick" and then
// wait for their hold channel (or, when it is nil, for delay), and which
// counts the sessions deleted.
type slowBackend struct {
	delay    time.Duration
	hold     chan struct{}
	started  chan struct{} // receives when an execution starts
	deletes  atomic.Int32
	canceled atomic.Int32
}

func (b *slowBackend) Execute(ctx context.Context, _ pool.SessionKey, req pool.ExecRequest, sink pool.Sink) (*pool.Result, error) {
	sink(pool.Event{Kind: pool.EventStdout, Text: []byte("tick\n")})
	if b.started != nil {
		b.started <- struct{}{}
	}
	wait := b.hold
	if wait == nil {
		c := make(chan struct{})
		time.AfterFunc(b.delay, func() { close(c) })
		wait = c
	}
	select {
	case <-wait:
	case <-ctx.Done():
		b.canceled.Add(1)
		return nil, ctx.Err()
	}
	return &pool.Result{Status: pool.StatusOK, StdoutBytes: 5}, nil
}

func (b *slowBackend) Put(context.Context, pool.SessionKey, string, io.Reader, int64) (pool.FileInfo, error) {
	return pool.FileInfo{}, nil
}

func (b *slowBackend) Get(context.Context, pool.SessionKey, string, io.Writer, int64) (pool.FileInfo, error) {
	return pool.FileInfo{}, nil
}

func (b *slowBackend) List(context.Context, pool.SessionKey, string) ([]pool.FileInfo, bool, error) {
	return nil, false, nil
}
func (b *slowBackend) Remove(context.Context, pool.SessionKey, string) error { return nil }
func (b *slowBackend) Delete(context.Context, pool.SessionKey) error {
	b.deletes.Add(1)
	return nil
}

type principalCtx struct{}

// unitEnv is an MCP server behind a small auth layer: "Bearer alice" is
// principal alice, "Bearer bob" is bob, and a request without a token
// reaches the handler without a principal (as the API server lets a
// token-less DELETE through).
type unitEnv struct {
	url string
	srv *mcpsrv.Server
}

func newUnitEnv(t *testing.T, b tools.Backend, opt mcpsrv.Options) *unitEnv {
	t.Helper()
	opt.Service = tools.NewService(b, tools.Limits{MaxTimeout: time.Minute})
	if opt.Secret == nil {
		opt.Secret = []byte(strings.Repeat("k", 32))
	}
	opt.Principal = func(ctx context.Context) (pool.Principal, bool) {
		p, ok := ctx.Value(principalCtx{}).(pool.Principal)
		return p, ok
	}
	opt.Log = zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	ms, err := mcpsrv.New(opt)
	if err != nil {
		t.Fatal(err)
	}
	h := ms.Handler()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
			r = r.WithContext(context.WithValue(r.Context(), principalCtx{}, pool.Principal(tok)))
		} else if r.Method != http.MethodDelete {
			http.Error(w, "unauthenticated", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		ts.Close()
		ms.Close(context.Background())
	})
	return &unitEnv{url: ts.URL + "/mcp", srv: ms}
}

// request sends one raw MCP request as who ("" for no token) with session
// id sid, and returns the status and body.
func (e *unitEnv) request(t *testing.T, ctx context.Context, method, who, sid, body string) (int, http.Header, string) {
	t.Helper()
	st, h, b, err := e.try(ctx, method, who, sid, body)
	if err != nil {
		t.Fatalf("%s as %q: %v", method, who, err)
	}
	return st, h, b
}

// try is request for goroutines: it returns the error.
func (e *unitEnv) try(ctx context.Context, method, who, sid, body string) (int, http.Header, string, error) {
	req, _ := http.NewRequestWithContext(ctx, method, e.url, strings.NewReader(body))
	if body == "" {
		req.Body = http.NoBody
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("MCP-Protocol-Version", mcp.LATEST_LEGACY_PROTOCOL_VERSION)
	if who != "" {
		req.Header.Set("Authorization", "Bearer "+who)
	}
	if sid != "" {
		req.Header.Set("Mcp-Session-Id", sid)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res.StatusCode, res.Header, string(b), err
}

// open initializes an MCP session as who and returns its id.
func (e *unitEnv) open(t *testing.T, who string) string {
	t.Helper()
	ctx := context.Background()
	st, h, body := e.request(t, ctx, "POST", who, "", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"`+
		mcp.LATEST_LEGACY_PROTOCOL_VERSION+`","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`)
	sid := h.Get("Mcp-Session-Id")
	if st != http.StatusOK || sid == "" {
		t.Fatalf("initialize as %s: %d %s", who, st, body)
	}
	if st, _, body := e.request(t, ctx, "POST", who, sid, `{"jsonrpc":"2.0","method":"notifications/initialized"}`); st != http.StatusAccepted {
		t.Fatalf("initialized as %s: %d %s", who, st, body)
	}
	return sid
}

func callBody(id int, code string) string {
	b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": id, "method": "tools/call",
		"params": map[string]any{"name": "execute_python", "arguments": map[string]any{"code": code}, "_meta": map[string]any{"progressToken": "p"}}})
	return string(b)
}

// callResult is the tools/call result in a response body (JSON or SSE).
func callResult(t *testing.T, body string) (isError bool, text string) {
	t.Helper()
	for _, line := range strings.Split(body, "\n") {
		line = strings.TrimPrefix(line, "data: ")
		var m struct {
			Result *struct {
				IsError bool `json:"isError"`
				Content []struct {
					Text string `json:"text"`
				} `json:"content"`
			} `json:"result"`
		}
		if json.Unmarshal([]byte(line), &m) == nil && m.Result != nil {
			for _, c := range m.Result.Content {
				text += c.Text + "\n"
			}
			return m.Result.IsError, text
		}
	}
	t.Fatalf("no tools/call result in %q", body)
	return false, ""
}

// TestF7MCPLongCallKeepsSession: a tool call longer than the idle timeout
// keeps its MCP session (and sandbox); the session ends once it has been
// idle for the timeout after the call.
func TestF7MCPLongCallKeepsSession(t *testing.T) {
	const idle = 200 * time.Millisecond
	b := &slowBackend{delay: 12 * idle}
	e := newUnitEnv(t, b, mcpsrv.Options{IdleTTL: idle})
	ctx := context.Background()
	sid := e.open(t, "alice")

	st, _, body := e.request(t, ctx, "POST", "alice", sid, callBody(2, "long()"))
	if st != http.StatusOK {
		t.Fatalf("long call: %d %s", st, body)
	}
	if isErr, text := callResult(t, body); isErr {
		t.Fatalf("long call failed: %s", text)
	}
	if n := b.deletes.Load(); n != 0 {
		t.Fatalf("the sandbox was released %d times during a call in flight", n)
	}
	// The session goes on after the call.
	b.delay = 0
	st, _, body = e.request(t, ctx, "POST", "alice", sid, callBody(3, "next()"))
	if isErr, text := callResult(t, body); st != http.StatusOK || isErr {
		t.Fatalf("call after the long call: %d %s", st, text)
	}
	// Idle for the timeout, it ends: its sandbox is released and its id
	// refused.
	for deadline := time.Now().Add(20 * time.Second); b.deletes.Load() == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("an idle session was never ended")
		}
	}
	if st, _, body := e.request(t, ctx, "POST", "alice", sid, callBody(4, "x")); st != http.StatusNotFound {
		t.Fatalf("call on an idled-out session: %d %s", st, body)
	}
}

// TestF8MCPSessionIDScope: another principal holding a session's id can
// neither listen on its stream, nor cancel its calls, nor end it; the
// owner can do all three, and a token-less DELETE (mcp-go's clients send
// none) still ends the owner's session.
func TestF8MCPSessionIDScope(t *testing.T) {
	b := &slowBackend{hold: make(chan struct{}), started: make(chan struct{}, 4)}
	e := newUnitEnv(t, b, mcpsrv.Options{})
	ctx := context.Background()
	sid := e.open(t, "alice")

	// Bob cannot open the notification stream of alice's session.
	gctx, gcancel := context.WithTimeout(ctx, 5*time.Second)
	defer gcancel()
	req, _ := http.NewRequestWithContext(gctx, "GET", e.url, nil)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Authorization", "Bearer bob")
	req.Header.Set("Mcp-Session-Id", sid)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode == http.StatusOK {
		res.Body.Close()
		t.Fatal("bob listens on the notification stream of alice's session")
	}
	res.Body.Close()

	// Alice's call runs; bob's cancellation is refused and changes nothing.
	type answer struct {
		status int
		body   string
		err    error
	}
	done := make(chan answer, 1)
	go func() {
		// Bounded: a cancelled call gets no answer at all.
		cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		st, _, body, err := e.try(cctx, "POST", "alice", sid, callBody(5, "wait()"))
		done <- answer{st, body, err}
	}()
	<-b.started
	if st, _, body := e.request(t, ctx, "POST", "bob", sid, `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":5}}`); st < 400 {
		t.Errorf("bob's cancellation of alice's call: %d %s", st, body)
	}
	if st, _, body := e.request(t, ctx, "DELETE", "bob", sid, ""); st < 400 {
		t.Errorf("bob's DELETE of alice's session: %d %s", st, body)
	}
	for _, m := range []string{"POST", "GET"} {
		if st, _, body := e.request(t, ctx, m, "bob", sid, `{"jsonrpc":"2.0","id":6,"method":"tools/list"}`); st != http.StatusForbidden || !strings.Contains(body, "forbidden") {
			t.Errorf("bob's %s with alice's session id: %d %s, want 403 forbidden", m, st, body)
		}
	}
	close(b.hold)
	a := <-done
	if a.err != nil {
		t.Fatalf("alice's call: %v (canceled=%d)", a.err, b.canceled.Load())
	}
	if isErr, text := callResult(t, a.body); a.status != http.StatusOK || isErr || b.canceled.Load() != 0 {
		t.Fatalf("alice's call: %d isError=%v canceled=%d %s", a.status, isErr, b.canceled.Load(), text)
	}
	if n := b.deletes.Load(); n != 0 {
		t.Fatalf("alice's sandbox was released %d times", n)
	}

	// Alice's own stream opens.
	req, _ = http.NewRequestWithContext(gctx, "GET", e.url, nil)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Authorization", "Bearer alice")
	req.Header.Set("Mcp-Session-Id", sid)
	if res, err := http.DefaultClient.Do(req); err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("alice's stream: %v %v", res.Status, err)
	} else {
		res.Body.Close()
	}

	// A forged id and a GET without any id are refused.
	if st, _, _ := e.request(t, ctx, "POST", "bob", strings.Replace(sid, sid[len(sid)-4:], "0000", 1), callBody(7, "1")); st != http.StatusNotFound {
		t.Errorf("forged id: %d", st)
	}
	if st, _, body := e.request(t, ctx, "GET", "bob", "", ""); st < 400 {
		t.Errorf("GET without a session id: %d %s", st, body)
	}

	// A token-less DELETE ends alice's session, which is then gone for her
	// too.
	if st, _, body := e.request(t, ctx, "DELETE", "", sid, ""); st != http.StatusOK {
		t.Fatalf("token-less DELETE by the id's holder: %d %s", st, body)
	}
	for deadline := time.Now().Add(10 * time.Second); b.deletes.Load() == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the ended session's sandbox was not released")
		}
	}
	if st, _, body := e.request(t, ctx, "POST", "alice", sid, callBody(8, "1")); st != http.StatusNotFound {
		t.Fatalf("alice's call after the DELETE: %d %s", st, body)
	}
}

// TestF8MCPSessionIDExpires: a session id carries its time of issue and is
// refused past the maximum session age, so an ended id cannot come back
// after a restart forgot that it ended.
func TestF8MCPSessionIDExpires(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	b := &slowBackend{}
	opt := mcpsrv.Options{Now: clock, MaxSessionAge: time.Hour}
	e := newUnitEnv(t, b, opt)
	ctx := context.Background()
	sid := e.open(t, "alice")
	if st, _, body := e.request(t, ctx, "POST", "alice", sid, callBody(2, "1")); st != http.StatusOK {
		t.Fatalf("fresh id: %d %s", st, body)
	}
	// A restarted server (same secret) that never saw the id end: it still
	// knows the id's owner, and refuses it past its age.
	e2 := newUnitEnv(t, b, opt)
	if st, _, body := e2.request(t, ctx, "POST", "bob", sid, callBody(3, "1")); st != http.StatusForbidden {
		t.Fatalf("another principal after a restart: %d %s", st, body)
	}
	if st, _, body := e2.request(t, ctx, "POST", "alice", sid, callBody(3, "1")); st != http.StatusOK {
		t.Fatalf("the owner after a restart: %d %s", st, body)
	}
	mu.Lock()
	now = now.Add(time.Hour + time.Minute)
	mu.Unlock()
	if st, _, body := e2.request(t, ctx, "POST", "alice", sid, callBody(3, "1")); st != http.StatusNotFound || !strings.Contains(body, "expired") {
		t.Fatalf("an id past the maximum age: %d %s", st, body)
	}
}

// TestF9MCPBodyLimit: request bodies are bounded before mcp-go reads them:
// a declared or a chunked body over the limit gets a clear 413.
func TestF9MCPBodyLimit(t *testing.T) {
	b := &slowBackend{}
	e := newUnitEnv(t, b, mcpsrv.Options{MaxRequestBytes: 4 << 10})
	ctx := context.Background()
	sid := e.open(t, "alice")
	big := callBody(2, strings.Repeat("#", 8<<10))
	for _, chunked := range []bool{false, true} {
		req, _ := http.NewRequestWithContext(ctx, "POST", e.url, strings.NewReader(big))
		if chunked {
			// An io.Reader of unknown length is sent chunked.
			req.Body = io.NopCloser(io.MultiReader(strings.NewReader(big)))
			req.ContentLength = -1
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Authorization", "Bearer alice")
		req.Header.Set("Mcp-Session-Id", sid)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(body), "too_large") {
			t.Errorf("chunked=%v: %d %s, want 413 too_large", chunked, res.StatusCode, body)
		}
	}
	if st, _, body := e.request(t, ctx, "POST", "alice", sid, callBody(3, "small")); st != http.StatusOK {
		t.Fatalf("a body under the limit: %d %s", st, body)
	}
}
