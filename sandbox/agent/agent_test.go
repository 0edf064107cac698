package agent_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/sandpool/sandpool/internal/errcode"
	"github.com/sandpool/sandpool/sandbox"
	"github.com/sandpool/sandpool/sandbox/agent"
	"github.com/sandpool/sandpool/sandbox/agentproto"
)

// These tests run the real agent and a real Python kernel (the host's
// python3) in-process, joined to sandbox.Conn by a pipe: the protocol, the
// kernel and the file service without a container. The same behaviour under
// runc and gVisor is tested in sandbox/podman.

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

type harness struct {
	t     *testing.T
	a     *agent.Agent
	dir   string
	conn  *sandbox.Conn
	ctx   context.Context
	stop  context.CancelFunc
	token []byte
	wg    sync.WaitGroup
}

func newHarness(t *testing.T, noIPython bool) *harness {
	t.Helper()
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 is not installed")
	}
	dir := t.TempDir()
	token := make([]byte, agentproto.TokenSize)
	_, _ = rand.Read(token)
	a, err := agent.New(agent.Config{
		DataDir:        dir,
		TokenHash:      agentproto.TokenHash(token),
		NoIPython:      noIPython,
		InterruptGrace: 500 * time.Millisecond,
		Log:            zerolog.Nop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	h := &harness{t: t, a: a, dir: dir, ctx: ctx, stop: stop, token: token}
	h.conn = h.newConn()
	t.Cleanup(func() {
		h.conn.Close()
		stop()
		a.Close()
		h.wg.Wait()
	})
	return h
}

// newConn connects a fresh client, as a restarted server would.
func (h *harness) newConn() *sandbox.Conn {
	return sandbox.NewConn(sandbox.DialFunc(func(ctx context.Context) (io.ReadWriteCloser, error) {
		c1, c2 := net.Pipe()
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			_ = h.a.ServeConn(h.ctx, c2)
		}()
		if err := agentproto.WriteHello(c1, h.token); err != nil {
			return nil, err
		}
		return c1, nil
	}))
}

func (h *harness) exec(code string, timeout time.Duration) (*sandbox.Result, *sandbox.Output) {
	h.t.Helper()
	return h.execWith(sandbox.ExecRequest{Code: code, Timeout: timeout})
}

func (h *harness) execWith(req sandbox.ExecRequest) (*sandbox.Result, *sandbox.Output) {
	h.t.Helper()
	var col sandbox.Collector
	res, err := h.conn.Execute(context.Background(), req, col.Sink())
	if err != nil {
		h.t.Fatalf("Execute(%q): %v", req.Code, err)
	}
	return res, &col.Out
}

func result(out *sandbox.Output) string {
	if out.Result == nil {
		return ""
	}
	return out.Result.Data["text/plain"]
}

func forEachRunner(t *testing.T, f func(t *testing.T, h *harness)) {
	for _, plain := range []bool{false, true} {
		name := "ipython"
		if plain {
			name = "plain"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f(t, newHarness(t, plain))
		})
	}
}

func TestExecuteBasics(t *testing.T) {
	forEachRunner(t, func(t *testing.T, h *harness) {
		tests := []struct {
			name       string
			code       string
			wantStatus sandbox.Status
			wantStdout string
			wantResult string // text/plain
			wantValue  string // JSON
			wantError  string // ename
		}{
			{name: "assign", code: "x = 41", wantStatus: sandbox.StatusOK},
			{name: "state kept", code: "print(x + 1)", wantStatus: sandbox.StatusOK, wantStdout: "42\n"},
			{name: "last expression", code: "x * 2", wantStatus: sandbox.StatusOK, wantResult: "82", wantValue: "82"},
			{name: "string result", code: "'a' + 'b'", wantStatus: sandbox.StatusOK, wantResult: "'ab'", wantValue: `"ab"`},
			{name: "repr result", code: "{'k': [1, 2]}", wantStatus: sandbox.StatusOK, wantResult: "{'k': [1, 2]}"},
			{name: "None is no result", code: "None", wantStatus: sandbox.StatusOK},
			{name: "exception", code: "print('before')\n1/0", wantStatus: sandbox.StatusError, wantStdout: "before\n", wantError: "ZeroDivisionError"},
			{name: "syntax error", code: "def (", wantStatus: sandbox.StatusError, wantError: "SyntaxError"},
			{name: "stdin is closed", code: "input()", wantStatus: sandbox.StatusError, wantError: "EOFError"},
			{name: "sys.exit is an error, not a death", code: "import sys; sys.exit(3)", wantStatus: sandbox.StatusError, wantError: "SystemExit"},
			{name: "subprocess output in order", code: "import subprocess\nprint('a')\nsubprocess.run(['echo', 'b'])\nprint('c')", wantStatus: sandbox.StatusOK, wantStdout: "a\nb\nc\n"},
			{name: "still alive", code: "x", wantStatus: sandbox.StatusOK, wantResult: "41", wantValue: "41"},
		}
		for _, tc := range tests {
			res, out := h.exec(tc.code, 20*time.Second)
			if res.Status != tc.wantStatus {
				t.Errorf("%s: status %q, want %q (reason %q, error %+v)", tc.name, res.Status, tc.wantStatus, res.Reason, out.Error)
			}
			if got := string(out.Stdout); got != tc.wantStdout {
				t.Errorf("%s: stdout %q, want %q", tc.name, got, tc.wantStdout)
			}
			gotResult, gotValue := "", ""
			if out.Result != nil {
				gotResult, gotValue = out.Result.Data["text/plain"], string(out.Result.Value)
			}
			if gotResult != tc.wantResult || gotValue != tc.wantValue {
				t.Errorf("%s: result %q value %q, want %q %q", tc.name, gotResult, gotValue, tc.wantResult, tc.wantValue)
			}
			gotErr := ""
			if out.Error != nil {
				gotErr = out.Error.Name
				tb := strings.Join(out.Error.Traceback, "\n")
				if strings.Contains(tb, "\x1b[") {
					t.Errorf("%s: traceback has ANSI codes: %q", tc.name, tb)
				}
				if strings.Contains(tb, "kernel.py") || strings.Contains(tb, "sandpool") {
					t.Errorf("%s: traceback shows kernel internals: %q", tc.name, tb)
				}
			}
			if gotErr != tc.wantError {
				t.Errorf("%s: error %q, want %q", tc.name, gotErr, tc.wantError)
			}
			if res.KernelRestarted {
				t.Errorf("%s: kernel restarted", tc.name)
			}
		}
	})
}

func TestTimeoutInterruptsAndKeepsState(t *testing.T) {
	forEachRunner(t, func(t *testing.T, h *harness) {
		h.exec("keep = 'yes'", 10*time.Second)
		for _, code := range []string{"import time\ntime.sleep(60)", "while True:\n    pass"} {
			start := time.Now()
			res, out := h.exec(code, time.Second)
			if el := time.Since(start); el > 5*time.Second {
				t.Errorf("%q: returned after %s", code, el)
			}
			if res.Status != sandbox.StatusTimeout || res.KernelRestarted {
				t.Errorf("%q: status %q restarted %v, want timeout without restart", code, res.Status, res.KernelRestarted)
			}
			if out.Error == nil || out.Error.Name != "KeyboardInterrupt" {
				t.Errorf("%q: error %+v, want KeyboardInterrupt", code, out.Error)
			}
		}
		_, out := h.exec("keep", 10*time.Second)
		if out.Result == nil || out.Result.Data["text/plain"] != "'yes'" {
			t.Errorf("state lost after interrupt: %+v", out.Result)
		}
	})
}

func TestUninterruptibleCodeRestartsKernel(t *testing.T) {
	h := newHarness(t, false)
	h.exec("lost = 1", 10*time.Second)
	info1, err := h.conn.Info(context.Background(), false, 0)
	if err != nil {
		t.Fatal(err)
	}
	code := "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\ntime.sleep(60)"
	start := time.Now()
	res, _ := h.exec(code, time.Second)
	if el := time.Since(start); el > 10*time.Second {
		t.Errorf("returned after %s", el)
	}
	if res.Status != sandbox.StatusTimeout || !res.KernelRestarted {
		t.Fatalf("status %q restarted %v, want timeout with restart", res.Status, res.KernelRestarted)
	}
	res, out := h.exec("'lost' in globals()", 30*time.Second)
	if res.Status != sandbox.StatusOK || out.Result == nil || out.Result.Data["text/plain"] != "False" {
		t.Errorf("after restart: %q %+v", res.Status, out.Result)
	}
	info2, err := h.conn.Info(context.Background(), false, 0)
	if err != nil {
		t.Fatal(err)
	}
	if info2.Kernel.Generation == info1.Kernel.Generation || info2.Kernel.Restarts != info1.Kernel.Restarts+1 {
		t.Errorf("generation %d->%d restarts %d->%d", info1.Kernel.Generation, info2.Kernel.Generation, info1.Kernel.Restarts, info2.Kernel.Restarts)
	}
}

func TestKernelCrashIsReported(t *testing.T) {
	h := newHarness(t, false)
	res, _ := h.exec("import os\nprint('bye', flush=True)\nos._exit(7)", 10*time.Second)
	if res.Status != sandbox.StatusCrashed || !res.KernelRestarted || !strings.Contains(res.Reason, "exit code 7") {
		t.Fatalf("got %q restarted=%v reason %q", res.Status, res.KernelRestarted, res.Reason)
	}
	res, out := h.exec("print('back')", 30*time.Second)
	if res.Status != sandbox.StatusOK || string(out.Stdout) != "back\n" {
		t.Errorf("after crash: %q %q", res.Status, out.Stdout)
	}
}

func TestOutputFloodIsCapped(t *testing.T) {
	h := newHarness(t, false)
	var col sandbox.Collector
	res, err := h.conn.Execute(context.Background(), sandbox.ExecRequest{
		Code:      "import sys\nfor _ in range(200):\n    sys.stdout.write('x' * 100000)\nprint('done', file=sys.stderr)",
		Timeout:   60 * time.Second,
		MaxOutput: 1 << 20,
	}, col.Sink())
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != sandbox.StatusOK || !res.StdoutTruncated || res.StdoutBytes != 20_000_000 {
		t.Errorf("status %q truncated %v bytes %d", res.Status, res.StdoutTruncated, res.StdoutBytes)
	}
	if len(col.Out.Stdout) != 1<<20 || string(col.Out.Stderr) != "done\n" {
		t.Errorf("kept %d stdout bytes, stderr %q", len(col.Out.Stdout), col.Out.Stderr)
	}
}

func TestOutputStreamsBeforeTheEnd(t *testing.T) {
	h := newHarness(t, false)
	start := time.Now()
	var first time.Duration
	var mu sync.Mutex
	res, err := h.conn.Execute(context.Background(), sandbox.ExecRequest{
		Code: "import time\nprint('a', flush=True)\ntime.sleep(2)\nprint('b')", Timeout: 20 * time.Second,
	}, func(ev sandbox.Event) {
		mu.Lock()
		defer mu.Unlock()
		if ev.Kind == sandbox.EventStdout && first == 0 {
			first = time.Since(start)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if total := time.Since(start); res.Status != sandbox.StatusOK || first == 0 || first > total-time.Second {
		t.Errorf("first chunk after %s of %s", first, total)
	}
}

func TestInterruptAndCancel(t *testing.T) {
	h := newHarness(t, false)
	id := sandbox.NewExecID()
	var once sync.Once
	res, err := h.conn.Execute(context.Background(), sandbox.ExecRequest{ID: id, Code: "import time\nprint('started', flush=True)\ntime.sleep(30)", Timeout: 20 * time.Second},
		func(ev sandbox.Event) {
			if ev.Kind == sandbox.EventStdout {
				once.Do(func() { go h.conn.Interrupt(context.Background(), id) })
			}
		})
	if err != nil || res.Status != sandbox.StatusInterrupted || res.KernelRestarted {
		t.Fatalf("interrupt: %+v %v", res, err)
	}

	// An interrupt that arrives before its execution starts still applies.
	early := sandbox.NewExecID()
	if err := h.conn.Interrupt(context.Background(), early); err != nil {
		t.Fatal(err)
	}
	res, out := h.execWith(sandbox.ExecRequest{ID: early, Code: "import time\ntime.sleep(30)\nran = True", Timeout: 20 * time.Second})
	if res.Status != sandbox.StatusInterrupted || res.KernelRestarted || res.Duration > 10*time.Second {
		t.Fatalf("early interrupt: %+v %+v", res, out.Error)
	}
	if _, out := h.exec("'ran' in globals()", 10*time.Second); result(out) != "False" {
		t.Errorf("the interrupted code ran to the end")
	}

	// An interrupt sent the moment the execution is submitted (the command
	// may not have reached the kernel yet) stops it without a restart.
	h.exec("kept = 1", 10*time.Second)
	for i := 0; i < 5; i++ {
		id := sandbox.NewExecID()
		go func() {
			time.Sleep(time.Duration(i) * 2 * time.Millisecond)
			h.conn.Interrupt(context.Background(), id)
		}()
		res, _ := h.execWith(sandbox.ExecRequest{ID: id, Code: "import time\ntime.sleep(30)", Timeout: 20 * time.Second})
		if res.Status != sandbox.StatusInterrupted || res.KernelRestarted {
			t.Fatalf("immediate interrupt %d: %+v", i, res)
		}
	}
	if _, out := h.exec("kept", 10*time.Second); result(out) != "1" {
		t.Errorf("state after immediate interrupts: %q", result(out))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, err = h.conn.Execute(ctx, sandbox.ExecRequest{Code: "import time\ntime.sleep(30)\ncanceled_ran_on = 1", Timeout: 20 * time.Second}, nil)
	if errcode.Of(err) != errcode.Canceled {
		t.Fatalf("cancel: %v", err)
	}
	// The canceled execution was interrupted: the kernel is free at once.
	start := time.Now()
	res, out = h.exec("'canceled_ran_on' in globals()", 10*time.Second)
	if res.Status != sandbox.StatusOK || result(out) != "False" || time.Since(start) > 5*time.Second {
		t.Errorf("after cancel: %q %q after %s", res.Status, result(out), time.Since(start))
	}
}

func TestReconnectKeepsKernelState(t *testing.T) {
	h := newHarness(t, false)
	h.exec("survivor = 'still here'", 10*time.Second)
	info1, err := h.conn.Info(context.Background(), true, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	h.conn.Close() // the server "dies"
	h.conn = h.newConn()
	_, out := h.exec("survivor", 10*time.Second)
	if out.Result == nil || out.Result.Data["text/plain"] != "'still here'" {
		t.Fatalf("state lost across reconnect: %+v", out.Result)
	}
	info2, err := h.conn.Info(context.Background(), false, 0)
	if err != nil {
		t.Fatal(err)
	}
	if info1.Kernel.Generation != info2.Kernel.Generation || !info2.Kernel.Ready {
		t.Errorf("kernel changed: %+v -> %+v", info1.Kernel, info2.Kernel)
	}
}

func TestFiles(t *testing.T) {
	h := newHarness(t, false)
	ctx := context.Background()
	c := h.conn
	put := func(p, content string) (sandbox.FileInfo, error) {
		return c.Put(ctx, p, strings.NewReader(content), 1<<20)
	}
	if fi, err := put("a.txt", "hello"); err != nil || fi.Size != 5 || fi.Name != "a.txt" || fi.Type != sandbox.FileRegular {
		t.Fatalf("put: %+v %v", fi, err)
	}
	if _, err := put("sub/dir/b.csv", "x,y\n1,2\n"); err != nil {
		t.Fatalf("put nested: %v", err)
	}
	var buf bytes.Buffer
	if fi, err := c.Get(ctx, "sub/dir/b.csv", &buf, 1<<20); err != nil || buf.String() != "x,y\n1,2\n" || fi.Size != 8 {
		t.Fatalf("get: %q %+v %v", buf.String(), fi, err)
	}
	// The kernel sees uploads in its working directory, and vice versa.
	_, out := h.exec("open('a.txt').read() + open('sub/dir/b.csv').read().split()[0]", 10*time.Second)
	if out.Result == nil || out.Result.Data["text/plain"] != "'hellox,y'" {
		t.Errorf("kernel view: %+v", out.Result)
	}
	h.exec("open('made.bin', 'wb').write(bytes(range(256)) * 4)", 10*time.Second)
	buf.Reset()
	if _, err := c.Get(ctx, "made.bin", &buf, 1<<20); err != nil || buf.Len() != 1024 || buf.Bytes()[255] != 255 {
		t.Fatalf("get made.bin: %d %v", buf.Len(), err)
	}
	files, partial, err := c.List(ctx, "")
	if err != nil || partial {
		t.Fatal(err, partial)
	}
	names := map[string]sandbox.FileType{}
	for _, f := range files {
		names[f.Name] = f.Type
	}
	if names["a.txt"] != sandbox.FileRegular || names["sub"] != sandbox.FileDir || names["made.bin"] != sandbox.FileRegular || len(names) != 3 {
		t.Errorf("list: %v", names)
	}
	if err := c.Delete(ctx, "a.txt"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Stat(ctx, "a.txt"); errcode.Of(err) != errcode.NotFound {
		t.Errorf("stat deleted: %v", err)
	}
	if err := c.Delete(ctx, "sub"); errcode.Of(err) != errcode.InvalidArgument {
		t.Errorf("delete non-empty dir: %v", err)
	}
}

func TestFilesRefuseEscapes(t *testing.T) {
	h := newHarness(t, false)
	ctx := context.Background()
	c := h.conn
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("host secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	// User code plants symlinks and a FIFO in its data directory.
	res, out := h.exec(`import os
os.symlink(`+"'"+secret+"'"+`, 'link')
os.symlink('/', 'rootlink')
os.mkfifo('fifo')
os.mkdir('d')`, 10*time.Second)
	if res.Status != sandbox.StatusOK {
		t.Fatalf("plant: %+v %+v", res, out.Error)
	}
	bad := []struct {
		name string
		op   func() error
		want errcode.Code
	}{
		{"dotdot", func() error { _, err := put(c, "../escape", "x"); return err }, errcode.InvalidArgument},
		{"nested dotdot", func() error { _, err := put(c, "d/../../escape", "x"); return err }, errcode.InvalidArgument},
		{"absolute", func() error { _, err := c.Stat(ctx, "/etc/passwd"); return err }, errcode.InvalidArgument},
		{"nul", func() error { _, err := c.Stat(ctx, "a\x00b"); return err }, errcode.InvalidArgument},
		{"get symlink", func() error { _, err := c.Get(ctx, "link", io.Discard, 0); return err }, errcode.InvalidArgument},
		{"through dir symlink", func() error { _, err := c.Get(ctx, "rootlink/etc/passwd", io.Discard, 0); return err }, errcode.InvalidArgument},
		{"put through dir symlink", func() error { _, err := put(c, "rootlink/tmp/x", "x"); return err }, errcode.InvalidArgument},
		{"list through symlink", func() error { _, _, err := c.List(ctx, "rootlink"); return err }, errcode.InvalidArgument},
		{"fifo", func() error { _, err := c.Get(ctx, "fifo", io.Discard, 0); return err }, errcode.InvalidArgument},
		{"directory", func() error { _, err := c.Get(ctx, "d", io.Discard, 0); return err }, errcode.InvalidArgument},
		{"missing", func() error { _, err := c.Get(ctx, "nope", io.Discard, 0); return err }, errcode.NotFound},
		{"too large", func() error {
			_, err := c.Put(ctx, "big", strings.NewReader(strings.Repeat("x", 2000)), 1000)
			return err
		}, errcode.TooLarge},
	}
	for _, tc := range bad {
		start := time.Now()
		if err := tc.op(); errcode.Of(err) != tc.want {
			t.Errorf("%s: got %v (%s), want %s", tc.name, err, errcode.Of(err), tc.want)
		}
		if time.Since(start) > 5*time.Second {
			t.Errorf("%s: took %s", tc.name, time.Since(start))
		}
	}
	// Replacing a symlink replaces the link itself, never its target.
	if _, err := put(c, "link", "overwritten"); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(secret); string(b) != "host secret" {
		t.Errorf("symlink target was written: %q", b)
	}
	if fi, err := c.Stat(ctx, "link"); err != nil || fi.Type != sandbox.FileRegular {
		t.Errorf("link after put: %+v %v", fi, err)
	}
	if fi, err := c.Stat(ctx, "rootlink"); err != nil || fi.Type != sandbox.FileSymlink {
		t.Errorf("stat symlink: %+v %v", fi, err)
	}
	if _, err := os.Stat(filepath.Join(h.dir, "big")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("refused upload left a file: %v", err)
	}
	leftovers, _ := filepath.Glob(filepath.Join(h.dir, ".sandpool-upload-*"))
	if len(leftovers) != 0 {
		t.Errorf("temporary files left: %v", leftovers)
	}
}

func put(c *sandbox.Conn, p, content string) (sandbox.FileInfo, error) {
	return c.Put(context.Background(), p, strings.NewReader(content), 1<<20)
}

func TestInfo(t *testing.T) {
	h := newHarness(t, false)
	info, err := h.conn.Info(context.Background(), true, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	host := sandbox.LocalHost()
	if !info.Kernel.Ready || info.Kernel.Python == "" || info.Identity.Release != host.Release || info.Identity.BootID != host.BootID {
		t.Errorf("info: %+v, host %+v", info, host)
	}
	if got := sandbox.Classify(host, info.Identity); got != sandbox.IsolationContainer {
		t.Errorf("an in-process agent classifies as %q, want container", got)
	}
}

func TestConnectionWithoutTokenIsRefused(t *testing.T) {
	h := newHarness(t, true)
	for _, hello := range [][]byte{nil, []byte("SPA1"), append([]byte("SPA1"), make([]byte, 32)...), []byte("GET / HTTP/1.1\r\n\r\n")} {
		c := sandbox.NewConn(sandbox.DialFunc(func(ctx context.Context) (io.ReadWriteCloser, error) {
			c1, c2 := net.Pipe()
			h.wg.Add(1)
			go func() {
				defer h.wg.Done()
				_ = h.a.ServeConn(h.ctx, c2)
			}()
			go func() { _, _ = c1.Write(hello) }()
			return c1, nil
		}))
		_, err := c.Info(context.Background(), false, 0)
		c.Close()
		if err == nil {
			t.Errorf("hello %q: connection accepted", hello)
		}
	}
	// The real client still works.
	if _, err := h.conn.Info(context.Background(), false, 0); err != nil {
		t.Fatal(err)
	}
}

// TestAppMode: a custom container's agent runs the application instead of
// a kernel, reports its port, relays app.dial streams to it, and reports
// its exit.
func TestAppMode(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 is not installed")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "hello.txt"), []byte("hi from the app"), 0o644); err != nil {
		t.Fatal(err)
	}
	token := make([]byte, agentproto.TokenSize)
	_, _ = rand.Read(token)
	a, err := agent.New(agent.Config{
		DataDir: dir, TokenHash: agentproto.TokenHash(token), Log: zerolog.Nop(),
		AppArgv: []string{"python3", "-m", "http.server", "--bind", "127.0.0.1", fmt.Sprint(port)},
		AppPort: port, AppDir: dir,
	})
	if err != nil {
		t.Fatal(err)
	}
	serveCtx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	conn := sandbox.NewConn(sandbox.DialFunc(func(context.Context) (io.ReadWriteCloser, error) {
		c1, c2 := net.Pipe()
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = a.ServeConn(serveCtx, c2)
		}()
		return c1, agentproto.WriteHello(c1, token)
	}))
	t.Cleanup(func() { conn.Close(); stop(); a.Close(); wg.Wait() })

	info, err := conn.Info(context.Background(), true, 20*time.Second)
	if err != nil || info.App == nil || !info.App.Listening {
		t.Fatalf("info: %+v %v", info.App, err)
	}
	for i := 0; i < 3; i++ { // several connections, one after another
		c, err := conn.DialApp(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "GET /hello.txt HTTP/1.0\r\n\r\n")
		b, err := io.ReadAll(c)
		c.Close()
		if err != nil || !strings.HasSuffix(string(b), "hi from the app") {
			t.Fatalf("GET through app.dial: %q %v", b, err)
		}
	}
	if _, err := conn.Execute(context.Background(), sandbox.ExecRequest{Code: "1", Timeout: time.Second}, nil); errcode.Of(err) != errcode.Unavailable {
		t.Errorf("execute without a kernel: %v", err)
	}
	// The application exits: the agent says so.
	c, err := conn.DialApp(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	select {
	case <-a.AppExited():
		t.Fatal("exited early")
	default:
	}
	a.Close()
	select {
	case <-a.AppExited():
	case <-time.After(10 * time.Second):
		t.Fatal("the application outlived the agent")
	}
}

// TestDialWithoutApp: a Python sandbox has no application to dial.
func TestDialWithoutApp(t *testing.T) {
	h := newHarness(t, true)
	if _, err := h.conn.DialApp(context.Background()); errcode.Of(err) != errcode.InvalidArgument {
		t.Errorf("dial in a Python sandbox: %v", err)
	}
}
