package agent

import (
	"context"
	"fmt"
	"io"
	"net"
)

// Bridge relays in and out to the agent daemon's socket until either side
// ends. It is what the server runs with `podman exec --user <bridge uid>`:
// the exec's stdio becomes the server's connection to the daemon.
func Bridge(ctx context.Context, in io.Reader, out io.Writer, socket string) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return fmt.Errorf("connect to agent: %w", err)
	}
	uc := c.(*net.UnixConn)
	defer uc.Close()
	// Plain buffered copies: io.Copy would splice between the socket and
	// stdio, and gVisor's splice into an exec's stdout fails with
	// ECONNRESET (runsc 20221219).
	go func() {
		_, _ = io.Copy(writerOnly{uc}, readerOnly{in})
		_ = uc.CloseWrite() // the server closed its side: tell the daemon
	}()
	_, err = io.Copy(writerOnly{out}, readerOnly{uc})
	return err
}

// readerOnly and writerOnly hide ReaderFrom/WriterTo from io.Copy.
type readerOnly struct{ io.Reader }

type writerOnly struct{ io.Writer }
