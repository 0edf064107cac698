package api

import (
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// bodyGuard bounds the time a request's body may take: the connection's
// read deadline is set when the request starts (Limits.BodyTimeoutSeconds)
// and cleared once the body has been read to its end, so a response that
// takes minutes (an execution) is not cut by it. Routes that stream a body
// on purpose set a later deadline themselves (uploads, forwarding).
//
// Without it, a request announcing a body that never comes holds its
// goroutine and descriptor forever, even one refused before its body is
// read: the server tries to read the rest of the body before it writes
// the refusal.
type bodyGuard struct {
	io.ReadCloser
	rc   *http.ResponseController
	done atomic.Bool // read to its end (or failed): the deadline is gone
}

// guardBody sets the body deadline of r and returns a copy of r with its
// body guarded, and the guard (nil when r has no body). The server's own
// request keeps its body, so the server still sees how much of it was
// read (and closes gracefully after refusing a large one).
func guardBody(w http.ResponseWriter, r *http.Request, timeout time.Duration) (*http.Request, *bodyGuard) {
	if r.Body == nil || r.Body == http.NoBody {
		return r, nil
	}
	g := &bodyGuard{ReadCloser: r.Body, rc: http.NewResponseController(w)}
	_ = g.rc.SetReadDeadline(time.Now().Add(timeout))
	r = r.WithContext(r.Context())
	r.Body = g
	return r, g
}

func (g *bodyGuard) Read(p []byte) (int, error) {
	n, err := g.ReadCloser.Read(p)
	if err != nil && !g.done.Swap(true) {
		if errors.Is(err, io.EOF) {
			// The connection's next read is the server's wait for the
			// client to go away or send its next request.
			_ = g.rc.SetReadDeadline(time.Time{})
		}
	}
	return n, err
}

// unread reports whether the body has not been read to its end: an error
// answered now must close the connection, not wait for the rest.
func (g *bodyGuard) unread() bool { return g != nil && !g.done.Load() }

// extend moves the body deadline of a route that streams its body on
// purpose; zero removes it.
func (g *bodyGuard) extend(until time.Time) {
	if g != nil && !g.done.Load() {
		_ = g.rc.SetReadDeadline(until)
	}
}

// connLimiter caps the connections a listener holds: in all and per remote
// address. A connection over a cap is closed at once, before any byte is
// read, so a flood of idle connections cannot take the server's
// descriptors.
type connLimiter struct {
	net.Listener
	total, perAddr int

	mu     sync.Mutex
	open   int
	byAddr map[string]int
}

// Listener wraps ln with the server's connection caps
// (Limits.MaxConnections, Limits.MaxConnectionsPerAddress).
func (s *Server) Listener(ln net.Listener) net.Listener {
	return &connLimiter{Listener: ln, total: s.limits.MaxConnections, perAddr: s.limits.MaxConnectionsPerAddress, byAddr: map[string]int{}}
}

func (l *connLimiter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		addr := remoteHost(c)
		l.mu.Lock()
		if l.open >= l.total || l.byAddr[addr] >= l.perAddr {
			l.mu.Unlock()
			c.Close()
			continue
		}
		l.open++
		l.byAddr[addr]++
		l.mu.Unlock()
		return &limitedConn{Conn: c, release: sync.OnceFunc(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.open--
			if l.byAddr[addr]--; l.byAddr[addr] <= 0 {
				delete(l.byAddr, addr)
			}
		})}, nil
	}
}

func remoteHost(c net.Conn) string {
	addr := c.RemoteAddr().String()
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}

// limitedConn gives its place back when closed (also after a hijack: the
// WebSocket closes the same net.Conn).
type limitedConn struct {
	net.Conn
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.release()
	return err
}
