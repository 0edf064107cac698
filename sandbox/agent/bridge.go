package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Bridge hands in and out (the stdio of a `podman exec` the server started)
// to the agent daemon over its socket, then waits until the daemon is done
// with them. The daemon then reads and writes the exec's stdio itself: no
// relay hop, which matters under gVisor where every syscall is costly. The
// process must live on meanwhile: podman ends the exec session when it exits.
func Bridge(ctx context.Context, in, out *os.File, socket string) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return fmt.Errorf("connect to agent: %w", err)
	}
	uc := c.(*net.UnixConn)
	defer uc.Close()
	rights := unix.UnixRights(int(in.Fd()), int(out.Fd()))
	if _, _, err := uc.WriteMsgUnix([]byte{1}, rights, nil); err != nil {
		return fmt.Errorf("pass stdio to agent: %w", err)
	}
	_, err = io.Copy(io.Discard, uc) // until the daemon closes
	return err
}

// stdioConn is a bridge's stdio, received by the daemon.
type stdioConn struct {
	in, out *os.File
	uc      *net.UnixConn
}

func (s *stdioConn) Read(p []byte) (int, error)        { return s.in.Read(p) }
func (s *stdioConn) Write(p []byte) (int, error)       { return s.out.Write(p) }
func (s *stdioConn) SetReadDeadline(t time.Time) error { return s.in.SetReadDeadline(t) }

// Close closes the stdio and the bridge's socket; the bridge then exits
// and podman ends the exec.
func (s *stdioConn) Close() error {
	return errors.Join(s.in.Close(), s.out.Close(), s.uc.Close())
}

// recvStdio receives the two descriptors a bridge passes.
func recvStdio(uc *net.UnixConn, deadline time.Time) (*stdioConn, error) {
	_ = uc.SetReadDeadline(deadline)
	defer uc.SetReadDeadline(time.Time{})
	buf := make([]byte, 1)
	oob := make([]byte, unix.CmsgSpace(2*4))
	_, oobn, _, _, err := uc.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, err
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return nil, err
	}
	var fds []int
	for i := range msgs {
		if f, err := unix.ParseUnixRights(&msgs[i]); err == nil {
			fds = append(fds, f...)
		}
	}
	for _, fd := range fds {
		// Received descriptors are inheritable: the kernel must not get them.
		unix.CloseOnExec(fd)
	}
	if len(fds) != 2 {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return nil, fmt.Errorf("expected 2 descriptors, got %d", len(fds))
	}
	for _, fd := range fds {
		_ = unix.SetNonblock(fd, true) // pollable: reads get deadlines
	}
	return &stdioConn{in: os.NewFile(uintptr(fds[0]), "bridge-stdin"), out: os.NewFile(uintptr(fds[1]), "bridge-stdout"), uc: uc}, nil
}
