package tools

import (
	"bytes"
	"context"
	"encoding/base64"
	"image"
	"image/color"
	"image/png"
	"io"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/sandpool/sandpool/internal/errcode"
	"github.com/sandpool/sandpool/pool"
)

// fakeBackend plays scripted executions and keeps files in memory.
type fakeBackend struct {
	events  []pool.Event
	result  pool.Result
	err     error
	got     pool.ExecRequest
	files   map[string][]byte
	deleted int
}

func (f *fakeBackend) Execute(_ context.Context, _ pool.SessionKey, req pool.ExecRequest, sink pool.Sink) (*pool.Result, error) {
	f.got = req
	if f.err != nil {
		return nil, f.err
	}
	res := f.result
	for _, ev := range f.events {
		switch ev.Kind {
		case pool.EventStdout:
			res.StdoutBytes += int64(len(ev.Text))
		case pool.EventStderr:
			res.StderrBytes += int64(len(ev.Text))
		}
		// The agent caps output at MaxOutput per stream.
		if ev.Kind == pool.EventStdout && res.StdoutBytes > req.MaxOutput {
			res.StdoutTruncated = true
			ev.Text = ev.Text[:max(0, int64(len(ev.Text))-(res.StdoutBytes-req.MaxOutput))]
		}
		sink(ev)
	}
	return &res, nil
}

func (f *fakeBackend) Put(_ context.Context, _ pool.SessionKey, p string, r io.Reader, max int64) (pool.FileInfo, error) {
	b, _ := io.ReadAll(io.LimitReader(r, max+1))
	if int64(len(b)) > max {
		return pool.FileInfo{}, errcode.New(errcode.TooLarge, "too large")
	}
	f.files[p] = b
	return pool.FileInfo{Name: p, Size: int64(len(b)), Type: pool.FileRegular}, nil
}

func (f *fakeBackend) Get(_ context.Context, _ pool.SessionKey, p string, w io.Writer, max int64) (pool.FileInfo, error) {
	b, ok := f.files[p]
	if !ok {
		return pool.FileInfo{}, errcode.New(errcode.NotFound, "no such file")
	}
	if int64(len(b)) > max {
		return pool.FileInfo{}, errcode.New(errcode.TooLarge, "too large")
	}
	w.Write(b)
	return pool.FileInfo{Name: p, Size: int64(len(b)), Type: pool.FileRegular}, nil
}

func (f *fakeBackend) List(context.Context, pool.SessionKey, string) ([]pool.FileInfo, bool, error) {
	var out []pool.FileInfo
	for n, b := range f.files {
		out = append(out, pool.FileInfo{Name: n, Size: int64(len(b)), Type: pool.FileRegular, ModTime: time.Unix(0, 0)})
	}
	// Sorted, as a listing of the agent's would be stable; the map is not.
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, false, nil
}

func (f *fakeBackend) Remove(_ context.Context, _ pool.SessionKey, p string) error {
	if _, ok := f.files[p]; !ok {
		return errcode.New(errcode.NotFound, "no such file")
	}
	delete(f.files, p)
	return nil
}

func (f *fakeBackend) Delete(context.Context, pool.SessionKey) error {
	f.deleted++
	return errcode.New(errcode.NotFound, "no session")
}

func newFake() *fakeBackend { return &fakeBackend{files: map[string][]byte{}} }

func texts(r Result) string { return r.JoinText() }

func pngOf(t *testing.T, w, h int, noisy bool) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	r := rand.New(rand.NewPCG(1, 2))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			c := color.RGBA{uint8(x), uint8(y), 100, 255}
			if noisy {
				c = color.RGBA{uint8(r.IntN(256)), uint8(r.IntN(256)), uint8(r.IntN(256)), 255}
			}
			img.Set(x, y, c)
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestCallArguments(t *testing.T) {
	s := NewService(newFake(), Limits{MaxTimeout: 30 * time.Second})
	tests := []struct {
		tool string
		args map[string]any
		want string
	}{
		{ExecutePython, nil, `"code" is required`},
		{ExecutePython, map[string]any{"code": 42}, `"code" must be a string, not a number`},
		{ExecutePython, map[string]any{"code": "x", "timeout": "10"}, `"timeout" must be a number, not a string`},
		{ExecutePython, map[string]any{"code": "x", "timeout": 0.5}, "timeout must be at least 1 second"},
		{ExecutePython, map[string]any{"code": "x", "identifier": "someone-else"}, `unknown argument(s) "identifier"`},
		{ExecutePython, map[string]any{"code": "   "}, "code is empty"},
		{ExecutePython, map[string]any{"code": strings.Repeat("x", 2<<20)}, "above the limit of 1.0 MiB"},
		{UploadFile, map[string]any{"name": "a.txt"}, `"content" is required`},
		{UploadFile, map[string]any{"name": "a.bin", "content": "!!!", "encoding": "base64"}, "not valid base64"},
		{UploadFile, map[string]any{"name": "a.bin", "content": "x", "encoding": "rot13"}, `encoding must be "text" or "base64"`},
		{UploadFile, map[string]any{"name": "../etc/passwd", "content": "x"}, "the file name is not allowed"},
		{UploadFile, map[string]any{"name": "/etc/passwd", "content": "x"}, "the file name is not allowed"},
		{UploadFile, map[string]any{"name": "a\x00b", "content": "x"}, "the file name is not allowed"},
		{DownloadFile, map[string]any{"name": "/mnt/data/../x"}, "the file name is not allowed"},
		{DownloadFile, map[string]any{"name": ""}, "the file name is empty"},
		{DeleteFile, map[string]any{}, `"name" is required`},
		{"rm_rf", nil, `unknown tool "rm_rf"`},
	}
	for _, tc := range tests {
		r := s.Call(context.Background(), pool.SessionKey{}, tc.tool, tc.args, nil)
		if !r.IsError || !strings.Contains(texts(r), tc.want) {
			t.Errorf("%s %v: got %v %q, want an error containing %q", tc.tool, tc.args, r.IsError, texts(r), tc.want)
		}
	}
}

func TestTimeoutIsCapped(t *testing.T) {
	f := newFake()
	s := NewService(f, Limits{MaxTimeout: 30 * time.Second, DefaultTimeout: 10 * time.Second})
	for _, tc := range []struct {
		args map[string]any
		want time.Duration
	}{
		{map[string]any{"code": "x"}, 10 * time.Second},
		{map[string]any{"code": "x", "timeout": 5}, 5 * time.Second},
		{map[string]any{"code": "x", "timeout": 3600.0}, 30 * time.Second},
	} {
		s.Call(context.Background(), pool.SessionKey{}, ExecutePython, tc.args, nil)
		if f.got.Timeout != tc.want {
			t.Errorf("%v: timeout %v, want %v", tc.args, f.got.Timeout, tc.want)
		}
	}
}

func TestRenderExecution(t *testing.T) {
	small := base64.StdEncoding.EncodeToString(pngOf(t, 20, 20, false))
	big := base64.StdEncoding.EncodeToString(pngOf(t, 600, 600, true))
	tests := []struct {
		name    string
		events  []pool.Event
		result  pool.Result
		isError bool
		want    []string
		images  int
	}{
		{"no output", nil, pool.Result{Status: pool.StatusOK}, false, []string{"(no output"}, 0},
		{"stdout and result", []pool.Event{{Kind: pool.EventStdout, Text: []byte("hi\n")}, {Kind: pool.EventResult, Data: map[string]string{"text/plain": "42"}}},
			pool.Result{Status: pool.StatusOK}, false, []string{"stdout:\nhi\n", "result:\n42"}, 0},
		{"exception", []pool.Event{{Kind: pool.EventStderr, Text: []byte("warn\n")}, {Kind: pool.EventError, Error: &pool.ExecError{Name: "ZeroDivisionError", Value: "division by zero", Traceback: []string{"Traceback (most recent call last):", "ZeroDivisionError: division by zero"}}}},
			pool.Result{Status: pool.StatusError}, true, []string{"stderr:\nwarn", "error:\nTraceback", "ZeroDivisionError: division by zero"}, 0},
		{"timeout", nil, pool.Result{Status: pool.StatusTimeout}, true, []string{"timeout: the execution ran past its 30s limit", "variables defined before it are kept"}, 0},
		{"kernel restarted", nil, pool.Result{Status: pool.StatusTimeout, KernelRestarted: true}, true, []string{"kernel was restarted: variables and imports are gone"}, 0},
		{"survivors", nil, pool.Result{Status: pool.StatusOK, Killed: 2}, false, []string{"2 background process(es)"}, 0},
		{"flood", []pool.Event{{Kind: pool.EventStdout, Text: bytes.Repeat([]byte("ab"), 50_000)}}, pool.Result{Status: pool.StatusOK}, false,
			[]string{"[truncated: showing the first 1.0 KiB of 97.7 KiB"}, 0},
		{"figures", []pool.Event{{Kind: pool.EventDisplay, Data: map[string]string{"image/png": small, "text/plain": "<Figure>"}}, {Kind: pool.EventDisplay, Data: map[string]string{"text/plain": "a table"}}},
			pool.Result{Status: pool.StatusOK}, false, []string{"display:\na table"}, 1},
		{"too many figures", []pool.Event{{Kind: pool.EventDisplay, Data: map[string]string{"image/png": small}}, {Kind: pool.EventDisplay, Data: map[string]string{"image/png": small}}, {Kind: pool.EventDisplay, Data: map[string]string{"image/png": small}}},
			pool.Result{Status: pool.StatusOK}, false, []string{"1 more figure(s) were not returned (at most 2 per call)"}, 2},
		{"big figure", []pool.Event{{Kind: pool.EventDisplay, Data: map[string]string{"image/png": big}}}, pool.Result{Status: pool.StatusOK}, false,
			[]string{"a 600x600 figure", "was downscaled"}, 1},
		{"bad figure", []pool.Event{{Kind: pool.EventDisplay, Data: map[string]string{"image/png": "not base64!"}}}, pool.Result{Status: pool.StatusOK}, false,
			[]string{"not valid base64"}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			f.events, f.result = tc.events, tc.result
			s := NewService(f, Limits{MaxTimeout: 30 * time.Second, DefaultTimeout: 30 * time.Second, MaxTextBytes: 1 << 10, MaxImages: 2, MaxImageBytes: 300 << 10})
			r := s.Execute(context.Background(), pool.SessionKey{}, ExecuteArgs{Code: "x"}, nil)
			if r.IsError != tc.isError {
				t.Errorf("IsError %v, want %v", r.IsError, tc.isError)
			}
			got := texts(r)
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("no %q in %q", w, got)
				}
			}
			n := 0
			for _, c := range r.Content {
				if c.Kind == Image {
					n++
					if len(c.Data) > 300<<10 {
						t.Errorf("image of %d bytes above the limit", len(c.Data))
					}
					if _, err := png.DecodeConfig(bytes.NewReader(c.Data)); err != nil {
						t.Errorf("image is not a PNG: %v", err)
					}
				}
			}
			if n != tc.images {
				t.Errorf("%d images, want %d", n, tc.images)
			}
		})
	}
}

func TestFitPNGRefusesHugeCanvas(t *testing.T) {
	// A PNG header declaring 100000x100000 pixels: refused before decoding.
	var b bytes.Buffer
	png.Encode(&b, image.NewGray(image.Rect(0, 0, 1, 1)))
	raw := b.Bytes()
	// IHDR width and height live at bytes 16..24; the CRC is not checked
	// by DecodeConfig before the size is read.
	copy(raw[16:], []byte{0, 1, 0x86, 0xa0, 0, 1, 0x86, 0xa0})
	if img, note := fitPNG(raw, 10); img != nil || note == "" {
		t.Fatalf("huge canvas: %d bytes, %q", len(img), note)
	}
}

func TestFiles(t *testing.T) {
	f := newFake()
	s := NewService(f, Limits{MaxTextBytes: 200, MaxFileBytes: 1000})
	ctx, k := context.Background(), pool.SessionKey{}
	call := func(tool string, args map[string]any) Result { return s.Call(ctx, k, tool, args, nil) }

	if r := call(UploadFile, map[string]any{"name": "/mnt/data/notes.txt", "content": "hello"}); r.IsError || !strings.Contains(texts(r), "saved /mnt/data/notes.txt (5 bytes)") {
		t.Fatalf("upload: %q", texts(r))
	}
	bin := []byte{0, 1, 2, 255}
	if r := call(UploadFile, map[string]any{"name": "blob.bin", "content": base64.StdEncoding.EncodeToString(bin), "encoding": "base64"}); r.IsError {
		t.Fatalf("binary upload: %q", texts(r))
	}
	if r := call(UploadFile, map[string]any{"name": "big.txt", "content": strings.Repeat("x", 1001)}); !r.IsError || !strings.Contains(texts(r), "above the limit of 1000 bytes") {
		t.Fatalf("big upload: %q", texts(r))
	}
	r := call(DownloadFile, map[string]any{"name": "notes.txt"})
	if r.IsError || len(r.Content) != 1 || r.Content[0].Kind != Resource || r.Content[0].Text != "hello" || r.Content[0].URI != "file:///mnt/data/notes.txt" || r.Content[0].MIMEType != "text/plain" {
		t.Fatalf("text download: %+v", r)
	}
	r = call(DownloadFile, map[string]any{"name": "blob.bin"})
	if r.IsError || len(r.Content) != 2 || !bytes.Equal(r.Content[1].Data, bin) || r.Content[1].MIMEType != "application/octet-stream" {
		t.Fatalf("binary download: %+v", r)
	}
	f.files["huge.csv"] = make([]byte, 2000)
	if r = call(DownloadFile, map[string]any{"name": "huge.csv"}); !r.IsError || !strings.Contains(texts(r), "above the download limit") {
		t.Fatalf("huge download: %q", texts(r))
	}
	if r = call(DownloadFile, map[string]any{"name": "missing.txt"}); !r.IsError || !strings.Contains(texts(r), "(error code: not_found)") {
		t.Fatalf("missing: %q", texts(r))
	}
	if r = call(ListFiles, nil); r.IsError || !strings.Contains(texts(r), "notes.txt\t5\t") {
		t.Fatalf("list: %q", texts(r))
	}
	if r = call(ListFiles, map[string]any{"directory": "../"}); !r.IsError {
		t.Fatalf("list ..: %q", texts(r))
	}
	if r = call(DeleteFile, map[string]any{"name": "notes.txt"}); r.IsError || f.files["notes.txt"] != nil {
		t.Fatalf("delete: %q", texts(r))
	}
	if r = call(ResetSession, nil); r.IsError || f.deleted != 1 {
		t.Fatalf("reset of a missing session: %q", texts(r))
	}
}

func TestBackendErrors(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{pool.ErrCapacity, "(error code: capacity_exceeded)"},
		{pool.ErrSessionLost, "Call the tool again to start a fresh sandbox"},
		{errcode.Wrap(errcode.Unavailable, "the sandbox engine is unavailable", io.EOF), "the sandbox engine is unavailable (error code: unavailable)"},
	} {
		f := newFake()
		f.err = tc.err
		r := NewService(f, Limits{}).Execute(context.Background(), pool.SessionKey{}, ExecuteArgs{Code: "x"}, nil)
		if !r.IsError || !strings.Contains(texts(r), tc.want) || strings.Contains(texts(r), "EOF") {
			t.Errorf("%v: %q", tc.err, texts(r))
		}
	}
}

func TestDefsAreValidSchemas(t *testing.T) {
	s := NewService(newFake(), Limits{MaxTimeout: 90 * time.Second})
	seen := map[string]bool{}
	for _, d := range s.Defs() {
		if seen[d.Name] || d.Description == "" || !bytes.Contains(d.Schema, []byte(`"type":"object"`)) || !bytes.Contains(d.Schema, []byte(`"additionalProperties":false`)) {
			t.Errorf("%s: %s", d.Name, d.Schema)
		}
		seen[d.Name] = true
		for _, bad := range []string{"identifier", "session", "container"} {
			if bytes.Contains(d.Schema, []byte(`"`+bad)) {
				t.Errorf("%s takes a %s argument", d.Name, bad)
			}
		}
	}
	if !bytes.Contains(s.Defs()[0].Schema, []byte(`"maximum":90`)) {
		t.Errorf("the timeout maximum is not the pool's: %s", s.Defs()[0].Schema)
	}
}
