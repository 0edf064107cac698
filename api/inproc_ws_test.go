package api_test

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/sandpool/sandpool/api"
	"github.com/sandpool/sandpool/internal/inproc"
	"github.com/sandpool/sandpool/pool"
)

// TestInprocWebSocket is TestWebSocket over the in-process engine: auth,
// event order, streaming, order of executions, interrupt, bad input, a
// full queue, a slow reader, an oversized frame, a close mid-execution.
//
// Not parallel: it measures the heap while a slow reader is fed.
func TestInprocWebSocket(t *testing.T) {
	{
		e := newInprocEnv(t, pool.Config{Scale: pool.ScaleConfig{MaxConcurrentSessions: 4, ReadySessionInstances: ptr(0)},
			Execution: pool.ExecutionConfig{MaxOutput: 64 << 20}})
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
		if inproc.HasIPython() { // pngCode displays through IPython
			ms = w.exec("exec-0003", pngCode)
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
}
