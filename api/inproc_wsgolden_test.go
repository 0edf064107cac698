package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/sandpool/sandpool/api"
	"github.com/sandpool/sandpool/pool"
)

// wsRecorder renders what a WebSocket exchange sends and receives for a
// golden file: one line per message, volatile fields replaced, and output
// chunks of one stream joined (how output is cut into chunks depends on
// timing).
type wsRecorder struct {
	t *testing.T
	w *wsClient
	b strings.Builder
	// sent are the ids the client chose; others (the server's) are
	// volatile.
	sent map[string]bool
}

func (r *wsRecorder) step(name, raw string) {
	r.t.Helper()
	fmt.Fprintf(&r.b, "=== %s\n> %s\n", name, raw)
	if err := r.w.conn.WriteMessage(websocket.TextMessage, []byte(raw)); err != nil {
		r.t.Fatal(err)
	}
}

// until records messages up to and including the done or failure of id
// ("" for a failure about no execution).
func (r *wsRecorder) until(id string) {
	r.t.Helper()
	var pending map[string]any // an output chunk not yet written
	flush := func() {
		if pending != nil {
			r.line(pending)
			pending = nil
		}
	}
	for {
		_ = r.w.conn.SetReadDeadline(time.Now().Add(time.Minute))
		_, b, err := r.w.conn.ReadMessage()
		if err != nil {
			r.t.Fatalf("reading until %q: %v\n%s", id, err, r.b.String())
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			r.t.Fatalf("not JSON: %q", b)
		}
		typ, _ := m["type"].(string)
		if typ == "stdout" || typ == "stderr" {
			if pending != nil && pending["type"] == typ && pending["id"] == m["id"] {
				pending["text"] = pending["text"].(string) + m["text"].(string)
				continue
			}
			flush()
			pending = m
			continue
		}
		flush()
		mid, _ := m["id"].(string)
		r.line(m)
		if (mid == id || id == "" && !r.sent[mid]) && (typ == "done" || typ == "failure") {
			r.b.WriteString("\n")
			return
		}
	}
}

// line writes m; ids are the client's own here, not volatile.
func (r *wsRecorder) line(m map[string]any) {
	id, _ := m["id"].(string)
	m = normalizeValue("", m).(map[string]any)
	if r.sent[id] {
		m["id"] = id
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(m); err != nil {
		r.t.Fatal(err)
	}
	fmt.Fprintf(&r.b, "< %s", b.String())
}

// TestInprocWSGolden: the message sequences of the WebSocket protocol
// (output, results, errors, images, timeouts, interrupts, bad input),
// against testdata/ws.golden.
func TestInprocWSGolden(t *testing.T) {
	t.Parallel()
	checkIPython(t)
	e := newInprocEnv(t, pool.Config{Scale: pool.ScaleConfig{MaxConcurrentSessions: 2, ReadySessionInstances: ptr(0)}})
	c := e.server(api.Options{}, nil)
	w, _ := c.dialWS(t, "ws-golden", false)
	r := &wsRecorder{t: t, w: w, sent: map[string]bool{}}
	steps := []struct{ name, id, raw string }{
		{"output and an exception", "exec-0001", `{"type":"execute","id":"exec-0001","code":"print('a')\nimport sys\nprint('b', file=sys.stderr)\n1/0"}`},
		{"a result", "exec-0002", `{"type":"execute","id":"exec-0002","code":"x = 5\nx"}`},
		{"no result", "exec-0003", `{"type":"execute","id":"exec-0003","code":"y = 1"}`},
		{"an image", "exec-0004", `{"type":"execute","id":"exec-0004","code":` + jsonString(pngCode) + `}`},
		{"a timeout", "exec-0005", `{"type":"execute","id":"exec-0005","code":"import time\ntime.sleep(5)","timeout":1}`},
		{"state after the timeout", "exec-0006", `{"type":"execute","id":"exec-0006","code":"print(x)"}`},
		{"not JSON", "", `not json`},
		{"unknown type", "", `{"type":"dance"}`},
		{"no code", "", `{"type":"execute","code":""}`},
		{"bad id", "", `{"type":"execute","id":"bad id!","code":"1"}`},
		{"interrupt of nothing", "nothing-running", `{"type":"interrupt","id":"nothing-running"}`},
		{"negative timeout", "", `{"type":"execute","code":"1","timeout":-1}`},
	}
	for _, s := range steps {
		r.sent[s.id] = s.id != ""
		r.step(s.name, s.raw)
		r.until(s.id)
	}
	// An interrupt: the execution stops, the session goes on.
	r.sent["sleeper-01"] = true
	r.step("interrupted", `{"type":"execute","id":"sleeper-01","code":"import time\nprint('sleeping', flush=True)\ntime.sleep(30)"}`)
	for {
		m, err := w.read()
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&r.b, "< (%s)\n", m.Type)
		if m.Type == "stdout" {
			break
		}
	}
	r.step("interrupt", `{"type":"interrupt","id":"sleeper-01"}`)
	r.until("sleeper-01")
	golden(t, "ws", []byte(r.b.String()))
}
