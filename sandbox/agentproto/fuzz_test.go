package agentproto

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// FuzzSplitPathSegments checks SplitPath on arbitrary strings: it never
// panics, and what it accepts is valid UTF-8 without backslashes or C0
// control characters, not absolute, at most
// MaxPathBytes long, and splits into segments that are neither empty nor
// "." nor "..", hold no "/" or NUL, are at most MaxNameBytes each and join
// back to the path (less one trailing slash). FuzzSplitPath in
// frame_test.go checks the segments only.
func FuzzSplitPathSegments(f *testing.F) {
	for _, s := range []string{
		"a/b.txt",
		"dir/",
		"ünï cødé.csv",
		"..",
		"a/../../b",
		"%2e%2e/x",
		"/etc/passwd",
		"a//b",
		"a\\b",
		"\xff",
		"a\u2028b",
		strings.Repeat("n", MaxNameBytes) + "/" + strings.Repeat("n", MaxNameBytes+1),
		strings.Repeat("ab/", MaxPathBytes/3) + "c",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		segs, err := SplitPath(p)
		if err != nil {
			if segs != nil {
				t.Fatalf("SplitPath(%q) returned segments with its error", p)
			}
			if !strings.HasPrefix(err.Error(), "invalid file path") {
				t.Fatalf("SplitPath(%q): error %q", p, err)
			}
			return
		}
		if p == "" || p == "." {
			if segs != nil {
				t.Fatalf("SplitPath(%q) = %q, want no segments", p, segs)
			}
			return
		}
		if len(p) > MaxPathBytes || !utf8.ValidString(p) || strings.HasPrefix(p, "/") || strings.Contains(p, "\\") {
			t.Fatalf("SplitPath accepted %q", p)
		}
		for _, r := range p {
			// C0, DEL and C1 (C1 passed until this fuzzer found it).
			if unicode.IsControl(r) {
				t.Fatalf("SplitPath accepted %q with the control character %U", p, r)
			}
		}
		total := 0
		for _, s := range segs {
			if s == "" || s == "." || s == ".." || strings.ContainsAny(s, "/\x00") || len(s) > MaxNameBytes {
				t.Fatalf("SplitPath(%q) accepted the segment %q", p, s)
			}
			total += len(s)
		}
		if total+len(segs)-1 > MaxPathBytes {
			t.Fatalf("SplitPath(%q): segments of %d bytes in all", p, total)
		}
		if j := strings.Join(segs, "/"); j != strings.TrimSuffix(p, "/") {
			t.Fatalf("SplitPath(%q) = %q, which joins to %q", p, segs, j)
		}
	})
}

// FuzzFrameReader feeds arbitrary bytes to Reader.Next under an arbitrary
// limit. It never panics; every frame it returns has a known type and fits
// the limit (type byte included); it fails only with ErrFrameTooLarge,
// ErrBadFrame, io.EOF (at a frame boundary) or io.ErrUnexpectedEOF; and
// the frames it returns, written again with WriteFrame, are exactly the
// bytes it consumed.
func FuzzFrameReader(f *testing.F) {
	var stream bytes.Buffer
	_ = WriteFrame(&stream, FrameMsg, []byte(`{"type":"done","done":{"status":"ok"}}`))
	_ = WriteFrame(&stream, FrameStdout, []byte("hello\n"))
	_ = WriteFrame(&stream, FrameStderr, nil)
	_ = WriteFrame(&stream, FrameData, bytes.Repeat([]byte{0}, 100))
	for _, in := range [][]byte{
		stream.Bytes(),
		nil,
		{0, 0},
		{0, 0, 0, 0},
		{0, 0, 0, 1, 'Z'},
		{0xff, 0xff, 0xff, 0xff, 'M'},
		binary.BigEndian.AppendUint32(nil, MaxFrame+1),
		append(binary.BigEndian.AppendUint32(nil, MaxFrame), 'D'),
		{0, 0, 0, 9, 'M', '{'},
	} {
		f.Add(in, 0)
	}
	f.Add(stream.Bytes(), 40) // the message frame is over the limit
	f.Add(stream.Bytes(), 1)
	f.Add(stream.Bytes(), -1)
	f.Add(stream.Bytes(), MaxFrame+1)
	f.Fuzz(func(t *testing.T, in []byte, max int) {
		limit := max
		if limit <= 0 || limit > MaxFrame {
			limit = MaxFrame
		}
		r := NewReader(bytes.NewReader(in), max)
		var again bytes.Buffer
		for {
			ft, p, err := r.Next()
			if err != nil {
				checkFrameErr(t, err)
				switch {
				case err == io.EOF && !bytes.Equal(again.Bytes(), in):
					t.Fatalf("io.EOF after %d of %d bytes", again.Len(), len(in))
				case !bytes.HasPrefix(in, again.Bytes()):
					t.Fatalf("the frames read do not re-encode to the input")
				}
				return
			}
			if !ft.valid() || len(p)+1 > limit {
				t.Fatalf("frame of type %q with %d bytes passed a %d-byte limit", ft, len(p), limit)
			}
			if err := WriteFrame(&again, ft, p); err != nil {
				t.Fatalf("re-encoding a frame of %d bytes: %v", len(p), err)
			}
		}
	})
}

// FuzzReadMsg feeds arbitrary bytes to ReadMsg, and to DecodeMsg as a
// payload. Neither panics; ReadMsg fails only as Reader.Next does, and
// both refuse a payload that is not a message with ErrBadFrame. A message
// they accept re-encodes, and decoding that gives the same message.
func FuzzReadMsg(f *testing.F) {
	var stream bytes.Buffer
	_ = WriteMsg(&stream, &Message{Type: MsgDone, Done: &Done{Status: StatusOK, DurationMS: 12}})
	_ = WriteMsg(&stream, &Message{Type: MsgResult, Data: map[string]string{"text/plain": "2"}, Value: json.RawMessage(`2`)})
	_ = WriteFrame(&stream, FrameStdout, []byte("not a message"))
	f.Add(stream.Bytes())
	for _, s := range []string{
		`{"type":"files","files":[{"name":"ü","type":"file","size":1,"mtime":"2024-01-02T03:04:05.123+01:00"}],"partial":true}`,
		`{"type":"failed","code":"bad_path","message":"\u0000\ud800"}`,
		`{"type":"result","value":{"a":[1,"<&>"]}}`,
		`{"type":"file","file":{"mtime":"10000-01-01T00:00:00Z"}}`,
		`{"type":"end","size":1e3}`,
		`[`,
		`null`,
	} {
		var b bytes.Buffer
		_ = WriteFrame(&b, FrameMsg, []byte(s))
		f.Add(b.Bytes())
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		r := NewReader(bytes.NewReader(in), 0)
		for {
			m, err := ReadMsg(r)
			if err != nil {
				checkFrameErr(t, err)
				break
			}
			checkReencode(t, m)
		}
		m, err := DecodeMsg(in)
		if err != nil {
			if !errors.Is(err, ErrBadFrame) {
				t.Fatalf("DecodeMsg: %v is not ErrBadFrame", err)
			}
			return
		}
		checkReencode(t, m)
	})
}

// checkFrameErr fails unless err is one of the errors a frame reader may
// return on a byte stream.
func checkFrameErr(t *testing.T, err error) {
	t.Helper()
	for _, want := range []error{ErrFrameTooLarge, ErrBadFrame, io.EOF, io.ErrUnexpectedEOF} {
		if errors.Is(err, want) {
			return
		}
	}
	t.Fatalf("unexpected error %v (%T)", err, err)
}

// checkReencode fails unless m encodes, and decodes back to what encodes
// the same.
func checkReencode(t *testing.T, m *Message) {
	t.Helper()
	if m == nil {
		t.Fatal("nil message without an error")
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatalf("an accepted message does not encode: %v", err)
	}
	m2, err := DecodeMsg(b)
	if err != nil {
		t.Fatalf("a re-encoded message does not decode: %v\n%s", err, b)
	}
	b2, err := json.Marshal(m2)
	if err != nil || !bytes.Equal(b, b2) {
		t.Fatalf("message changed in a round trip (%v):\n%s\n%s", err, b, b2)
	}
}
