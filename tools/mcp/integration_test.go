package mcp_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/rs/zerolog"

	"github.com/sandpool/sandpool/api"
	"github.com/sandpool/sandpool/internal/podmantest"
	"github.com/sandpool/sandpool/pool"
	"github.com/sandpool/sandpool/tools"
	mcpsrv "github.com/sandpool/sandpool/tools/mcp"
)

func TestMain(m *testing.M) { podmantest.Main(m) }

const (
	aliceKey = "alice-key-0123456789"
	bobKey   = "bob-key-0123456789ab"
)

// env is a real pool behind the real HTTP surface with MCP mounted, as
// `sandpool serve` wires it.
type env struct {
	t    testing.TB
	url  string // the /mcp endpoint
	pool *pool.Pool
	mcp  *mcpsrv.Server
	// inproc: the pool runs on the in-process engine (the host's python3,
	// without the image's packages).
	inproc bool
}

func newEnv(t testing.TB, rt podmantest.Runtime) *env { return newEnvWith(t, rt, api.Limits{}) }

func newEnvWith(t testing.TB, rt podmantest.Runtime, limits api.Limits) *env {
	return newEnvOpts(t, rt, limits, nil)
}

// newEnvOpts is newEnvWith with the MCP server's options adjusted by set.
func newEnvOpts(t testing.TB, rt podmantest.Runtime, limits api.Limits, set func(*mcpsrv.Options)) *env {
	cfg := pool.Config{Name: "mcp-" + rt.Name,
		Scale:     pool.ScaleConfig{MaxConcurrentSessions: 8, ReadySessionInstances: ptr(1)},
		Execution: pool.ExecutionConfig{DefaultTimeoutInSeconds: 30, MaxTimeoutInSeconds: 60}}
	m := podmantest.Manager(t, rt, cfg)
	return serveMCP(t, m, m.Pool(cfg.Name), limits, set)
}

// serveMCP mounts an MCP server over p behind the real HTTP surface of m,
// as `sandpool serve` wires it, with the server's options adjusted by set.
func serveMCP(t testing.TB, m *pool.Manager, p *pool.Pool, limits api.Limits, set func(*mcpsrv.Options)) *env {
	opt := mcpsrv.Options{
		Service:   tools.NewService(p, tools.PoolLimits(p.Config())),
		Secret:    m.Hasher().Derive("mcp"),
		Principal: api.PrincipalFrom,
		Log:       zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
	}
	if set != nil {
		set(&opt)
	}
	ms, err := mcpsrv.New(opt)
	if err != nil {
		t.Fatal(err)
	}
	s, err := api.New(context.Background(), api.Options{Manager: m, MCP: func(string) http.Handler { return ms.Handler() },
		Auth:   api.AuthConfig{APIKeys: []api.APIKey{{Name: "alice", Key: aliceKey}, {Name: "bob", Key: bobKey}}},
		Limits: limits, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(nil)
	ts.Config = s.HTTPServer(nil)
	ts.Start()
	t.Cleanup(func() {
		ts.Close()
		s.Close(context.Background())
		ms.Close(context.Background())
	})
	return &env{t: t, url: ts.URL + "/mcp", pool: p, mcp: ms}
}

func ptr(n int) *int { return &n }

// notes collects notifications a client received.
type notes struct {
	mu   sync.Mutex
	list []mcp.JSONRPCNotification
}

func (n *notes) add(x mcp.JSONRPCNotification) {
	n.mu.Lock()
	n.list = append(n.list, x)
	n.mu.Unlock()
}

func (n *notes) progress() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []string
	for _, x := range n.list {
		if x.Method == "notifications/progress" {
			m, _ := x.Params.AdditionalFields["message"].(string)
			out = append(out, m)
		}
	}
	return out
}

// logs joins the logging notifications as logger:data.
func (n *notes) logs() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var b strings.Builder
	for _, x := range n.list {
		if x.Method == "notifications/message" {
			fmt.Fprintf(&b, "%v:%v", x.Params.AdditionalFields["logger"], x.Params.AdditionalFields["data"])
		}
	}
	return b.String()
}

// connect opens an mcp-go Streamable HTTP client with token and extra
// headers; it is closed (DELETE) when the test ends.
func (e *env) connect(token string, header map[string]string) (*client.Client, *notes) {
	e.t.Helper()
	h := map[string]string{"Authorization": "Bearer " + token}
	for k, v := range header {
		h[k] = v
	}
	c, err := client.NewStreamableHttpClient(e.url, transport.WithHTTPHeaders(h))
	if err != nil {
		e.t.Fatal(err)
	}
	n := &notes{}
	c.OnNotification(n.add)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		e.t.Fatal(err)
	}
	var ir mcp.InitializeRequest
	ir.Params.ClientInfo = mcp.Implementation{Name: "test", Version: "1"}
	ir.Params.ProtocolVersion = mcp.LATEST_LEGACY_PROTOCOL_VERSION
	if _, err := c.Initialize(ctx, ir); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	return c, n
}

type callOpt func(*mcp.CallToolRequest)

func withProgress(tok string) callOpt {
	return func(r *mcp.CallToolRequest) { r.Params.Meta = &mcp.Meta{ProgressToken: tok} }
}

func call(t testing.TB, c *client.Client, ctx context.Context, name string, args map[string]any, opts ...callOpt) *mcp.CallToolResult {
	t.Helper()
	var req mcp.CallToolRequest
	req.Params.Name, req.Params.Arguments = name, args
	for _, o := range opts {
		o(&req)
	}
	res, err := c.CallTool(ctx, req)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return res
}

func text(r *mcp.CallToolResult) string {
	var b strings.Builder
	for _, c := range r.Content {
		if tc, ok := mcp.AsTextContent(c); ok {
			b.WriteString(tc.Text + "\n")
		}
	}
	return b.String()
}

func expect(t *testing.T, what string, r *mcp.CallToolResult, isError bool, contains ...string) {
	t.Helper()
	if r.IsError != isError {
		t.Fatalf("%s: isError %v, want %v: %s", what, r.IsError, isError, text(r))
	}
	for _, s := range contains {
		if !strings.Contains(text(r), s) {
			t.Fatalf("%s: no %q in %q", what, s, text(r))
		}
	}
}

func TestMCPOverHTTP(t *testing.T) {
	for _, rt := range podmantest.Runtimes() {
		t.Run(rt.Name, func(t *testing.T) {
			t.Parallel()
			testMCPOverHTTP(t, newEnv(t, rt))
		})
	}
}

// testMCPOverHTTP tests the tools over Streamable HTTP on e: the tool
// list, state, images, files, isolation, streaming, timeouts, truncation,
// cancellation and reset.
func testMCPOverHTTP(t *testing.T, e *env) {
	ctx := context.Background()
	a, aNotes := e.connect(aliceKey, nil)

	lt, err := a.ListTools(ctx, mcp.ListToolsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tl := range lt.Tools {
		names = append(names, tl.Name)
		for _, bad := range []string{"identifier", "session", "container", "path"} {
			if bytes.Contains(tl.RawInputSchema, []byte(`"`+bad+`"`)) {
				t.Errorf("%s takes %q", tl.Name, bad)
			}
		}
	}
	if strings.Join(names, ",") != "delete_file,download_file,execute_python,list_files,reset_session,upload_file" {
		t.Fatalf("tools: %v", names)
	}

	// State is kept across calls.
	expect(t, "define", call(t, a, ctx, "execute_python", map[string]any{"code": "x = 21"}), false, "(no output")
	expect(t, "use", call(t, a, ctx, "execute_python", map[string]any{"code": "print('double')\nx * 2"}), false, "stdout:\ndouble", "result:\n42")

	// A plot comes back as an image.
	r := call(t, a, ctx, "execute_python", map[string]any{"code": e.figureCode()})
	var img *mcp.ImageContent
	for _, c := range r.Content {
		if ic, ok := mcp.AsImageContent(c); ok {
			img = ic
		}
	}
	if img == nil || img.MIMEType != "image/png" {
		t.Fatalf("plot: %+v", r.Content)
	}
	if png, _ := base64.StdEncoding.DecodeString(img.Data); !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Fatal("the image is not a PNG")
	}

	// Files round-trip.
	expect(t, "upload", call(t, a, ctx, "upload_file", map[string]any{"name": "data.csv", "content": "a,b\n1,2\n3,4\n"}), false, "saved /mnt/data/data.csv (12 bytes)")
	bin := []byte{0x00, 0xff, 0x10, 0x80}
	expect(t, "upload binary", call(t, a, ctx, "upload_file", map[string]any{"name": "/mnt/data/raw.bin", "content": base64.StdEncoding.EncodeToString(bin), "encoding": "base64"}), false)
	expect(t, "read upload", call(t, a, ctx, "execute_python", map[string]any{"code": e.csvSumCode() + ", open('raw.bin','rb').read()"}), false, `(6, b'\x00\xff\x10\x80')`)
	expect(t, "list", call(t, a, ctx, "list_files", nil), false, "data.csv\t12\t", "raw.bin\t4\t")
	r = call(t, a, ctx, "download_file", map[string]any{"name": "data.csv"})
	if er, ok := mcp.AsEmbeddedResource(r.Content[0]); !ok || r.IsError {
		t.Fatalf("download text: %+v", r.Content)
	} else if tr, ok := mcp.AsTextResourceContents(er.Resource); !ok || tr.Text != "a,b\n1,2\n3,4\n" || tr.URI != "file:///mnt/data/data.csv" {
		t.Fatalf("download text: %+v", er.Resource)
	}
	r = call(t, a, ctx, "download_file", map[string]any{"name": "raw.bin"})
	er, _ := mcp.AsEmbeddedResource(r.Content[len(r.Content)-1])
	if br, ok := mcp.AsBlobResourceContents(er.Resource); !ok || br.Blob != base64.StdEncoding.EncodeToString(bin) {
		t.Fatalf("download binary: %+v", r.Content)
	}
	expect(t, "delete", call(t, a, ctx, "delete_file", map[string]any{"name": "raw.bin"}), false, "deleted /mnt/data/raw.bin")
	expect(t, "deleted", call(t, a, ctx, "download_file", map[string]any{"name": "raw.bin"}), true, "not_found")

	// Another conversation (another MCP session of the same
	// principal) has its own sandbox.
	b, _ := e.connect(aliceKey, nil)
	expect(t, "isolated", call(t, b, ctx, "execute_python", map[string]any{"code": "x"}), true, "NameError")
	expect(t, "isolated files", call(t, b, ctx, "list_files", nil), false, "/mnt/data is empty")

	// Streaming: the output comes as progress messages (with a
	// progress token) and as logging notifications (once the
	// client asked for level info), before the result.
	//lint:ignore SA1019 logging is deprecated only in 2026-07-28, which this endpoint does not serve
	if err := a.SetLevel(ctx, mcp.SetLevelRequest{Params: mcp.SetLevelParams{Level: mcp.LoggingLevelInfo}}); err != nil {
		t.Fatal(err)
	}
	r = call(t, a, ctx, "execute_python", map[string]any{"code": "import sys, time\nprint('first', flush=True)\ntime.sleep(2)\nprint('second')\nprint('oops', file=sys.stderr)"}, withProgress("p1"))
	expect(t, "stream", r, false, "first\nsecond")
	if p := aNotes.progress(); len(p) == 0 || !strings.Contains(strings.Join(p, ""), "first") || !strings.Contains(strings.Join(p, ""), "[stderr] oops") {
		t.Fatalf("progress messages: %q", p)
	}
	if logs := aNotes.logs(); !strings.Contains(logs, "stdout:first") || !strings.Contains(logs, "stderr:oops") {
		t.Fatalf("logging notifications: %q", logs)
	}

	// A timeout is a clear error, and the session goes on.
	expect(t, "timeout", call(t, a, ctx, "execute_python", map[string]any{"code": "import time\ntime.sleep(10)", "timeout": 1}), true, "timeout: the execution ran past its 1s limit")
	expect(t, "after timeout", call(t, a, ctx, "execute_python", map[string]any{"code": "x"}), false, "21")

	// Oversized output is truncated with a note.
	expect(t, "flood", call(t, a, ctx, "execute_python", map[string]any{"code": "print('y' * 200000)"}), false, "[truncated: showing the first 16.0 KiB of 195.3 KiB")

	// Cancellation interrupts a sleeping cell: the call ends at once
	// and the variable it would have set never exists.
	cctx, cancel := context.WithCancel(ctx)
	time.AfterFunc(time.Second, cancel)
	var req mcp.CallToolRequest
	req.Params.Name, req.Params.Arguments = "execute_python", map[string]any{"code": "import time\ntime.sleep(20)\nlate = 1"}
	t0 := time.Now()
	if _, err := a.CallTool(cctx, req); err == nil {
		t.Fatal("a cancelled call returned a result")
	}
	r = call(t, a, ctx, "execute_python", map[string]any{"code": "print('late' in globals(), x)"})
	expect(t, "after cancel", r, false, "False 21")
	if d := time.Since(t0); d > 15*time.Second {
		t.Fatalf("the cancelled cell kept the kernel busy for %v", d)
	}

	// Reset: a fresh sandbox.
	expect(t, "reset", call(t, a, ctx, "reset_session", nil), false, "fresh sandbox")
	expect(t, "after reset", call(t, a, ctx, "execute_python", map[string]any{"code": "x"}), true, "NameError")
}

// figureCode shows a figure: matplotlib in the image; on the in-process
// engine (no matplotlib on the host), a PNG through IPython.
func (e *env) figureCode() string {
	if e.inproc {
		return pngCode
	}
	return "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.show()"
}

// csvSumCode is an expression: the sum of column b of data.csv.
func (e *env) csvSumCode() string {
	if e.inproc {
		return "import csv\nsum(int(r['b']) for r in csv.DictReader(open('data.csv')))"
	}
	return "import pandas as pd\nint(pd.read_csv('data.csv').b.sum())"
}

// TestMCPBindingAndBadInput: sessions bound to principals and conversations,
// released at close; bad arguments and bad requests get clear errors.
func TestMCPBindingAndBadInput(t *testing.T) {
	testMCPBindingAndBadInput(t, newEnv(t, podmantest.Runsc))
}

// testMCPBindingAndBadInput tests on e: sessions bound to principals and
// conversations, released at close; bad arguments and requests.
func testMCPBindingAndBadInput(t *testing.T, e *env) {
	ctx := context.Background()

	// The host application's conversation id: two MCP sessions share
	// state; another principal with the same id does not.
	c1, _ := e.connect(aliceKey, map[string]string{mcpsrv.ConversationHeader: "conv-1"})
	c2, _ := e.connect(aliceKey, map[string]string{mcpsrv.ConversationHeader: "conv-1"})
	c3, _ := e.connect(bobKey, map[string]string{mcpsrv.ConversationHeader: "conv-1"})
	expect(t, "set", call(t, c1, ctx, "execute_python", map[string]any{"code": "shared = 'yes'"}), false)
	expect(t, "same conversation", call(t, c2, ctx, "execute_python", map[string]any{"code": "shared"}), false, "'yes'")
	expect(t, "other principal", call(t, c3, ctx, "execute_python", map[string]any{"code": "shared"}), true, "NameError")

	// Bad arguments: isError results, never a crash.
	c, _ := e.connect(aliceKey, nil)
	for _, tc := range []struct {
		tool string
		args map[string]any
		want string
	}{
		{"execute_python", nil, `"code" is required`},
		{"execute_python", map[string]any{"code": []any{1}}, `"code" must be a string`},
		{"execute_python", map[string]any{"code": strings.Repeat("#", 10<<20)}, "above the limit"},
		{"execute_python", map[string]any{"code": "1", "identifier": "victim"}, "unknown argument"},
		{"upload_file", map[string]any{"name": "x.bin", "content": "%%%", "encoding": "base64"}, "not valid base64"},
		{"upload_file", map[string]any{"name": "../../etc/passwd", "content": "x"}, "not allowed"},
		{"download_file", map[string]any{"name": "/etc/shadow"}, "not allowed"},
		{"delete_file", map[string]any{"name": "a/../../b"}, "not allowed"},
	} {
		expect(t, tc.tool, call(t, c, ctx, tc.tool, tc.args), true, tc.want)
	}
	var req mcp.CallToolRequest
	req.Params.Name = "no_such_tool"
	if _, err := c.CallTool(ctx, req); err == nil {
		t.Fatal("an unknown tool was called")
	}

	// Closing the MCP session releases its sandbox.
	expect(t, "allocate", call(t, c, ctx, "execute_python", map[string]any{"code": "1"}), false)
	before := e.pool.Status().Allocated
	sid := c.GetSessionId()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for e.pool.Status().Allocated != before-1 {
		if time.Now().After(deadline) {
			t.Fatalf("allocated sessions %d after close, want %d", e.pool.Status().Allocated, before-1)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Raw HTTP: a call on the closed session, a stolen session id, no
	// token, a forged id, an oversized body.
	post := func(token, session, body string) (int, string) {
		req, _ := http.NewRequest("POST", e.url, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("MCP-Protocol-Version", mcp.LATEST_LEGACY_PROTOCOL_VERSION)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		if session != "" {
			req.Header.Set("Mcp-Session-Id", session)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	callBody := `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"execute_python","arguments":{"code":"1"}}}`
	if st, body := post(aliceKey, sid, callBody); st != http.StatusNotFound {
		t.Fatalf("call after close: %d %s", st, body)
	}
	if st, body := post("", "", callBody); st != http.StatusUnauthorized || !strings.Contains(body, "unauthenticated") {
		t.Fatalf("no token: %d %s", st, body)
	}
	if st, _ := post(aliceKey, "sp1.0123456789abcdef0123456789abcdef.00000000000000000000000000000000", callBody); st != http.StatusNotFound {
		t.Fatalf("forged session id: %d", st)
	}
	live, _ := e.connect(aliceKey, nil)
	expect(t, "owner", call(t, live, ctx, "execute_python", map[string]any{"code": "secret = 1"}), false)
	if st, body := post(bobKey, live.GetSessionId(), callBody); st != http.StatusForbidden || !strings.Contains(body, "another caller") {
		t.Fatalf("stolen session id: %d %s", st, body)
	}
	if st, _ := post(aliceKey, live.GetSessionId(), `{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"execute_python","arguments":{"code":"`+strings.Repeat("x", 33<<20)+`"}}}`); st != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversized body: %d", st)
	}
	expect(t, "still works", call(t, live, ctx, "execute_python", map[string]any{"code": "secret"}), false, "1")
}

// TestGoSDKClient: the official Go SDK interoperates, whichever protocol
// revision it asks for first.
func TestGoSDKClient(t *testing.T) { testGoSDKClient(t, newEnv(t, podmantest.Runc)) }

// testGoSDKClient tests the official Go SDK's client on e.
func testGoSDKClient(t *testing.T, e *env) {
	ctx := context.Background()
	for _, version := range []string{"", "2025-11-25", "2025-06-18"} {
		cl := sdk.NewClient(&sdk.Implementation{Name: "interop", Version: "1"}, &sdk.ClientOptions{
			ProgressNotificationHandler: func(context.Context, *sdk.ProgressNotificationClientRequest) {},
		})
		hc := &http.Client{Transport: bearer{aliceKey}}
		var opts *sdk.ClientSessionOptions
		if version != "" {
			opts = &sdk.ClientSessionOptions{ProtocolVersion: version}
		}
		cs, err := cl.Connect(ctx, &sdk.StreamableClientTransport{Endpoint: e.url, HTTPClient: hc}, opts)
		if err != nil {
			t.Fatalf("%q: connect: %v", version, err)
		}
		// On a failure too: an open session's GET stream would keep the
		// test server's Close waiting for ever.
		t.Cleanup(func() { cs.Close() })
		if cs.ID() == "" {
			t.Fatalf("%q: no MCP session id (negotiated %s)", version, cs.InitializeResult().ProtocolVersion)
		}
		run := func(code string) string {
			res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "execute_python", Arguments: map[string]any{"code": code}})
			if err != nil {
				t.Fatalf("%q: %v", version, err)
			}
			var b strings.Builder
			for _, c := range res.Content {
				if tc, ok := c.(*sdk.TextContent); ok {
					b.WriteString(tc.Text)
				}
			}
			return b.String()
		}
		run("v = 'kept'")
		if got := run("v"); !strings.Contains(got, "'kept'") {
			t.Fatalf("%q: state: %q", version, got)
		}
		if err := cs.Close(); err != nil && !errors.Is(err, io.EOF) {
			t.Fatalf("%q: close: %v", version, err)
		}
	}
}

type bearer struct{ token string }

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return http.DefaultTransport.RoundTrip(r)
}

// TestF7MCPLongCallKeepsSessionPodman: with an idle timeout shorter than a
// call, the call's sandbox survives it (state and files intact) under runc
// and runsc, and the idle session is released afterwards.
func TestF7MCPLongCallKeepsSessionPodman(t *testing.T) {
	for _, rt := range podmantest.Runtimes() {
		t.Run(rt.Name, func(t *testing.T) {
			t.Parallel()
			e := newEnvOpts(t, rt, api.Limits{}, func(o *mcpsrv.Options) { o.IdleTTL = time.Second })
			ctx := context.Background()
			c, _ := e.connect(aliceKey, nil)
			expect(t, "long call", call(t, c, ctx, "execute_python", map[string]any{"code": "import time\nopen('kept.txt', 'w').write('yes')\ntime.sleep(4)\nkept = 'state'"}), false)
			expect(t, "after the long call", call(t, c, ctx, "execute_python", map[string]any{"code": "print(open('kept.txt').read(), kept)"}), false, "yes state")
			// Idle now: the session ends and its sandbox is released.
			for deadline := time.Now().Add(time.Minute); e.pool.Status().Allocated != 0; time.Sleep(100 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("allocated sessions %d after the idle timeout, want 0", e.pool.Status().Allocated)
				}
			}
		})
	}
}
