package agentproto

import (
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
