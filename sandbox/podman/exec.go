package podman

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// startExec attaches to a created exec session over a connection of our own
// and returns its stdio as one stream. The podman bindings hijack the
// connection of a shared client and ignore cancellation; owning the socket
// gives deadlines, a Close that really ends the stream, and no data races.
func startExec(ctx context.Context, socket, sessionID string) (*execStream, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return nil, err
	}
	uc := c.(*net.UnixConn)
	ok := false
	defer func() {
		if !ok {
			uc.Close()
		}
	}()
	if dl, has := ctx.Deadline(); has {
		_ = uc.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = uc.SetDeadline(time.Now()) })
	defer stop()

	body := `{"Detach":false,"Tty":false}`
	req, err := http.NewRequest(http.MethodPost, "http://d/v4.0.0/libpod/exec/"+sessionID+"/start", strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "tcp")
	if err := req.Write(uc); err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(uc, 64<<10)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols && resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		return nil, &apiError{status: resp.StatusCode, msg: strings.TrimSpace(string(msg))}
	}
	if !stop() {
		return nil, ctx.Err()
	}
	_ = uc.SetDeadline(time.Time{})
	ok = true
	return &execStream{conn: uc, br: br, stderr: &tailBuffer{max: 1024}}, nil
}

// apiError is a non-success answer of the podman API.
type apiError struct {
	status int
	msg    string
}

func (e *apiError) Error() string { return fmt.Sprintf("podman API: %d: %s", e.status, e.msg) }

// execStream is the stdio of an exec session: writes go to its stdin, reads
// return its stdout (podman multiplexes stdout and stderr in frames with an
// 8-byte header; stderr is kept aside for diagnostics).
type execStream struct {
	conn *net.UnixConn
	br   *bufio.Reader

	rmu       sync.Mutex
	remaining int
	stderr    *tailBuffer

	closeOnce sync.Once
}

// Read implements io.Reader over the exec's stdout.
func (s *execStream) Read(p []byte) (int, error) {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	for s.remaining == 0 {
		var hdr [8]byte
		if _, err := io.ReadFull(s.br, hdr[:]); err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				err = io.EOF
			}
			return 0, err
		}
		n := int(binary.BigEndian.Uint32(hdr[4:]))
		switch hdr[0] {
		case 1:
			s.remaining = n
		case 0, 2, 3:
			// stdin echo, stderr or a service error: keep the tail for
			// diagnostics and go on.
			if _, err := io.CopyN(s.stderr, s.br, int64(n)); err != nil {
				return 0, io.EOF
			}
			if hdr[0] == 3 {
				return 0, fmt.Errorf("podman exec: %s", s.stderr.String())
			}
		default:
			return 0, fmt.Errorf("podman exec: bad stream id %d", hdr[0])
		}
	}
	if len(p) > s.remaining {
		p = p[:s.remaining]
	}
	n, err := s.br.Read(p)
	s.remaining -= n
	if err != nil && errors.Is(err, io.EOF) && s.remaining > 0 {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// Write implements io.Writer to the exec's stdin.
func (s *execStream) Write(p []byte) (int, error) { return s.conn.Write(p) }

// Close ends the exec: its stdin sees EOF and the connection closes.
func (s *execStream) Close() error {
	s.closeOnce.Do(func() {
		_ = s.conn.CloseWrite()
		_ = s.conn.Close()
	})
	return nil
}

// Stderr returns what the exec wrote to stderr lately.
func (s *execStream) Stderr() string { return s.stderr.String() }
