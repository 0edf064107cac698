package api_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/sandpool/sandpool/api"
	"github.com/sandpool/sandpool/internal/inproc"
	"github.com/sandpool/sandpool/internal/podmantest"
	"github.com/sandpool/sandpool/pool"
)

// wsClient is a test client of the streaming endpoint.
type wsClient struct {
	t    testing.TB
	conn *websocket.Conn
}

type wsMsg struct {
	Type       string            `json:"type"`
	ID         string            `json:"id"`
	Text       string            `json:"text"`
	Data       map[string]string `json:"data"`
	Ename      string            `json:"ename"`
	Status     string            `json:"status"`
	DurationMs *int64            `json:"durationMs"`
	Position   *int              `json:"position"`
	Code       string            `json:"code"`
	Message    string            `json:"message"`
	Reason     string            `json:"reason"`
	Restarted  bool              `json:"kernelRestarted"`
	at         time.Time
}

func (c *client) wsURL(identifier string) string {
	return "ws" + strings.TrimPrefix(c.base, "http") + "/ws?identifier=" + identifier
}

// dialWS connects with the token in a header (or, with browser, as a
// subprotocol); it returns the HTTP status when the upgrade is refused.
func (c *client) dialWS(t testing.TB, identifier string, browser bool) (*wsClient, int) {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second, Subprotocols: []string{api.WSSubprotocol}}
	h := http.Header{}
	if browser {
		d.Subprotocols = append(d.Subprotocols, "bearer."+c.token)
	} else if c.token != "" {
		h.Set("Authorization", "Bearer "+c.token)
	}
	conn, res, err := d.Dial(c.wsURL(identifier), h)
	if err != nil {
		if res != nil {
			return nil, res.StatusCode
		}
		t.Fatal(err)
	}
	if conn.Subprotocol() != api.WSSubprotocol {
		t.Fatalf("subprotocol %q", conn.Subprotocol())
	}
	t.Cleanup(func() { conn.Close() })
	return &wsClient{t: t, conn: conn}, http.StatusSwitchingProtocols
}

func (w *wsClient) send(v any) {
	w.t.Helper()
	if err := w.conn.WriteJSON(v); err != nil {
		w.t.Fatal(err)
	}
}

func (w *wsClient) read() (wsMsg, error) {
	_ = w.conn.SetReadDeadline(time.Now().Add(2 * time.Minute))
	var m wsMsg
	_, b, err := w.conn.ReadMessage()
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(b, &m); err != nil {
		w.t.Fatalf("not JSON: %q", b)
	}
	m.at = time.Now()
	return m, nil
}

// until reads messages up to and including the done (or failure) of id.
func (w *wsClient) until(id string) []wsMsg {
	w.t.Helper()
	var out []wsMsg
	for {
		m, err := w.read()
		if err != nil {
			w.t.Fatalf("reading until %s: %v (got %v)", id, err, out)
		}
		out = append(out, m)
		if m.ID == id && (m.Type == "done" || m.Type == "failure") {
			return out
		}
	}
}

func (w *wsClient) exec(id, code string) []wsMsg {
	w.send(map[string]any{"type": "execute", "id": id, "code": code})
	return w.until(id)
}

// drain runs code and counts the stdout bytes it streams, keeping none.
func (w *wsClient) drain(id, code string) int {
	w.send(map[string]any{"type": "execute", "id": id, "code": code})
	n := 0
	for {
		m, err := w.read()
		if err != nil {
			w.t.Fatal(err)
		}
		n += len(m.Text)
		if m.ID == id && (m.Type == "done" || m.Type == "failure") {
			return n
		}
	}
}

// types lists the message types, a run of output chunks of one stream
// (which may come split as printed) counting once.
func types(ms []wsMsg) string {
	var t []string
	for _, m := range ms {
		if n := len(t); n > 0 && t[n-1] == m.Type && (m.Type == "stdout" || m.Type == "stderr") {
			continue
		}
		t = append(t, m.Type)
	}
	return strings.Join(t, ",")
}

func stdout(ms []wsMsg) string {
	var b strings.Builder
	for _, m := range ms {
		if m.Type == "stdout" {
			b.WriteString(m.Text)
		}
	}
	return b.String()
}

func TestWebSocket(t *testing.T) {
	eachRuntime(t, pool.Config{Scale: pool.ScaleConfig{MaxConcurrentSessions: 4, ReadySessionInstances: ptr(1)},
		Execution: pool.ExecutionConfig{MaxOutput: 64 << 20}}, testWebSocket)
}

// testWebSocket tests the protocol over e's pool: auth, event order,
// streaming, order of executions, interrupt, bad input, a full queue, a
// slow reader, an oversized frame, a close mid-execution.
func testWebSocket(t *testing.T, e *env) {
	c := e.server(api.Options{}, nil)

	// Auth: a header or a browser's subprotocol; nothing else.
	anon := *c
	anon.token = ""
	if _, st := anon.dialWS(t, "ws-session", false); st != http.StatusUnauthorized {
		t.Fatalf("no token: %d", st)
	}
	bad := *c
	bad.token = "wrong-key-0123456789"
	if _, st := bad.dialWS(t, "ws-session", true); st != http.StatusUnauthorized {
		t.Fatalf("wrong token: %d", st)
	}
	if _, st := c.dialWS(t, "no", false); st != http.StatusBadRequest {
		t.Fatalf("bad identifier: %d", st)
	}
	if r := c.get("/ws?identifier=ws-session"); r.status != http.StatusBadRequest {
		t.Fatalf("plain GET: %d", r.status)
	}
	w, _ := c.dialWS(t, "ws-session", true)

	// Event order: queued, started, output, error, done.
	ms := w.exec("exec-0001", "print('a')\nimport sys\nprint('b', file=sys.stderr)\n1/0")
	if got := types(ms); got != "queued,started,stdout,stderr,error,done" {
		t.Fatalf("events: %s", got)
	}
	if last := ms[len(ms)-1]; last.Status != "error" || last.DurationMs == nil || ms[len(ms)-2].Ename != "ZeroDivisionError" || *ms[0].Position != 0 {
		t.Fatalf("done: %+v", ms)
	}
	ms = w.exec("exec-0002", "x = 5\nx")
	if r := ms[len(ms)-2]; r.Type != "result" || r.Data["text/plain"] != "5" {
		t.Fatalf("result: %+v", ms)
	}
	if code, ok := figureCode(e); ok {
		ms = w.exec("exec-0003", code)
		if d := ms[len(ms)-2]; d.Type != "display" || !strings.HasPrefix(d.Data["image/png"], "iVBOR") {
			t.Fatalf("display: %s", types(ms))
		}
	}

	// The first chunk comes as it is printed, well before the end.
	ms = w.exec("exec-0004", "import time\nprint('a', flush=True)\ntime.sleep(2)\nprint('b')")
	var first, done time.Time
	for _, m := range ms {
		if m.Type == "stdout" && first.IsZero() {
			first = m.at
		}
		if m.Type == "done" {
			done = m.at
		}
	}
	if gap := done.Sub(first); gap < 1500*time.Millisecond {
		t.Fatalf("the first chunk came %v before the end", gap)
	}

	// Several executions on one connection run in order.
	for i := 1; i <= 3; i++ {
		w.send(map[string]any{"type": "execute", "id": fmt.Sprintf("order-%04d", i), "code": fmt.Sprintf("import time\ntime.sleep(0.2)\nprint(%d)", i)})
	}
	var order []string
	for len(order) < 3 {
		m, err := w.read()
		if err != nil {
			t.Fatal(err)
		}
		if m.Type == "done" {
			order = append(order, m.ID)
		}
		if m.Type == "queued" && m.ID == "order-0003" && *m.Position != 2 {
			t.Fatalf("position of the third: %d", *m.Position)
		}
	}
	if strings.Join(order, ",") != "order-0001,order-0002,order-0003" {
		t.Fatalf("order: %v", order)
	}

	// Interrupt: the cell stops, the state before it stays.
	w.send(map[string]any{"type": "execute", "id": "sleeper-01", "code": "import time\ntime.sleep(30)\nx = 'late'"})
	for m, _ := w.read(); m.Type != "started"; m, _ = w.read() {
	}
	t0 := time.Now()
	w.send(map[string]any{"type": "interrupt", "id": "sleeper-01"})
	ms = w.until("sleeper-01")
	if last := ms[len(ms)-1]; last.Status != "interrupted" || last.Restarted || time.Since(t0) > 10*time.Second {
		t.Fatalf("interrupt: %+v after %v", last, time.Since(t0))
	}
	if ms := w.exec("after-int1", "print(x)"); stdout(ms) != "5\n" {
		t.Fatalf("after interrupt: %+v", ms)
	}

	// Bad input: each a failure message; the connection goes on.
	for _, raw := range []string{"not json", `{"type":"dance"}`, `{"type":"execute","code":""}`, `{"type":"execute","id":"bad id!","code":"1"}`,
		`{"type":"interrupt","id":"nothing-running"}`, `{"type":"execute","code":"1","timeout":-1}`} {
		if err := w.conn.WriteMessage(websocket.TextMessage, []byte(raw)); err != nil {
			t.Fatal(err)
		}
		m, err := w.read()
		if err != nil || m.Type != "failure" || m.Code == "" || m.Message == "" {
			t.Fatalf("%s: %+v %v", raw, m, err)
		}
	}
	w.conn.WriteMessage(websocket.BinaryMessage, []byte{1, 2, 3})
	if m, _ := w.read(); m.Type != "failure" || m.Code != "invalid_argument" {
		t.Fatalf("binary: %+v", m)
	}
	// A full queue: with one running, the ninth waiting execution is refused.
	w.send(map[string]any{"type": "execute", "id": "queue-runs", "code": "import time\ntime.sleep(1)"})
	for m, _ := w.read(); m.Type != "started"; m, _ = w.read() {
	}
	for i := 0; i < 9; i++ {
		w.send(map[string]any{"type": "execute", "id": fmt.Sprintf("queue-%04d", i), "code": "import time\ntime.sleep(0.3)"})
	}
	busy := 0
	for dones := 0; dones+busy < 10; {
		m, err := w.read()
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case m.Type == "failure" && m.Code == "busy":
			busy++
		case m.Type == "done":
			dones++
		}
	}
	if busy != 1 {
		t.Fatalf("%d refused, want 1 (one running, 8 waiting)", busy)
	}

	// A slow reader: 50 MB printed while the client reads nothing for
	// 3 s, then reads slowly; everything arrives, and the server's heap
	// stays far below what passed through.
	held := watchLiveHeap()
	w.send(map[string]any{"type": "execute", "id": "flood-0001", "code": "import sys\nfor _ in range(50000): sys.stdout.write('z' * 1000 + '\\n')"})
	time.Sleep(3 * time.Second)
	got, n := 0, 0
	for {
		m, err := w.read()
		if err != nil {
			t.Fatal(err)
		}
		n++
		got += len(m.Text)
		if n%50 == 0 {
			time.Sleep(time.Millisecond) // a slow reader
		}
		if m.Type == "done" {
			break
		}
	}
	grew := held()
	if got != 50000*1001 || n >= 50000 {
		t.Fatalf("slow reader got %d bytes in %d messages", got, n)
	}
	if grew > 40<<20 {
		t.Fatalf("the heap grew by %d MiB while 50 MB streamed to a slow reader", grew>>20)
	}

	// An oversized frame closes the connection with 1009.
	w.conn.WriteMessage(websocket.TextMessage, []byte(`{"type":"execute","code":"`+strings.Repeat("#", 2<<20)+`"}`))
	var ce *websocket.CloseError
	for {
		_, err := w.read()
		if err != nil {
			if !errors.As(err, &ce) || ce.Code != websocket.CloseMessageTooBig {
				t.Fatalf("oversized frame: %v", err)
			}
			break
		}
	}

	// Closing mid-execution: the session survives.
	w2, _ := c.dialWS(t, "ws-session", false)
	w2.send(map[string]any{"type": "execute", "id": "closing-01", "code": "import time\ntime.sleep(20)"})
	for m, _ := w2.read(); m.Type != "started"; m, _ = w2.read() {
	}
	w2.conn.Close()
	w3, _ := c.dialWS(t, "ws-session", false)
	t0 = time.Now()
	if got := stdout(w3.exec("after-close", "print(x)")); got != "5\n" || time.Since(t0) > 15*time.Second {
		t.Fatalf("after a close mid-execution: %q after %v", got, time.Since(t0))
	}
}

// figureCode is code that shows a figure in e's sandboxes: matplotlib in
// the image; on the in-process engine, a PNG through IPython if the host
// has it (false: no figure can be shown there).
func figureCode(e *env) (string, bool) {
	if !e.inproc {
		return "import matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.show()", true
	}
	return pngCode, inproc.HasIPython()
}

// TestWebSocketStalledReaderAndLeaks: a client that never reads is
// dropped (the session goes on), and connections leave no goroutines.
func TestWebSocketStalledReaderAndLeaks(t *testing.T) {
	e := newEnv(t, podmantest.Runc, pool.Config{Scale: pool.ScaleConfig{MaxConcurrentSessions: 2, ReadySessionInstances: ptr(1)},
		Execution: pool.ExecutionConfig{MaxOutput: 64 << 20, DefaultTimeoutInSeconds: 120}})
	c := e.server(api.Options{}, nil)
	warm, _ := c.dialWS(t, "stall-session", false)
	warm.exec("warm-0001", "y = 1")
	warm.conn.Close()
	time.Sleep(500 * time.Millisecond)
	before := runtime.NumGoroutine()

	w, _ := c.dialWS(t, "stall-session", false)
	// Output without end, and a client that reads nothing for 40 s: the
	// server must have dropped it by then, so reading what was buffered
	// ends in a close, not in a stream that goes on.
	w.send(map[string]any{"type": "execute", "id": "stall-0001", "code": "import sys\nwhile True: sys.stdout.write('s' * 4096)"})
	time.Sleep(40 * time.Second)
	end := time.Now().Add(30 * time.Second)
	for {
		_ = w.conn.SetReadDeadline(end)
		if _, _, err := w.conn.ReadMessage(); err != nil {
			if isTimeout(err) {
				t.Fatal("a client that never read was not dropped: the stream went on")
			}
			break
		}
	}
	w.conn.Close()
	w2, _ := c.dialWS(t, "stall-session", false)
	if msgs := w2.exec("alive-0001", "print(y)"); stdout(msgs) != "1\n" {
		t.Fatalf("session after the stalled client: %q (%+v)", stdout(msgs), msgs)
	}
	w2.conn.Close()
	for deadline := time.Now().Add(10 * time.Second); runtime.NumGoroutine() > before+2; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines: %d before, %d after\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
	}
}

func isTimeout(err error) bool {
	var ne interface{ Timeout() bool }
	return errors.As(err, &ne) && ne.Timeout()
}

// watchLiveHeap samples the live heap (what the last GC kept) every 10 ms
// until the returned func is called, which returns the most it grew.
func watchLiveHeap() func() int64 {
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	live := func() int64 {
		metrics.Read(sample)
		return int64(sample[0].Value.Uint64())
	}
	runtime.GC()
	base := live()
	var peak atomic.Int64
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
				if g := live() - base; g > peak.Load() {
					peak.Store(g)
				}
			}
		}
	}()
	return func() int64 {
		close(stop)
		<-done
		return peak.Load()
	}
}
