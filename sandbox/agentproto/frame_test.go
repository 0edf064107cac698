package agentproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
)

func TestFrameRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	msgs := []struct {
		t FrameType
		p []byte
	}{{FrameMsg, []byte(`{"type":"ok"}`)}, {FrameStdout, []byte("out")}, {FrameData, bytes.Repeat([]byte{1}, ChunkSize)}, {FrameStderr, nil}}
	for _, m := range msgs {
		if err := WriteFrame(&buf, m.t, m.p); err != nil {
			t.Fatal(err)
		}
	}
	r := NewReader(&buf, 0)
	for _, m := range msgs {
		ft, p, err := r.Next()
		if err != nil || ft != m.t || !bytes.Equal(p, m.p) {
			t.Fatalf("got %q %q %v, want %q", ft, p, err, m.t)
		}
	}
	if _, _, err := r.Next(); err != io.EOF {
		t.Errorf("end: %v", err)
	}
}

func TestFrameLimits(t *testing.T) {
	if err := WriteFrame(io.Discard, FrameData, make([]byte, MaxFrame)); !errors.Is(err, ErrFrameTooLarge) {
		t.Errorf("writing an oversized frame: %v", err)
	}
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"announces too much", binary.BigEndian.AppendUint32(nil, MaxFrame+1), ErrFrameTooLarge},
		{"announces 4 GiB", []byte{0xff, 0xff, 0xff, 0xff}, ErrFrameTooLarge},
		{"empty frame", []byte{0, 0, 0, 0}, ErrBadFrame},
		{"unknown type", []byte{0, 0, 0, 1, 'Z'}, ErrBadFrame},
		{"truncated", []byte{0, 0, 0, 9, 'M', '{'}, io.ErrUnexpectedEOF},
	}
	for _, tc := range tests {
		_, _, err := NewReader(bytes.NewReader(tc.in), 0).Next()
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	// A reader with a smaller limit refuses what fits MaxFrame.
	var buf bytes.Buffer
	_ = WriteFrame(&buf, FrameData, make([]byte, 100))
	if _, _, err := NewReader(&buf, 50).Next(); !errors.Is(err, ErrFrameTooLarge) {
		t.Errorf("reader limit: %v", err)
	}
}

func TestSplitPath(t *testing.T) {
	ok := map[string][]string{"": nil, ".": nil, "a": {"a"}, "a/b.txt": {"a", "b.txt"}, "dir/": {"dir"}, "ünï cødé.csv": {"ünï cødé.csv"}, "a..b": {"a..b"}}
	for in, want := range ok {
		got, err := SplitPath(in)
		if err != nil || len(got) != len(want) {
			t.Errorf("SplitPath(%q) = %q, %v", in, got, err)
		}
	}
	for _, bad := range []string{"..", "../x", "a/../../b", "/etc/passwd", "a//b", "./a", "a/./b", "a\x00b", "a\nb", "a\\b", "\xff", string(make([]byte, MaxPathBytes+1))} {
		if _, err := SplitPath(bad); err == nil {
			t.Errorf("SplitPath(%q) accepted", bad)
		}
	}
}

func TestHello(t *testing.T) {
	token := bytes.Repeat([]byte{7}, TokenSize)
	var buf bytes.Buffer
	if err := WriteHello(&buf, token); err != nil {
		t.Fatal(err)
	}
	if err := ReadHello(bytes.NewReader(buf.Bytes()), TokenHash(token)); err != nil {
		t.Errorf("valid hello: %v", err)
	}
	other := TokenHash(bytes.Repeat([]byte{8}, TokenSize))
	for _, in := range [][]byte{buf.Bytes()[:10], nil, append([]byte("XXXX"), token...)} {
		if err := ReadHello(bytes.NewReader(in), TokenHash(token)); !errors.Is(err, ErrBadHello) {
			t.Errorf("hello %q: %v", in, err)
		}
	}
	if err := ReadHello(bytes.NewReader(buf.Bytes()), other); !errors.Is(err, ErrBadHello) {
		t.Errorf("wrong token: %v", err)
	}
}
