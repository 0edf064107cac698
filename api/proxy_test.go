package api_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/sandpool/sandpool/api"
	"github.com/sandpool/sandpool/internal/podmantest"
	"github.com/sandpool/sandpool/pool"
)

// These tests run the example application (examples/custom-container) as
// a CustomContainer pool under runc and runsc, and talk to it through the
// server as any HTTP client would.

// appConfig is a CustomContainer pool of the example image.
func appConfig(t testing.TB, lc pool.LifecycleType, env ...pool.EnvVar) pool.Config {
	return pool.Config{
		ContainerType: pool.CustomContainer,
		Scale:         pool.ScaleConfig{MaxConcurrentSessions: 3, ReadySessionInstances: ptr(1)},
		Lifecycle:     pool.LifecycleConfig{LifecycleType: lc},
		CustomContainer: &pool.CustomContainerTemplate{
			Containers: []pool.ContainerTemplate{{
				Image:     podmantest.AppImage(t),
				Env:       append([]pool.EnvVar{{Name: "DEMO_FAULTS", Value: "1"}}, env...),
				Resources: &pool.ContainerResources{CPU: 0.5, Memory: 256 << 20},
				Probes:    []pool.Probe{{Type: "Startup", HTTPGet: &pool.ProbeHTTPGet{Path: "/healthz", Port: 8080}}},
			}},
			Ingress: pool.IngressConfig{TargetPort: 8080, TimeoutInSeconds: 3},
		},
	}
}

// eachRuntimeApp runs f under each runtime with a CustomContainer pool
// whose health checks and lifecycle rules run often.
func eachRuntimeApp(t *testing.T, cfg pool.Config, f func(t *testing.T, e *env)) {
	for _, rt := range podmantest.Runtimes() {
		t.Run(rt.Name, func(t *testing.T) {
			t.Parallel()
			cfg := cfg
			cfg.Name = "app-" + rt.Name
			m := podmantest.Manager(t, rt, cfg, func(o *pool.ManagerOptions) {
				o.Settings.HealthInterval = 300 * time.Millisecond
				o.Settings.Tick = 200 * time.Millisecond
			})
			f(t, &env{t: t, rt: rt, mgr: m, cfg: m.Pool(cfg.Name).Config()})
		})
	}
}

// count increments the counter of identifier's container.
func (c *client) count(t *testing.T, identifier string) int {
	t.Helper()
	r := c.get("/count?identifier=" + url.QueryEscape(identifier))
	want(t, r, 200, "")
	var v struct{ Count int }
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatal(err)
	}
	return v.Count
}

// seen is the request as the container received it (GET /headers).
type seen struct {
	Method, Path, Query, Host string
	Headers                   http.Header
}

func (c *client) headers(t *testing.T, identifier string) seen {
	t.Helper()
	r := c.get("/headers?identifier=" + identifier)
	want(t, r, 200, "")
	var s seen
	if err := json.Unmarshal(r.body, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

// raw sends a request as written to the server and reads the answer.
func (c *client) raw(t *testing.T, req string) (*http.Response, []byte) {
	t.Helper()
	u, _ := url.Parse(c.url)
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	req = strings.ReplaceAll(req, "\n", "\r\n")
	req = strings.ReplaceAll(req, "HOST", u.Host)
	req = strings.ReplaceAll(req, "TOKEN", c.token)
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading the answer to %.40q: %v", req, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

var hexID = regexp.MustCompile(`^[0-9a-f]{32}$`)

func TestCustomContainerRouting(t *testing.T) {
	eachRuntimeApp(t, appConfig(t, pool.Timed), func(t *testing.T, e *env) {
		c := e.server(api.Options{}, nil)
		path := "/pools/" + e.cfg.Name

		// Each identifier reaches its own container, which keeps its state.
		if a1, a2, b1 := c.count(t, "alpha"), c.count(t, "alpha"), c.count(t, "bravo"); a1 != 1 || a2 != 2 || b1 != 1 {
			t.Errorf("counters a=%d,%d b=%d: want 1,2 and 1", a1, a2, b1)
		}
		sa, sb := c.headers(t, "alpha"), c.headers(t, "bravo")
		idA, idB := sa.Headers.Get(api.HeaderSessionID), sb.Headers.Get(api.HeaderSessionID)
		if !hexID.MatchString(idA) || !hexID.MatchString(idB) || idA == idB {
			t.Errorf("session ids %q and %q: want two different keyed ids", idA, idB)
		}

		// Method, path, query and headers as sent, minus credentials,
		// identifier, api-version and hop-by-hop headers, plus sandpool's.
		resp, body := c.raw(t, `POST `+path+`/headers?identifier=alpha&api-version=2025-02-02-preview&x=1&y=%20z HTTP/1.1
Host: HOST
Authorization: Bearer TOKEN
Sandpool-Session-Id: forged
X-Forwarded-For: 6.6.6.6
Forwarded: for=6.6.6.6
Connection: close, X-Smuggle
X-Smuggle: secret
Keep-Alive: timeout=5
Proxy-Authorization: Basic Zm9vOmJhcg==
X-Custom: kept
Content-Length: 5

hello`)
		var s seen
		if err := json.Unmarshal(body, &s); resp.StatusCode != 200 || err != nil {
			t.Fatalf("headers: %d %s", resp.StatusCode, body)
		}
		if s.Method != "POST" || s.Path != "/headers" || s.Query != "x=1&y=%20z" {
			t.Errorf("forwarded %s %s ? %s", s.Method, s.Path, s.Query)
		}
		for _, h := range []string{"Authorization", "Proxy-Authorization", "X-Smuggle", "Keep-Alive", "X-Forwarded-For", "Forwarded"} {
			if v := s.Headers.Values(h); len(v) > 0 {
				t.Errorf("%s reached the container: %q", h, v)
			}
		}
		if got := s.Headers.Get(api.HeaderSessionID); got != idA {
			t.Errorf("session id %q: a caller's forged value must be replaced by %q", got, idA)
		}
		if got := s.Headers.Get(api.HeaderRequestID); got == "" || got != resp.Header.Get("x-ms-request-id") {
			t.Errorf("request id %q, answered %q", got, resp.Header.Get("x-ms-request-id"))
		}
		if s.Headers.Get("X-Custom") != "kept" || s.Headers.Get("X-Forwarded-Prefix") != path || s.Headers.Get("X-Forwarded-Proto") != "http" {
			t.Errorf("headers: %v", s.Headers)
		}
		// An absolute-form request naming another port still reaches only
		// the target port.
		resp, body = c.raw(t, `GET http://127.0.0.1:22`+path+`/headers?identifier=alpha HTTP/1.1
Host: 127.0.0.1:22
Authorization: Bearer TOKEN
Connection: close

`)
		if resp.StatusCode != 200 || !strings.Contains(string(body), `"path":"/headers"`) {
			t.Errorf("absolute form: %d %s", resp.StatusCode, body)
		}

		// Large bodies stream both ways.
		const size = 24 << 20
		src := rand.New(rand.NewPCG(1, 2))
		pr, pw := io.Pipe()
		sent := sha256.New()
		go func() {
			buf := make([]byte, 1<<20)
			for n := 0; n < size; n += len(buf) {
				for i := range buf {
					buf[i] = byte(src.Uint32())
				}
				sent.Write(buf)
				if _, err := pw.Write(buf); err != nil {
					return
				}
			}
			pw.Close()
		}()
		t0 := time.Now()
		req, _ := http.NewRequest("POST", c.base+"/echo?identifier=alpha", pr)
		req.Header.Set("Authorization", "Bearer "+c.token)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got := sha256.New()
		n, err := io.Copy(got, res.Body)
		res.Body.Close()
		if err != nil || n != size || !bytes.Equal(got.Sum(nil), sent.Sum(nil)) {
			t.Errorf("echo of %d bytes: %d back, %v", size, n, err)
		}
		t.Logf("echo of %d MiB: %v", size>>20, time.Since(t0))
		r := c.get(fmt.Sprintf("/bytes?identifier=bravo&n=%d", size))
		if r.status != 200 || len(r.body) != size || r.body[size-1] != byte('a'+(size-1)%(64<<10)%26) {
			t.Errorf("download: %d, %d bytes", r.status, len(r.body))
		}

		// A server-sent event stream arrives as it is written.
		// (10 events 100 ms apart: arriving over 300 ms or more is
		// streaming, whatever the load; a buffered stream comes at once.)
		req, _ = http.NewRequest("GET", c.base+"/events?identifier=alpha&n=10", nil)
		req.Header.Set("Authorization", "Bearer "+c.token)
		res, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var at []time.Time
		sc := bufio.NewScanner(res.Body)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "data: ") {
				at = append(at, time.Now())
			}
		}
		res.Body.Close()
		if res.Header.Get("Content-Type") != "text/event-stream" || len(at) != 10 || at[9].Sub(at[0]) < 300*time.Millisecond {
			t.Errorf("events: %q, %d events over %v", res.Header.Get("Content-Type"), len(at), at[len(at)-1].Sub(at[0]))
		}

		// WebSocket upgrades pass through.
		wsURL := "ws" + strings.TrimPrefix(c.base, "http") + "/ws?identifier=alpha"
		ws, _, err := websocket.DefaultDialer.Dial(wsURL, http.Header{"Authorization": {"Bearer " + c.token}})
		if err != nil {
			t.Fatalf("websocket: %v", err)
		}
		big := bytes.Repeat([]byte("0123456789abcdef"), 64<<10)
		for _, m := range []struct {
			t int
			b []byte
		}{{websocket.TextMessage, []byte("hello")}, {websocket.BinaryMessage, big}} {
			if err := ws.WriteMessage(m.t, m.b); err != nil {
				t.Fatal(err)
			}
			_ = ws.SetReadDeadline(time.Now().Add(30 * time.Second))
			mt, b, err := ws.ReadMessage()
			if err != nil || mt != m.t || !bytes.Equal(b, m.b) {
				t.Errorf("websocket echo of %d bytes: type %d, %d bytes, %v", len(m.b), mt, len(b), err)
			}
		}
		ws.Close()

		// Bad input: clear errors, the session unharmed.
		for _, tc := range []struct {
			name, req string
			status    int
		}{
			{"dot segments", "GET " + path + "/../api-runc/executions?identifier=alpha HTTP/1.1", 400},
			{"encoded dot segments", "GET " + path + "/%2e%2e/x?identifier=alpha HTTP/1.1", 400},
			{"encoded slash", "GET " + path + "/a%2F..%2Fb?identifier=alpha HTTP/1.1", 400},
			{"encoded NUL", "GET " + path + "/a%00b?identifier=alpha HTTP/1.1", 400},
			{"no identifier", "GET " + path + "/count HTTP/1.1", 400},
			{"bad identifier", "GET " + path + "/count?identifier=" + strings.Repeat("x", 200) + " HTTP/1.1", 400},
			{"no token", "GET " + path + "/count?identifier=alpha HTTP/1.1\nAuthorization:", 401},
		} {
			req := tc.req + "\nHost: HOST\nConnection: close\n"
			if !strings.Contains(req, "Authorization:") {
				req += "Authorization: Bearer TOKEN\n"
			}
			resp, body := c.raw(t, req+"\n")
			if resp.StatusCode != tc.status || !strings.Contains(string(body), `"code"`) {
				t.Errorf("%s: %d %s", tc.name, resp.StatusCode, body)
			}
		}
		resp, _ = c.raw(t, "GET "+path+"/count?identifier=alpha HTTP/1.1\nHost: HOST\nAuthorization: Bearer TOKEN\nX-Big: "+strings.Repeat("x", 80<<10)+"\nConnection: close\n\n")
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("oversized headers: %d", resp.StatusCode)
		}
		// A body framed twice reaches the container framed once (chunked
		// wins, as RFC 9112 says), so nothing is smuggled past its end.
		resp, body = c.raw(t, "POST "+path+"/echo?identifier=alpha HTTP/1.1\nHost: HOST\nAuthorization: Bearer TOKEN\nContent-Length: 3\nTransfer-Encoding: chunked\nConnection: close\n\n5\nhello\n0\n\nGET /count HTTP/1.1\n\n")
		if resp.StatusCode != 200 || string(body) != "hello" {
			t.Errorf("Content-Length with Transfer-Encoding: %d %q", resp.StatusCode, body)
		}
		// A container that never answers: 504 at the ingress timeout.
		t0 = time.Now()
		r = c.get("/hang?identifier=alpha")
		want(t, r, http.StatusGatewayTimeout, "upstream_timeout")
		if d := time.Since(t0); d < 2*time.Second || d > 15*time.Second {
			t.Errorf("hang answered after %v: want the 3 s ingress timeout", d)
		}
		if n := c.count(t, "alpha"); n != 3 {
			t.Errorf("after the bad requests a's counter is %d, want 3", n)
		}

		// A container that crashes mid-response: the client's read ends at
		// once, the next request learns the session is lost, and the one
		// after gets a new container (Timed: replaced).
		c.count(t, "charlie")
		req, _ = http.NewRequest("GET", c.base+"/crash?identifier=charlie", nil)
		req.Header.Set("Authorization", "Bearer "+c.token)
		t0 = time.Now()
		res, err = http.DefaultClient.Do(req)
		if err == nil {
			_, err = io.Copy(io.Discard, res.Body)
			res.Body.Close()
		}
		if err == nil || time.Since(t0) > 15*time.Second {
			t.Errorf("crash mid-response: %v after %v", err, time.Since(t0))
		}
		var codes []int
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
			r := c.get("/count?identifier=charlie")
			if len(codes) == 0 || codes[len(codes)-1] != r.status {
				codes = append(codes, r.status)
			}
			if r.status == 410 {
				want(t, r, 410, "session_lost")
			}
			if r.status == 200 {
				if !strings.Contains(string(r.body), `"count":1`) {
					t.Errorf("the replacement container has state: %s", r.body)
				}
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if len(codes) < 2 || codes[len(codes)-2] != 410 || codes[len(codes)-1] != 200 {
			t.Errorf("statuses after the crash: %v, want (502...) 410, 200", codes)
		}
	})
}

func TestCustomContainerLifecycle(t *testing.T) {
	t.Run("OnContainerExit", func(t *testing.T) {
		cfg := appConfig(t, pool.OnContainerExit)
		cfg.Lifecycle.MaxAlivePeriodInSeconds = 6
		cfg.Scale.MaxConcurrentSessions = 2
		eachRuntimeApp(t, cfg, func(t *testing.T, e *env) {
			c := e.server(api.Options{}, nil)
			p := e.mgr.Pool(e.cfg.Name)
			c.count(t, "xray")
			c.count(t, "xray")
			if r := c.post("/exit?identifier=xray&code=0", ""); r.status != 200 {
				t.Fatalf("exit: %d %s", r.status, r.body)
			}
			// The session ends with its container; the identifier's next
			// request starts a new one, with no error in between but the
			// gateway's while the container stops.
			for deadline := time.Now().Add(30 * time.Second); ; {
				r := c.get("/count?identifier=xray")
				if r.status == 200 && strings.Contains(string(r.body), `"count":1`) {
					break
				}
				if r.status != 200 && r.status != 502 || time.Now().After(deadline) {
					t.Fatalf("after exit: %d %s", r.status, r.body)
				}
				time.Sleep(100 * time.Millisecond)
			}
			// Capacity as for code-interpreter pools: the third identifier
			// is refused until a session stops.
			c.count(t, "yankee")
			want(t, c.get("/count?identifier=zulu"), http.StatusTooManyRequests, "capacity_exceeded")
			if r := c.post("/.management/stopSession?identifier=yankee", ""); r.status != 200 {
				t.Fatalf("stopSession: %d %s", r.status, r.body)
			}
			if n := c.count(t, "zulu"); n != 1 {
				t.Errorf("z: %d", n)
			}
			// maxAlivePeriodInSeconds ends a session however busy it is.
			time.Sleep(7 * time.Second)
			if n := c.count(t, "zulu"); n != 1 {
				t.Errorf("z after its maximum life: counter %d, want a new container", n)
			}
			if st := p.Status(); st.Allocated != 1 {
				t.Errorf("allocated %d, want 1 (z)", st.Allocated)
			}
		})
	})
	t.Run("Timed", func(t *testing.T) {
		cfg := appConfig(t, pool.Timed)
		cfg.Lifecycle.CooldownPeriodInSeconds = 2
		eachRuntimeApp(t, cfg, func(t *testing.T, e *env) {
			c := e.server(api.Options{}, nil)
			p := e.mgr.Pool(e.cfg.Name)
			c.count(t, "whiskey")
			// A long request keeps the session alive past its cooldown.
			if r := c.get("/events?identifier=whiskey&n=30"); r.status != 200 {
				t.Fatalf("events: %d", r.status)
			}
			if n := c.count(t, "whiskey"); n != 2 {
				t.Errorf("after a 3 s request: counter %d, want 2", n)
			}
			time.Sleep(3500 * time.Millisecond)
			want(t, c.post("/.management/getSession?identifier=whiskey", ""), 404, "not_found")
			if n := c.count(t, "whiskey"); n != 1 {
				t.Errorf("after the cooldown: counter %d, want a new container", n)
			}
			// The warm pool refills.
			for deadline := time.Now().Add(60 * time.Second); p.Status().Ready < 1; time.Sleep(100 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("warm pool not refilled: %+v", p.Status())
				}
			}
		})
	})
}

func TestCustomContainerNeverReady(t *testing.T) {
	cfg := appConfig(t, pool.Timed, pool.EnvVar{Name: "DEMO_NEVER_READY", Value: "1"})
	cfg.CustomContainer.Containers[0].Probes[0].PeriodSeconds = 2
	cfg.CustomContainer.Containers[0].Probes[0].FailureThreshold = 1
	eachRuntimeApp(t, cfg, func(t *testing.T, e *env) {
		c := e.server(api.Options{}, nil)
		p := e.mgr.Pool(e.cfg.Name)
		for deadline := time.Now().Add(90 * time.Second); p.Status().CreationFailures < 2; time.Sleep(100 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("creation failures: %+v", p.Status())
			}
		}
		// A new session is refused at once, saying why.
		t0 := time.Now()
		r := c.get("/count?identifier=november")
		want(t, r, http.StatusServiceUnavailable, "unavailable")
		if d := time.Since(t0); d > 2*time.Second || !strings.Contains(string(r.body), "readiness path did not answer 2xx") {
			t.Errorf("after %v: %s", d, r.body)
		}
		var pools struct {
			Value []struct {
				State struct {
					CreationFailures int
					LastError        string
				}
			}
		}
		if err := json.Unmarshal(c.root().get("/pools").body, &pools); err != nil || len(pools.Value) != 1 ||
			!strings.Contains(pools.Value[0].State.LastError, "status 503") {
			t.Errorf("pool status: %+v %v", pools, err)
		}
		if st := p.Status(); st.Ready != 0 || st.Allocated != 0 {
			t.Errorf("status: %+v", st)
		}
	})
}
