package agentproto

import (
	"encoding/binary"
	"io"
	"time"

	"github.com/hashicorp/yamux"
)

// YamuxConfig is the multiplexer configuration both ends use. Keepalives
// detect a dead bridge within seconds; a peer that stops reading for
// ConnectionWriteTimeout loses the connection; yamux never logs.
func YamuxConfig() *yamux.Config {
	cfg := yamux.DefaultConfig()
	cfg.LogOutput = io.Discard
	cfg.EnableKeepAlive = true
	cfg.KeepAliveInterval = 15 * time.Second
	cfg.ConnectionWriteTimeout = 30 * time.Second
	cfg.StreamCloseTimeout = time.Minute
	return cfg
}

// ClientAcceptBacklog is the server's accept backlog. The agent must never
// open a stream (the server drops a connection on which it does), so the
// backlog only bounds what a compromised agent can make the server hold
// before that: this many streams of one receive window each. It also
// bounds the server's streams awaiting the agent's acknowledgement, which
// the agent sends as soon as it accepts them.
const ClientAcceptBacklog = 8

// Client starts the server's end of a session over conn.
func Client(conn io.ReadWriteCloser) (*yamux.Session, error) {
	cfg := YamuxConfig()
	cfg.AcceptBacklog = ClientAcceptBacklog
	return yamux.Client(coalesce(conn), cfg)
}

// Server starts the agent's end of a session over conn.
func Server(conn io.ReadWriteCloser) (*yamux.Session, error) {
	return yamux.Server(coalesce(conn), YamuxConfig())
}

// coalescer merges yamux frames into fewer writes: a data frame's header
// with its body (yamux writes them separately), and the frame that opens a
// stream with the request that always follows it. On a stdio stream relayed
// by podman, and under gVisor where every syscall is costly, each write
// saved is latency saved. Only yamux's single send loop writes to it; a
// held frame goes out with the next write (at the latest a keepalive).
type coalescer struct {
	io.ReadWriteCloser
	held []byte
	buf  []byte
}

// yamux frame header fields.
const (
	hdrSize           = 12
	typeData          = 0
	typeWindow        = 1
	flagSYN    uint16 = 1
)

func coalesce(c io.ReadWriteCloser) io.ReadWriteCloser { return &coalescer{ReadWriteCloser: c} }

func (c *coalescer) Write(p []byte) (int, error) {
	if len(p) == hdrSize {
		hold := (p[1] == typeData && binary.BigEndian.Uint32(p[8:]) > 0) || // a body follows
			(p[1] == typeWindow && binary.BigEndian.Uint16(p[2:])&flagSYN != 0) // a request follows
		if hold {
			c.held = append(c.held, p...)
			return len(p), nil
		}
	}
	if len(c.held) == 0 {
		return c.ReadWriteCloser.Write(p)
	}
	c.buf = append(append(c.buf[:0], c.held...), p...)
	held := len(c.held)
	c.held = c.held[:0]
	n, err := c.ReadWriteCloser.Write(c.buf)
	return max(n-held, 0), err
}
