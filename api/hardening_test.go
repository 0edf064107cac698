package api_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/rs/zerolog"

	"github.com/sandpool/sandpool/api"
	"github.com/sandpool/sandpool/pool"
	"github.com/sandpool/sandpool/sandbox"
)

// noEngine is an Engine with no sandboxes: for tests of the HTTP layer in
// front of the pools, where no request may reach a sandbox.
type noEngine struct{}

var errNoSandboxes = errors.New("this test has no sandboxes")

func (noEngine) Create(context.Context, sandbox.Spec) (*sandbox.Sandbox, error) {
	return nil, errNoSandboxes
}
func (noEngine) Open(context.Context, string) (*sandbox.Sandbox, error) { return nil, errNoSandboxes }
func (noEngine) List(context.Context, map[string]string) ([]sandbox.Summary, error) {
	return nil, nil
}
func (noEngine) Remove(context.Context, string) error { return nil }

// frontServer serves opt over a pool named "front" that has no sandboxes.
func frontServer(t *testing.T, opt api.Options) (addr string) {
	addr, _ = frontSurface(t, opt)
	return addr
}

// frontSurface is frontServer, with the surface for the test to close,
// over pools of the names given (default "front").
func frontSurface(t *testing.T, opt api.Options, names ...string) (string, *api.Server) {
	t.Helper()
	if len(names) == 0 {
		names = []string{"front"}
	}
	zero := 0
	var cfgs []pool.Config
	for _, n := range names {
		cfg := pool.Config{Name: n, Runtime: "runc", Image: "localhost/none:1"}
		cfg.Scale.ReadySessionInstances = &zero
		cfgs = append(cfgs, cfg)
	}
	mgr, err := pool.NewManager(context.Background(), cfgs, pool.ManagerOptions{
		Engines: map[string]pool.Engine{"runc": noEngine{}}, StateDir: t.TempDir(),
		Settings: pool.Settings{ServerID: "front", Log: zerolog.Nop()},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mgr.Close(context.Background()) })
	opt.Manager = mgr
	opt.Log = zerolog.Nop()
	s, err := api.New(context.Background(), opt)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := s.HTTPServer(nil)
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(s.Listener(ln)) }()
	t.Cleanup(func() {
		srv.Close()
		<-done
		s.Close(context.Background())
	})
	return ln.Addr().String(), s
}

// settle waits for the goroutine count to come back to at most base+slack.
func settle(t *testing.T, base, slack int) {
	t.Helper()
	var n int
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if n = runtime.NumGoroutine(); n <= base+slack {
			return
		}
	}
	buf := make([]byte, 1<<20)
	t.Fatalf("goroutines: %d, baseline %d\n%s", n, base, buf[:runtime.Stack(buf, true)])
}

// TestF1Slowloris: requests that announce a body and never send it, with
// no token, each get their 401 or are closed within the body deadline, and
// hold nothing afterwards.
func TestF1Slowloris(t *testing.T) {
	const timeout = 2 * time.Second
	addr := frontServer(t, api.Options{
		Auth:   api.AuthConfig{APIKeys: []api.APIKey{{Name: "alice", Key: aliceKey}}},
		Limits: api.Limits{BodyTimeoutSeconds: int(timeout / time.Second)},
	})
	base := runtime.NumGoroutine()
	heads := []string{
		"POST /pools/front/executions?identifier=abcd HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 200000\r\n\r\n",
		"POST /pools/front/executions?identifier=abcd HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
		// With a token: the body deadline alone ends it.
		"POST /pools/front/executions?identifier=abcd HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + aliceKey + "\r\nContent-Type: application/json\r\nContent-Length: 200000\r\n\r\n{\"code\":",
		"POST /pools/front/files?identifier=abcd HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=x\r\nContent-Length: 200000\r\n\r\n",
	}
	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, n)
	start := time.Now()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			head := heads[i%len(heads)]
			c, err := net.Dial("tcp", addr)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			if _, err := io.WriteString(c, head); err != nil {
				errs <- err
				return
			}
			_ = c.SetReadDeadline(time.Now().Add(timeout + 10*time.Second))
			res, err := http.ReadResponse(bufio.NewReader(c), nil)
			switch {
			case err == nil:
				res.Body.Close()
				if strings.Contains(head, "Bearer") {
					if res.StatusCode < 400 {
						errs <- fmt.Errorf("a body that never came: status %d", res.StatusCode)
					}
				} else if res.StatusCode != http.StatusUnauthorized {
					errs <- fmt.Errorf("no token: status %d, want 401", res.StatusCode)
				} else if !res.Close {
					errs <- errors.New("a refusal before the body was read does not close the connection")
				}
			case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
				// Closed at the deadline: fine.
			default:
				errs <- fmt.Errorf("neither answered nor closed: %w", err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if d := time.Since(start); d > timeout+10*time.Second {
		t.Errorf("the connections took %v, beyond the body deadline of %v", d, timeout)
	}
	settle(t, base, 5)
}

// TestF1ConnectionCaps: connections over the per-address cap are closed at
// once, and their places come back when they close.
func TestF1ConnectionCaps(t *testing.T) {
	addr := frontServer(t, api.Options{Limits: api.Limits{MaxConnections: 40, MaxConnectionsPerAddress: 10}})
	base := runtime.NumGoroutine()
	var conns []net.Conn
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	for range 30 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	// Of 30 idle connections from one address, 10 stay open; the others
	// are closed at once.
	open := 0
	for _, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		_, err := c.Read(make([]byte, 1))
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			open++
		}
	}
	if open != 10 {
		t.Fatalf("%d of 30 connections from one address stayed open, want 10", open)
	}
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	settle(t, base, 5)
	// Once they are closed, the address may connect again.
	res, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("healthz after the cap: %d", res.StatusCode)
	}
}

// TestF3CrossSite: in anonymous mode a page of another site (its own name
// in Host through DNS rebinding, or its Origin) can neither run code,
// list or stop sessions, nor open the WebSocket; the server's own page,
// configured names and origins, and non-browser clients can.
func TestF3CrossSite(t *testing.T) {
	addr := frontServer(t, api.Options{AllowedHosts: []string{"sandpool.internal", "*.corp.example"},
		AllowedOrigins: []string{"https://app.corp.example"}})
	_, port, _ := net.SplitHostPort(addr)
	self := "http://127.0.0.1:" + port
	exec := "/pools/front/executions?identifier=abcd"
	ws := map[string]string{"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
	with := func(m map[string]string, kv ...string) map[string]string {
		out := map[string]string{}
		for k, v := range m {
			out[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			out[kv[i]] = kv[i+1]
		}
		return out
	}
	cases := []struct {
		name, method, path, host string
		header                   map[string]string
		code                     string // "" : the guard lets it through
	}{
		{"rebinding execute", "POST", exec, "evil.example:" + port, map[string]string{"Content-Type": "text/plain"}, "host_not_allowed"},
		{"rebinding list", "GET", "/pools/front/listSessions", "evil.example:" + port, nil, "host_not_allowed"},
		{"rebinding ws", "GET", "/pools/front/ws?identifier=abcd", "evil.example:" + port, with(ws, "Origin", "http://evil.example:"+port), "host_not_allowed"},
		{"foreign origin execute", "POST", exec, "", map[string]string{"Origin": "http://evil.example", "Content-Type": "text/plain"}, "cross_origin_refused"},
		{"foreign origin json", "POST", exec, "", map[string]string{"Origin": "http://evil.example", "Content-Type": "application/json"}, "cross_origin_refused"},
		{"null origin", "POST", exec, "", map[string]string{"Origin": "null", "Content-Type": "application/json"}, "cross_origin_refused"},
		{"cross-site fetch metadata", "POST", exec, "", map[string]string{"Sec-Fetch-Site": "cross-site", "Content-Type": "application/json"}, "cross_origin_refused"},
		{"another port of localhost", "POST", "/pools/front/.management/stopSession?identifier=abcd", "", map[string]string{"Origin": "http://localhost:3000", "Sec-Fetch-Site": "same-site"}, "cross_origin_refused"},
		{"foreign origin delete", "DELETE", "/pools/front/session?identifier=abcd", "", map[string]string{"Origin": "http://evil.example"}, "cross_origin_refused"},
		{"foreign origin ws", "GET", "/pools/front/ws?identifier=abcd", "", with(ws, "Origin", "http://evil.example"), "cross_origin_refused"},
		{"text/plain without origin", "POST", exec, "", map[string]string{"Content-Type": "text/plain"}, "unsupported_media_type"},
		{"form without origin", "POST", exec, "", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, "unsupported_media_type"},
		// Let through:
		{"own page", "POST", exec, "", map[string]string{"Origin": self, "Sec-Fetch-Site": "same-origin", "Content-Type": "application/json"}, ""},
		{"own page ws", "GET", "/pools/front/ws?identifier=abcd", "", with(ws, "Origin", self, "Sec-Fetch-Site", "same-origin"), ""},
		{"non-browser client", "POST", exec, "", map[string]string{"Content-Type": "application/json; charset=utf-8"}, ""},
		{"no content type", "POST", exec, "", nil, ""},
		{"localhost name", "GET", "/pools/front/listSessions", "localhost:" + port, nil, ""},
		{"ipv6 literal", "GET", "/pools/front/listSessions", "[::1]:" + port, nil, ""},
		{"configured name", "GET", "/pools/front/listSessions", "sandpool.internal", nil, ""},
		{"configured domain", "GET", "/pools/front/listSessions", "a.corp.example:" + port, nil, ""},
		{"trusted origin", "POST", exec, "", map[string]string{"Origin": "https://app.corp.example", "Sec-Fetch-Site": "cross-site", "Content-Type": "application/json"}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var body io.Reader
			if tc.method == "POST" {
				body = strings.NewReader(`{"code":"print(1)"}`)
			}
			req, _ := http.NewRequest(tc.method, "http://"+addr+tc.path, body)
			if tc.host != "" {
				req.Host = tc.host
			}
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			res, err := http.DefaultTransport.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			var b []byte
			if res.StatusCode != http.StatusSwitchingProtocols {
				b, _ = io.ReadAll(res.Body)
			}
			res.Body.Close()
			got := res.Header.Get("x-ms-error-code")
			switch {
			case tc.code != "" && got != tc.code:
				t.Fatalf("status %d, code %q, want %q: %s", res.StatusCode, got, tc.code, b)
			case tc.code == "" && (got == "host_not_allowed" || got == "cross_origin_refused" || got == "unsupported_media_type"):
				t.Fatalf("refused (%s): %s", got, b)
			}
		})
	}
}

// TestF3HostWithAuth: with authentication, a bearer token (which no
// browser adds by itself) is the guard: any Host may call.
func TestF3HostWithAuth(t *testing.T) {
	addr := frontServer(t, api.Options{Auth: api.AuthConfig{APIKeys: []api.APIKey{{Name: "alice", Key: aliceKey}}}})
	req, _ := http.NewRequest("GET", "http://"+addr+"/pools/front/listSessions", nil)
	req.Host = "sandpool.example.com"
	req.Header.Set("Authorization", "Bearer "+aliceKey)
	res, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("status %d", res.StatusCode)
	}
}

func dialWS(t *testing.T, addr, token string) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	h := http.Header{}
	if token != "" {
		h.Set("Authorization", "Bearer "+token)
	}
	d := websocket.Dialer{Subprotocols: []string{api.WSSubprotocol}, HandshakeTimeout: 5 * time.Second}
	c, res, err := d.Dial("ws://"+addr+"/pools/front/ws?identifier=abcd", h)
	if err == nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, res, err
}

// closeCode reads until the connection ends and returns its close code
// (-1: it ended without one).
func closeCode(c *websocket.Conn) int {
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	for {
		if _, _, err := c.ReadMessage(); err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				return ce.Code
			}
			return -1
		}
	}
}

// TestF2WSBadFrameFlood: a client that sends one-byte invalid frames and
// reads nothing is dropped with 1008 long before its answers could grow
// the server's memory.
func TestF2WSBadFrameFlood(t *testing.T) {
	addr := frontServer(t, api.Options{})
	// A few bad messages are answered; a burst of them ends the
	// connection with 1008.
	c, _, err := dialWS(t, addr, "")
	if err != nil {
		t.Fatal(err)
	}
	answered := 0
	for ; answered < 100; answered++ {
		if err := c.WriteMessage(websocket.BinaryMessage, []byte{'x'}); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, b, err := c.ReadMessage()
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			if ce.Code != websocket.ClosePolicyViolation {
				t.Fatalf("close code %d, want 1008", ce.Code)
			}
			break
		}
		if err != nil || !strings.Contains(string(b), `"failure"`) {
			t.Fatalf("answer %d: %s, %v", answered, b, err)
		}
	}
	if answered < 8 || answered >= 100 {
		t.Fatalf("%d bad messages answered before the close", answered)
	}
	// A flood that reads nothing is cut off.
	c, _, err = dialWS(t, addr, "")
	if err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	sent, dropped := 0, false
	for ; sent < 200000; sent++ {
		_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if err := c.WriteMessage(websocket.BinaryMessage, []byte{'x'}); err != nil {
			dropped = true
			break
		}
	}
	if !dropped {
		t.Fatalf("%d bad frames and the connection is still open", sent)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 32<<20 {
		t.Fatalf("the live heap grew by %d MiB", grew>>20)
	}
}

// TestF2StreamsPerPrincipal: WebSockets count against the caller's open
// streams; another caller is not affected, and a closed one frees its place.
func TestF2StreamsPerPrincipal(t *testing.T) {
	addr := frontServer(t, api.Options{
		Auth:   api.AuthConfig{APIKeys: []api.APIKey{{Name: "alice", Key: aliceKey}, {Name: "bob", Key: bobKey}}},
		Limits: api.Limits{MaxStreamsPerPrincipal: 2},
	})
	a1, _, err := dialWS(t, addr, aliceKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := dialWS(t, addr, aliceKey); err != nil {
		t.Fatal(err)
	}
	_, res, err := dialWS(t, addr, aliceKey)
	if err == nil || res == nil || res.StatusCode != http.StatusTooManyRequests || res.Header.Get("Retry-After") == "" {
		t.Fatalf("a third stream: %v, %+v", err, res)
	}
	if _, _, err := dialWS(t, addr, bobKey); err != nil {
		t.Fatalf("another principal: %v", err)
	}
	a1.Close()
	var ok bool
	for deadline := time.Now().Add(5 * time.Second); !ok && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		_, _, err = dialWS(t, addr, aliceKey)
		ok = err == nil
	}
	if !ok {
		t.Fatalf("a closed stream did not free its place: %v", err)
	}
}

// TestServerCloseEndsWebSockets: Close refuses new WebSockets, closes the
// open ones with 1001, and returns once their goroutines have ended.
func TestServerCloseEndsWebSockets(t *testing.T) {
	addr, s := frontSurface(t, api.Options{})
	base := runtime.NumGoroutine()
	var conns []*websocket.Conn
	for range 3 {
		c, _, err := dialWS(t, addr, "")
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	codes := make(chan int, len(conns))
	for _, c := range conns {
		go func() { codes <- closeCode(c) }()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s.Close(ctx)
	for range conns {
		if code := <-codes; code != websocket.CloseGoingAway {
			t.Fatalf("close code %d, want 1001", code)
		}
	}
	if _, res, err := dialWS(t, addr, ""); err == nil || res == nil || res.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("a WebSocket after Close: %v %+v", err, res)
	}
	for _, c := range conns {
		c.Close()
	}
	settle(t, base, 2)
}

// TestF9MetricsAndPoolsNeedToken: with any authentication configured,
// /metrics and /pools take a token, and /pools lists only the pools the
// caller may use.
func TestF9MetricsAndPoolsNeedToken(t *testing.T) {
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "sandpool_up 1\n") })
	for _, tc := range []struct {
		name     string
		opt      api.Options
		token    string
		status   int
		visible  string // pools listed, comma-separated
		metricOK bool
	}{
		{"server keys, no token", api.Options{Auth: api.AuthConfig{APIKeys: []api.APIKey{{Name: "alice", Key: aliceKey}}}}, "", 401, "", false},
		{"server keys, token", api.Options{Auth: api.AuthConfig{APIKeys: []api.APIKey{{Name: "alice", Key: aliceKey}}}}, aliceKey, 200, "front,other", true},
		// The server's routes are open but one pool wants a token.
		{"pool keys, no token", api.Options{PoolAuth: map[string]api.AuthConfig{"other": {APIKeys: []api.APIKey{{Name: "bob", Key: bobKey}}}}}, "", 200, "front", false},
		{"pool keys, its token", api.Options{PoolAuth: map[string]api.AuthConfig{"other": {APIKeys: []api.APIKey{{Name: "bob", Key: bobKey}}}}}, bobKey, 200, "front,other", true},
		{"two principals apart", api.Options{Auth: api.AuthConfig{APIKeys: []api.APIKey{{Name: "alice", Key: aliceKey}}},
			PoolAuth: map[string]api.AuthConfig{"other": {APIKeys: []api.APIKey{{Name: "bob", Key: bobKey}}}}}, aliceKey, 200, "front", true},
		{"anonymous", api.Options{}, "", 200, "front,other", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.opt.Metrics = metrics
			addr, _ := frontSurface(t, tc.opt, "front", "other")
			get := func(path string) (int, string) {
				req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
				if tc.token != "" {
					req.Header.Set("Authorization", "Bearer "+tc.token)
				}
				res, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer res.Body.Close()
				b, _ := io.ReadAll(res.Body)
				return res.StatusCode, string(b)
			}
			status, body := get("/pools")
			if status != tc.status {
				t.Fatalf("/pools: %d %s", status, body)
			}
			var listed []string
			for _, n := range []string{"front", "other"} {
				if strings.Contains(body, `"name":"`+n+`"`) {
					listed = append(listed, n)
				}
			}
			if got := strings.Join(listed, ","); status == 200 && got != tc.visible {
				t.Fatalf("/pools lists %q, want %q: %s", got, tc.visible, body)
			}
			if status, body := get("/metrics"); (status == 200) != tc.metricOK {
				t.Fatalf("/metrics: %d %s", status, body)
			}
		})
	}
}
