// Package agentproto is the wire protocol between the sandpool server and the
// in-sandbox agent: frame encoding, message types and the limits both ends
// enforce. It is a leaf (standard library and yamux) imported by both ends, so the
// framing cannot drift. spec.md in this directory is the normative description.
package agentproto

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// FrameType tags a frame's payload.
type FrameType byte

// Frame types.
const (
	// FrameMsg carries one JSON-encoded Message.
	FrameMsg FrameType = 'M'
	// FrameStdout carries raw bytes the kernel wrote to standard output.
	FrameStdout FrameType = 'O'
	// FrameStderr carries raw bytes the kernel wrote to standard error.
	FrameStderr FrameType = 'E'
	// FrameData carries raw file content.
	FrameData FrameType = 'D'
)

func (t FrameType) valid() bool {
	switch t {
	case FrameMsg, FrameStdout, FrameStderr, FrameData:
		return true
	}
	return false
}

// ErrFrameTooLarge is returned when a frame header announces a payload above
// the reader's limit. The stream cannot be resynchronised afterwards.
var ErrFrameTooLarge = errors.New("agentproto: frame too large")

// ErrBadFrame is returned for a frame with an unknown type or an empty body.
var ErrBadFrame = errors.New("agentproto: malformed frame")

// WriteFrame writes one frame: a 4-byte big-endian length of what follows,
// the type byte, then the payload. It issues a single Write so that frames
// written by one goroutine are never interleaved on a stream.
func WriteFrame(w io.Writer, t FrameType, payload []byte) error {
	if len(payload)+1 > MaxFrame {
		return ErrFrameTooLarge
	}
	buf := make([]byte, 5+len(payload))
	binary.BigEndian.PutUint32(buf, uint32(len(payload)+1))
	buf[4] = byte(t)
	copy(buf[5:], payload)
	_, err := w.Write(buf)
	return err
}

// Reader reads frames with a size limit. It is not safe for concurrent use.
type Reader struct {
	r   *bufio.Reader
	max int
	buf []byte
}

// NewReader returns a Reader that refuses frames larger than max bytes
// (type byte included); max <= 0 means MaxFrame.
func NewReader(r io.Reader, max int) *Reader {
	if max <= 0 || max > MaxFrame {
		max = MaxFrame
	}
	return &Reader{r: bufio.NewReaderSize(r, 64<<10), max: max}
}

// Rest is what follows the frames read so far: bytes already buffered,
// then the rest of the underlying reader. A stream that switches from
// frames to raw bytes (app.dial) reads on from Rest.
func (r *Reader) Rest(under io.Reader) io.Reader {
	if n := r.r.Buffered(); n > 0 {
		b, _ := r.r.Peek(n)
		return io.MultiReader(bytes.NewReader(bytes.Clone(b)), under)
	}
	return under
}

// Next returns the next frame. The payload is valid until the next call.
// A clean end of stream between frames is io.EOF; a partial frame is
// io.ErrUnexpectedEOF.
func (r *Reader) Next() (FrameType, []byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r.r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := int(binary.BigEndian.Uint32(hdr[:]))
	if n > r.max {
		return 0, nil, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, n, r.max)
	}
	if n < 1 {
		return 0, nil, ErrBadFrame
	}
	if cap(r.buf) < n {
		r.buf = make([]byte, n)
	}
	b := r.buf[:n]
	if _, err := io.ReadFull(r.r, b); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	t := FrameType(b[0])
	if !t.valid() {
		return 0, nil, fmt.Errorf("%w: type %#x", ErrBadFrame, b[0])
	}
	return t, b[1:], nil
}
