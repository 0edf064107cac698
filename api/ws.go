package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/time/rate"

	"github.com/sandpool/sandpool/api/wire"
	"github.com/sandpool/sandpool/internal/errcode"
	"github.com/sandpool/sandpool/pool"
	"github.com/sandpool/sandpool/sandbox"
)

// The WebSocket streaming protocol (GET /pools/{pool}/ws?identifier=...):
// JSON text messages, documented in the README.
const (
	// WSSubprotocol is the protocol a client asks for (see wire).
	WSSubprotocol = wire.WSSubprotocol

	wsPongWait   = 60 * time.Second
	wsPingEvery  = 25 * time.Second
	wsWriteWait  = 10 * time.Second
	wsStallLimit = 15 * time.Second // a reader that takes nothing for this long is dropped
	// wsMaxQueued executions wait behind the running one; more are refused.
	wsMaxQueued = 8
	// wsMaxPending bounds the bytes of events waiting for a slow reader;
	// stdout and stderr chunks coalesce up to wsChunk while they wait.
	wsMaxPending = 4 << 20
	wsChunk      = 64 << 10
	// wsReadSlack is what an execute message may hold beside its code.
	wsReadSlack = 64 << 10
	// A client may send wsBadBurst bad messages at once, then one per
	// wsBadEvery; past that it is flooding, and is dropped (1008).
	wsBadBurst = 32
	wsBadEvery = 100 * time.Millisecond
)

type (
	wsIn  = wire.WSRequest
	wsOut = wire.WSMessage
)

// msgSize is about how many bytes m takes while it waits.
func msgSize(m *wsOut) int {
	n := 64 + len(m.Text) + len(m.Evalue) + len(m.Message) + len(m.Reason)
	for k, v := range m.Data {
		n += len(k) + len(v)
	}
	for _, l := range m.Traceback {
		n += len(l)
	}
	return n
}

func failureMsg(id string, err error) wsOut {
	return wsOut{Type: "failure", ID: id, Code: string(errcode.Of(err)), Message: errcode.Public(err)}
}

// wsAuth lets a browser authenticate with a subprotocol: a WebSocket
// upgrade without an Authorization header that offers "bearer.<token>" is
// treated as if it carried "Authorization: Bearer <token>".
func wsAuth(r *http.Request) *http.Request {
	if r.Header.Get("Authorization") != "" || !websocket.IsWebSocketUpgrade(r) {
		return r
	}
	for _, p := range websocket.Subprotocols(r) {
		if tok, ok := strings.CutPrefix(p, wire.WSBearerPrefix); ok && tok != "" {
			r = r.Clone(r.Context())
			r.Header.Set("Authorization", "Bearer "+tok)
			return r
		}
	}
	return r
}

var upgrader = websocket.Upgrader{
	Subprotocols:      []string{WSSubprotocol},
	ReadBufferSize:    16 << 10,
	WriteBufferSize:   32 << 10,
	HandshakeTimeout:  10 * time.Second,
	EnableCompression: false,
	// CheckOrigin nil: a browser's Origin must match the Host, so another
	// site's page cannot use a visitor's credentials.
}

// outbox holds the events waiting for the connection's writer, bounded by
// wsMaxPending bytes.
type outbox struct {
	mu    sync.Mutex
	msgs  []wsOut
	bytes int
	ready chan struct{} // something to write
	space chan struct{} // the writer took messages
	// dropped is closed when the connection must end with a close frame
	// of code and reason: a push waited past wsStallLimit, or the client
	// flooded bad messages.
	dropped chan struct{}
	once    sync.Once
	code    int
	reason  string
}

func newOutbox() *outbox {
	return &outbox{ready: make(chan struct{}, 1), space: make(chan struct{}, 1), dropped: make(chan struct{})}
}

// drop asks the writer to end the connection with code and reason; the
// first call wins.
func (o *outbox) drop(code int, reason string) {
	o.once.Do(func() {
		o.code, o.reason = code, reason
		close(o.dropped)
	})
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// push queues m. Output chunks join the previous chunk of the same stream
// and execution while both wait. When wsMaxPending bytes wait, push blocks
// (slowing the execution's output, never growing memory) until the writer
// makes room; a reader that takes nothing for wsStallLimit is dropped.
func (o *outbox) push(ctx context.Context, m wsOut) {
	var deadline <-chan time.Time
	for {
		o.mu.Lock()
		if n := len(o.msgs); n > 0 && (m.Type == "stdout" || m.Type == "stderr") {
			if last := &o.msgs[n-1]; last.Type == m.Type && last.ID == m.ID && len(last.Text)+len(m.Text) <= wsChunk {
				last.Text += m.Text
				o.bytes += len(m.Text)
				o.mu.Unlock()
				signal(o.ready)
				return
			}
		}
		size := msgSize(&m)
		// Every message counts, answers to bad input too (a client that
		// sends garbage and reads nothing must not grow memory); an
		// oversized one goes in alone, so it cannot wait forever.
		if o.bytes+size <= wsMaxPending || len(o.msgs) == 0 {
			o.msgs = append(o.msgs, m)
			o.bytes += size
			o.mu.Unlock()
			signal(o.ready)
			return
		}
		o.mu.Unlock()
		if deadline == nil {
			deadline = time.After(wsStallLimit)
		}
		select {
		case <-o.space:
		case <-deadline:
			o.drop(websocket.ClosePolicyViolation, "the client did not read its messages")
			return
		case <-ctx.Done():
			return
		}
	}
}

func (o *outbox) take() []wsOut {
	o.mu.Lock()
	defer o.mu.Unlock()
	msgs := o.msgs
	o.msgs, o.bytes = nil, 0
	signal(o.space)
	return msgs
}

// wsJob is an execution queued on a connection.
type wsJob struct {
	id      string
	code    string
	timeout time.Duration
}

// wsSession is one WebSocket connection to one session.
type wsSession struct {
	s      *Server
	c      *call
	k      pool.SessionKey
	conn   *websocket.Conn
	out    *outbox
	bad    *rate.Limiter // bad messages
	cancel context.CancelFunc

	mu      sync.Mutex
	queue   []wsJob
	running string
	wake    chan struct{}
}

// serveWS upgrades the request and serves the session over it until either
// side closes. The upgrade holds no in-flight slot of the caller's limit;
// each execution takes one while it runs.
func (s *Server) serveWS(w http.ResponseWriter, r *http.Request, c *call) {
	if !websocket.IsWebSocketUpgrade(r) {
		writeError(w, errcode.New(errcode.InvalidArgument, "this route takes a WebSocket upgrade (GET with Upgrade: websocket)"))
		return
	}
	k, err := c.key("")
	if err != nil {
		writeError(w, err)
		return
	}
	c.session(k)
	closeStream, err := s.limiter.openStream(c.principal)
	if err != nil {
		writeLimited(w, err)
		return
	}
	defer closeStream()
	ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
	defer cancel()
	ws := &wsSession{s: s, c: c, k: k, out: newOutbox(), wake: make(chan struct{}, 1),
		bad: rate.NewLimiter(rate.Every(wsBadEvery), wsBadBurst), cancel: cancel}
	if !s.track(ws) {
		writeError(w, errShuttingDown)
		return
	}
	defer s.untrack(ws)
	conn, err := upgrader.Upgrade(w, r, http.Header{"X-Request-Id": {w.Header().Get("X-Request-Id")}})
	if err != nil {
		return // the upgrader answered the client
	}
	ws.conn = conn
	ws.run(ctx)
}

// run serves the connection until ctx ends or either side closes it. The
// connection keeps its caller's in-flight slot while open (it counts
// against the caller's concurrency), and each execution takes one more.
func (ws *wsSession) run(ctx context.Context) {
	cancel := ws.cancel
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); defer cancel(); ws.writer(ctx) }()
	go func() { defer wg.Done(); defer cancel(); ws.executor(ctx) }()
	go func() {
		// Unblock ReadMessage when the writer or the executor ends the
		// connection (a stalled reader, a write error).
		defer wg.Done()
		<-ctx.Done()
		_ = ws.conn.SetReadDeadline(time.Now())
	}()
	ws.reader(ctx, cancel)
	cancel()
	wg.Wait()
	ws.conn.Close()
}

// reader reads the client's messages until the connection ends.
func (ws *wsSession) reader(ctx context.Context, cancel context.CancelFunc) {
	conn := ws.conn
	conn.SetReadLimit(ws.s.limits.MaxCodeBytes.Bytes() + wsReadSlack)
	_ = conn.SetReadDeadline(time.Now().Add(wsPongWait))
	conn.SetPongHandler(func(string) error { return conn.SetReadDeadline(time.Now().Add(wsPongWait)) })
	for {
		typ, b, err := conn.ReadMessage()
		if err != nil {
			if errors.Is(err, websocket.ErrReadLimit) {
				_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseMessageTooBig, "message too large"), time.Now().Add(time.Second))
			}
			cancel()
			return
		}
		_ = conn.SetReadDeadline(time.Now().Add(wsPongWait))
		var m wsIn
		switch {
		case typ != websocket.TextMessage:
			ws.refuse(ctx, failureMsg("", errcode.New(errcode.InvalidArgument, "send JSON text messages")))
		case json.Unmarshal(b, &m) != nil:
			ws.refuse(ctx, failureMsg("", errcode.New(errcode.InvalidArgument, "the message is not a JSON object of the protocol")))
		default:
			ws.handle(ctx, m)
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// refuse answers a bad message; a client that sends them faster than
// wsBadEvery (past a burst) is dropped with 1008.
func (ws *wsSession) refuse(ctx context.Context, m wsOut) {
	if !ws.bad.Allow() {
		ws.out.drop(websocket.ClosePolicyViolation, "too many invalid messages")
		return
	}
	ws.out.push(ctx, m)
}

func (ws *wsSession) handle(ctx context.Context, m wsIn) {
	id := m.ID
	if id != "" && !validOperationID(id) {
		ws.refuse(ctx, failureMsg("", errcode.New(errcode.InvalidArgument, "id must be 8 to 64 letters, digits or '-'")))
		return
	}
	switch m.Type {
	case "execute":
		if id == "" {
			id = sandbox.NewExecID()
		}
		switch {
		case ws.s.isClosing():
			ws.out.push(ctx, failureMsg(id, errShuttingDown))
			return
		case strings.TrimSpace(m.Code) == "":
			ws.refuse(ctx, failureMsg(id, errcode.New(errcode.InvalidArgument, "code is required")))
			return
		case m.Timeout < 0:
			ws.refuse(ctx, failureMsg(id, errcode.New(errcode.InvalidArgument, "timeout must not be negative")))
			return
		}
		ws.mu.Lock()
		if len(ws.queue) >= wsMaxQueued {
			ws.mu.Unlock()
			ws.refuse(ctx, failureMsg(id, errcode.Newf(errcode.Busy, "%d executions are already waiting on this connection", wsMaxQueued)))
			return
		}
		pos := len(ws.queue)
		if ws.running != "" {
			pos++
		}
		ws.queue = append(ws.queue, wsJob{id: id, code: m.Code, timeout: time.Duration(m.Timeout * float64(time.Second))})
		ws.mu.Unlock()
		ws.out.push(ctx, wsOut{Type: "queued", ID: id, Position: &pos})
		signal(ws.wake)
	case "interrupt":
		ws.mu.Lock()
		running := ws.running
		for i, j := range ws.queue {
			if j.id == id {
				ws.queue = append(ws.queue[:i], ws.queue[i+1:]...)
				ws.mu.Unlock()
				zero := int64(0)
				ws.out.push(ctx, wsOut{Type: "done", ID: id, Status: string(sandbox.StatusInterrupted), DurationMs: &zero, Reason: "interrupted before it started"})
				return
			}
		}
		ws.mu.Unlock()
		if running == "" || id != "" && id != running {
			ws.out.push(ctx, failureMsg(id, errcode.New(errcode.NotFound, "no such execution is running or waiting")))
			return
		}
		if err := ws.c.pool.Interrupt(ctx, ws.k, running); err != nil {
			ws.out.push(ctx, failureMsg(running, err))
		}
	default:
		ws.refuse(ctx, failureMsg(id, errcode.New(errcode.InvalidArgument, `unknown message type; use "execute" or "interrupt"`)))
	}
}

// executor runs the queued executions one after another.
func (ws *wsSession) executor(ctx context.Context) {
	for {
		if ws.s.isClosing() {
			// The server is shutting down: the running execution (if
			// any) has finished; those waiting never start.
			ws.mu.Lock()
			queued := ws.queue
			ws.queue = nil
			ws.mu.Unlock()
			for _, j := range queued {
				ws.out.push(ctx, failureMsg(j.id, errShuttingDown))
			}
			return
		}
		ws.mu.Lock()
		var job wsJob
		ok := len(ws.queue) > 0
		if ok {
			job, ws.queue = ws.queue[0], ws.queue[1:]
			ws.running = job.id
		}
		ws.mu.Unlock()
		if !ok {
			select {
			case <-ws.wake:
				continue
			case <-ctx.Done():
				return
			}
		}
		last := ws.execute(ctx, job)
		// The execution is over before the client hears so: a message
		// that follows the done sees it gone (queue positions, interrupts).
		ws.mu.Lock()
		ws.running = ""
		ws.mu.Unlock()
		ws.out.push(ctx, last)
		if ctx.Err() != nil {
			return
		}
	}
}

// execute runs job, streaming its events, and returns its last message
// (done or failure) for the executor to send.
func (ws *wsSession) execute(ctx context.Context, job wsJob) wsOut {
	release, err := ws.s.limiter.admit(ws.c.principal)
	if err != nil {
		return failureMsg(job.id, err)
	}
	defer release()
	ws.out.push(ctx, wsOut{Type: "started", ID: job.id})
	sink := func(ev sandbox.Event) {
		m := wsOut{ID: job.id}
		switch ev.Kind {
		case sandbox.EventStdout:
			m.Type, m.Text = "stdout", strings.ToValidUTF8(string(ev.Text), "\uFFFD")
		case sandbox.EventStderr:
			m.Type, m.Text = "stderr", strings.ToValidUTF8(string(ev.Text), "\uFFFD")
		case sandbox.EventDisplay:
			m.Type, m.Data = "display", ev.Data
		case sandbox.EventResult:
			m.Type, m.Data = "result", ev.Data
		case sandbox.EventError:
			m.Type, m.Ename, m.Evalue, m.Traceback = "error", ev.Error.Name, ev.Error.Value, ev.Error.Traceback
		default:
			return
		}
		ws.out.push(ctx, m)
	}
	res, err := ws.c.pool.Execute(ctx, ws.k, sandbox.ExecRequest{ID: job.id, Code: job.code, Timeout: job.timeout}, sink)
	if err != nil {
		return failureMsg(job.id, err)
	}
	ms := res.Duration.Milliseconds()
	return wsOut{Type: "done", ID: job.id, Status: string(res.Status), DurationMs: &ms, Reason: res.Reason,
		StdoutTruncated: res.StdoutTruncated, StderrTruncated: res.StderrTruncated, KernelRestarted: res.KernelRestarted}
}

// writer owns every write to the connection: queued events, and pings.
func (ws *wsSession) writer(ctx context.Context) {
	ping := time.NewTicker(wsPingEvery)
	defer ping.Stop()
	for {
		select {
		case <-ws.out.ready:
			for _, m := range ws.out.take() {
				_ = ws.conn.SetWriteDeadline(time.Now().Add(wsWriteWait))
				if err := ws.conn.WriteJSON(m); err != nil {
					return
				}
			}
		case <-ping.C:
			if err := ws.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(wsWriteWait)); err != nil {
				return
			}
		case <-ws.out.dropped:
			_ = ws.conn.WriteControl(websocket.CloseMessage,
				websocket.FormatCloseMessage(ws.out.code, ws.out.reason), time.Now().Add(time.Second))
			return
		case <-ctx.Done():
			// Flush what is waiting (the last events, a failure), then say goodbye.
			for _, m := range ws.out.take() {
				_ = ws.conn.SetWriteDeadline(time.Now().Add(time.Second))
				if ws.conn.WriteJSON(m) != nil {
					break
				}
			}
			code, reason := websocket.CloseNormalClosure, ""
			select {
			case <-ws.out.dropped:
				code, reason = ws.out.code, ws.out.reason
			default:
				if ws.s.isClosing() {
					code, reason = websocket.CloseGoingAway, "the server is shutting down"
				}
			}
			_ = ws.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(time.Second))
			return
		}
	}
}
