package mcp

import (
	"context"
	"fmt"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/sandpool/sandpool/pool"
)

// Streaming limits: output is sent in chunks of at most chunkBytes, every
// flushEvery, and at most streamBytes per call (the result holds it all,
// capped, anyway); without output a heartbeat goes every heartbeatEvery.
const (
	chunkBytes     = 8 << 10
	streamBytes    = 1 << 20
	flushEvery     = 100 * time.Millisecond
	heartbeatEvery = time.Second
)

// streamer sends an execution's output while it runs: as progress
// notifications (message = the chunk) when the client sent a progress
// token, and as logging notifications (logger "stdout" or "stderr", level
// info) when the client asked for that level. Both are best effort; the
// tool result is complete on its own.
type streamer struct {
	ctx   context.Context
	srv   *server.MCPServer
	token mcp.ProgressToken
	start time.Time

	mu       sync.Mutex
	pending  [2][]byte // stdout, stderr
	budget   int
	progress int
	sent     bool
	last     time.Time

	stop chan struct{}
	done chan struct{}
}

func newStreamer(ctx context.Context, srv *server.MCPServer, req mcp.CallToolRequest) *streamer {
	st := &streamer{ctx: ctx, srv: srv, start: time.Now(), budget: streamBytes, stop: make(chan struct{}), done: make(chan struct{})}
	if req.Params.Meta != nil {
		st.token = req.Params.Meta.ProgressToken
	}
	st.last = st.start
	go st.run()
	return st
}

func (st *streamer) sink(ev pool.Event) {
	i := 0
	switch ev.Kind {
	case pool.EventStdout:
	case pool.EventStderr:
		i = 1
	default:
		return
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	n := min(len(ev.Text), st.budget)
	st.pending[i] = append(st.pending[i], ev.Text[:n]...)
	st.budget -= n
}

func (st *streamer) run() {
	defer close(st.done)
	t := time.NewTicker(flushEvery)
	defer t.Stop()
	for {
		select {
		case <-st.stop:
			st.flush(false)
			return
		case <-st.ctx.Done():
			return
		case <-t.C:
			st.flush(true)
		}
	}
}

// flush sends what is pending, or a heartbeat when nothing was sent for a
// while (beat).
func (st *streamer) flush(beat bool) {
	st.mu.Lock()
	out := st.pending
	st.pending = [2][]byte{}
	st.mu.Unlock()
	sentAny := false
	for i, b := range out {
		logger := [2]string{"stdout", "stderr"}[i]
		for len(b) > 0 {
			n := min(len(b), chunkBytes)
			for n < len(b) && n > 0 && !utf8.RuneStart(b[n]) {
				n--
			}
			if n == 0 {
				n = min(len(b), chunkBytes)
			}
			chunk := string(b[:n])
			b = b[n:]
			sentAny = true
			msg := chunk
			if i == 1 {
				msg = "[stderr] " + chunk
			}
			st.notifyProgress(msg)
			_ = st.srv.SendLogMessageToClient(st.ctx, mcp.NewLoggingMessageNotification(mcp.LoggingLevelInfo, logger, chunk))
		}
	}
	if !sentAny && beat && time.Since(st.last) >= heartbeatEvery {
		st.notifyProgress(fmt.Sprintf("running for %.0f s", time.Since(st.start).Seconds()))
	}
}

func (st *streamer) notifyProgress(msg string) {
	st.last = time.Now()
	if st.token == nil {
		return
	}
	st.progress++
	st.sent = true
	_ = st.srv.SendNotificationToClient(st.ctx, "notifications/progress", map[string]any{
		"progressToken": st.token, "progress": st.progress, "message": msg,
	})
}

// finish sends what is left and waits a moment for the notifications to
// go out before the result does: mcp-go writes notifications from another
// goroutine, and one sent just before the result may otherwise follow it
// or be lost.
func (st *streamer) finish() {
	close(st.stop)
	<-st.done
	if !st.sent {
		return
	}
	if cs := server.ClientSessionFromContext(st.ctx); cs != nil {
		for i := 0; i < 100 && len(cs.NotificationChannel()) > 0; i++ {
			time.Sleep(time.Millisecond)
		}
	}
	time.Sleep(3 * time.Millisecond)
}
