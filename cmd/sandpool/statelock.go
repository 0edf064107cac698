package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"

	"github.com/sandpool/sandpool/internal/statedir"
)

// defaultStateDir is serve's state directory; an embedded `sandpool mcp`
// uses the slots under mcpStateBase instead.
const defaultStateDir = "/var/lib/sandpool"

// mcpSlots is how many embedded `sandpool mcp` processes (one per desktop
// application, say) can run at once on the default state directories.
const mcpSlots = 16

// mcpStateBase holds the default state directories of embedded `sandpool
// mcp` processes, one per slot (a variable for tests).
var mcpStateBase = filepath.Join(defaultStateDir, "mcp")

// lockState takes the exclusive lock of the configuration's state
// directory, held until the returned lock is closed: two processes on one
// state directory (and so one server id) would each adopt and reap the
// other's sandboxes. For an embedded `sandpool mcp` without a configured
// state directory it takes the first free slot under mcpStateBase, and
// without a configured server id it derives one from the directory; both
// are filled in s.
func lockState(s *serverConfig) (*statedir.Lock, error) {
	if s.StateDir != "" || !s.embedded {
		l, err := statedir.Acquire(s.StateDir)
		if err != nil {
			return nil, err
		}
		if s.ServerID == "" {
			s.ServerID = embeddedServerID(s.StateDir)
		}
		return l, nil
	}
	for n := range mcpSlots {
		dir := filepath.Join(mcpStateBase, strconv.Itoa(n))
		l, err := statedir.Acquire(dir)
		if errors.Is(err, statedir.ErrLocked) {
			continue
		}
		if err != nil {
			return nil, err
		}
		s.StateDir = dir
		if s.ServerID == "" {
			s.ServerID = embeddedServerID(dir)
		}
		return l, nil
	}
	return nil, fmt.Errorf("%w: all %d default state directories of sandpool mcp (%s/0..%d) are in use; set server.stateDir and server.serverId",
		statedir.ErrLocked, mcpSlots, mcpStateBase, mcpSlots-1)
}

// embeddedServerID is the default server id of an embedded `sandpool mcp`
// on state directory dir: stable across its restarts (it adopts its own
// sandboxes), distinct from serve's and from other directories'.
func embeddedServerID(dir string) string {
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	h := sha256.Sum256([]byte(dir))
	return "sandpool-mcp-" + hex.EncodeToString(h[:4])
}
