package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
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

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/sandpool/sandpool/internal/podmantest"
	"github.com/sandpool/sandpool/pool"
	"github.com/sandpool/sandpool/sandbox/image"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// binary builds this sandpool command once per test binary: the stdio
// tests run it as a separate process, as Claude Desktop does, so that
// anything written to the real stdout shows.
func binary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "sandpool-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "sandpool")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// stdioPeer drives an MCP stdio server process line by line and checks
// that every line it writes to stdout is a JSON-RPC message.
type stdioPeer struct {
	t      *testing.T
	cmd    *exec.Cmd
	in     io.WriteCloser
	lines  chan map[string]any
	stderr *podmantest.Buffer
	nextID int
}

func startStdio(t *testing.T, env []string, args ...string) *stdioPeer {
	t.Helper()
	cmd := exec.Command(binary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	p := &stdioPeer{t: t, cmd: cmd, in: in, lines: make(chan map[string]any, 100), stderr: &podmantest.Buffer{}}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	go func() {
		defer close(p.lines)
		sc := bufio.NewScanner(out)
		sc.Buffer(nil, 64<<20)
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil || m["jsonrpc"] != "2.0" {
				p.lines <- map[string]any{"stray": sc.Text()}
				continue
			}
			p.lines <- m
		}
	}()
	return p
}

func (p *stdioPeer) send(v map[string]any) {
	p.t.Helper()
	v["jsonrpc"] = "2.0"
	b, _ := json.Marshal(v)
	if _, err := p.in.Write(append(b, '\n')); err != nil {
		p.t.Fatal(err)
	}
}

// request sends a request and returns its response, failing on any stray
// stdout line met on the way (notifications are skipped).
func (p *stdioPeer) request(method string, params map[string]any) map[string]any {
	p.t.Helper()
	p.nextID++
	id := p.nextID
	p.send(map[string]any{"id": id, "method": method, "params": params})
	timeout := time.After(4 * time.Minute)
	for {
		select {
		case m, ok := <-p.lines:
			if !ok {
				p.t.Fatalf("stdout closed before the response to %s; stderr:\n%s", method, p.stderr)
			}
			if s, bad := m["stray"]; bad {
				p.t.Fatalf("a non-protocol line on stdout: %q", s)
			}
			if m["id"] == float64(id) {
				return m
			}
		case <-timeout:
			p.t.Fatalf("no response to %s; stderr:\n%s", method, p.stderr)
		}
	}
}

func (p *stdioPeer) initialize() {
	p.t.Helper()
	r := p.request("initialize", map[string]any{"protocolVersion": "2025-11-25", "capabilities": map[string]any{},
		"clientInfo": map[string]any{"name": "test", "version": "1"}})
	if r["result"] == nil {
		p.t.Fatalf("initialize: %v", r)
	}
	p.send(map[string]any{"method": "notifications/initialized"})
}

// execute runs code and returns the text of the result and isError.
func (p *stdioPeer) execute(code string) (string, bool) {
	p.t.Helper()
	r := p.request("tools/call", map[string]any{"name": "execute_python", "arguments": map[string]any{"code": code}})
	res, _ := r["result"].(map[string]any)
	if res == nil {
		p.t.Fatalf("tools/call: %v", r)
	}
	var b strings.Builder
	for _, c := range res["content"].([]any) {
		if m := c.(map[string]any); m["type"] == "text" {
			b.WriteString(m["text"].(string))
		}
	}
	isErr, _ := res["isError"].(bool)
	return b.String(), isErr
}

// finish closes stdin and waits for a clean exit with nothing more on
// stdout but protocol messages.
func (p *stdioPeer) finish() {
	p.t.Helper()
	p.in.Close()
	for m := range p.lines {
		if s, bad := m["stray"]; bad {
			p.t.Fatalf("a non-protocol line on stdout: %q", s)
		}
	}
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			p.t.Fatalf("exit: %v; stderr:\n%s", err, p.stderr)
		}
	case <-time.After(2 * time.Minute):
		p.t.Fatalf("did not exit after stdin closed; stderr:\n%s", p.stderr)
	}
}

func writeConfig(t *testing.T, serverID, extra string, poolLines ...string) (path, state string) {
	t.Helper()
	rt := podmantest.Runc
	eng := podmantest.Engine(t, rt)
	podmantest.RemoveLabelled(t, eng, map[string]string{pool.LabelServer: serverID})
	state = t.TempDir()
	cfg := fmt.Sprintf(`server:
  stateDir: %s
  serverId: %s
  agent: %s
  engines: {runc: {socket: %s}}
%spools:
  - name: chat
    runtime: runc
    image: %s
%s`, state, serverID, podmantest.Agent(t), eng.Socket(), extra, image.Tag(), poolConfig(poolLines))
	path = filepath.Join(state, "sandpool.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, state
}

// poolConfig is the test pool's scale lines: the default, or lines.
func poolConfig(lines []string) string {
	if len(lines) == 0 {
		return "    scaleConfiguration: {maxConcurrentSessions: 4, readySessionInstances: 1}\n"
	}
	return strings.Join(lines, "")
}

func count(t *testing.T, serverID string) int {
	t.Helper()
	list, err := podmantest.Engine(t, podmantest.Runc).List(context.Background(), map[string]string{pool.LabelServer: serverID})
	if err != nil {
		t.Fatal(err)
	}
	return len(list)
}

// TestMCPStdioEmbedded: `sandpool mcp` with an embedded pool, as Claude
// Desktop runs it: state across calls, only protocol on stdout, and the
// conversation's sandbox released when stdin ends.
func TestMCPStdioEmbedded(t *testing.T) {
	serverID := podmantest.ServerID("mcp-stdio")
	path, _ := writeConfig(t, serverID, "")
	p := startStdio(t, nil, "mcp", "--config", path, "--log-level", "info")
	p.initialize()
	tools := p.request("tools/list", map[string]any{})
	if n := len(tools["result"].(map[string]any)["tools"].([]any)); n != 6 {
		t.Fatalf("%d tools", n)
	}
	if out, isErr := p.execute("import sys\nprint('to stdout?', file=sys.__stdout__)\nn = 5"); isErr {
		t.Fatalf("define: %s", out)
	}
	if out, _ := p.execute("n * 2"); !strings.Contains(out, "10") {
		t.Fatalf("state: %q", out)
	}
	if out, isErr := p.execute("1/0"); !isErr || !strings.Contains(out, "ZeroDivisionError") {
		t.Fatalf("exception: %v %q", isErr, out)
	}
	p.finish()
	// What is left: at most the warm sandbox, not the conversation's.
	if n := count(t, serverID); n > 1 {
		t.Fatalf("%d sandboxes after the conversation ended, want at most the warm one", n)
	}
	if strings.Contains(p.stderr.String(), "n * 2") {
		t.Fatal("code reached the log")
	}
}

// startServe runs `sandpool serve` in process with one runc pool and an
// API key until the test ends, and returns its address.
func startServe(t *testing.T, serverID, key string) string {
	t.Helper()
	return startServeWith(t, serverID, key, "")
}

// startServeWith is startServe with extra server lines and the pool's
// own lines.
func startServeWith(t *testing.T, serverID, key, server string, poolLines ...string) string {
	t.Helper()
	addr := freeAddr(t)
	path, _ := writeConfig(t, serverID, fmt.Sprintf("  listen: %s\n  auth: {apiKeys: [{name: desk, key: %s}]}\n%s", addr, key, server), poolLines...)
	serveConfig(t, path, addr)
	return addr
}

// freeAddr is a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// serveConfig runs `sandpool serve --config path` until the test ends and
// waits until it listens on addr.
func serveConfig(t *testing.T, path, addr string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	// Only the end of serve's log is kept: a soak writes an access log line
	// per request, which must not count as the server's memory.
	serveErr := &podmantest.Buffer{Max: 64 << 10}
	go func() {
		done <- run(ctx, []string{"serve", "--config", path}, strings.NewReader(""), io.Discard, serveErr)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	for deadline := time.Now().Add(3 * time.Minute); ; time.Sleep(200 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not start: %s", serveErr.String())
		}
	}
}

// buildExample builds one of examples/ and returns the binary.
func buildExample(t *testing.T, name string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), name)
	if out, err := exec.Command("go", "build", "-o", bin, "../../examples/"+name).CombinedOutput(); err != nil {
		t.Fatalf("build examples/%s: %v\n%s", name, err, out)
	}
	return bin
}

// TestExamplesAgainstServe: the langchaingo agent (offline, scripted model
// whose second tool call needs the first call's variables) and the
// WebSocket client, against `sandpool serve`.
func TestExamplesAgainstServe(t *testing.T) {
	addr := startServe(t, podmantest.ServerID("examples"), "example-key-0123456789")
	env := append(os.Environ(), "SANDPOOL_URL=http://"+addr, "SANDPOOL_TOKEN=example-key-0123456789", "SANDPOOL_POOL=chat")

	cmd := exec.Command(buildExample(t, "langchaingo-agent"), "-model", "scripted")
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil || strings.Count(string(out), "-> execute_python") != 2 || !strings.Contains(string(out), "Answer: Lyon had the highest total sales: 290.") {
		t.Fatalf("agent: %v\n%s", err, out)
	}

	cmd = exec.Command(buildExample(t, "websocket"), "import time", "print('a', flush=True)\ntime.sleep(2)\nprint('b')")
	cmd.Env = env
	out, err = cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), `stdout "a`) || !strings.Contains(string(out), `stdout "b`) || !strings.Contains(string(out), "done: ok") {
		t.Fatalf("websocket example: %v\n%s", err, out)
	}
}

// TestMCPStdioBridge: `sandpool mcp --server` forwards to `sandpool serve`'s
// /mcp with the token from the environment.
func TestMCPStdioBridge(t *testing.T) {
	addr := startServe(t, podmantest.ServerID("mcp-bridge"), "bridge-key-0123456789")

	bad := startStdio(t, []string{"SANDPOOL_TOKEN=wrong-key-0123456789"}, "mcp", "--server", "http://"+addr)
	bad.nextID++
	bad.send(map[string]any{"id": 1, "method": "initialize", "params": map[string]any{"protocolVersion": "2025-11-25", "capabilities": map[string]any{}, "clientInfo": map[string]any{"name": "t", "version": "1"}}})
	if m := <-bad.lines; m["error"] == nil {
		t.Fatalf("a wrong token was accepted: %v", m)
	}
	bad.finish()

	p := startStdio(t, []string{"SANDPOOL_TOKEN=bridge-key-0123456789"}, "mcp", "--server", "http://"+addr)
	p.initialize()
	if out, isErr := p.execute("remote = 'state'"); isErr {
		t.Fatalf("define: %s", out)
	}
	if out, _ := p.execute("remote"); !strings.Contains(out, "'state'") {
		t.Fatalf("state: %q", out)
	}
	p.finish()

	// The remote client example, against the same server.
	cmd := exec.Command(buildExample(t, "mcp-remote"), "x = 6 * 7", "print(x)", "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.show()")
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "SANDPOOL_URL=http://"+addr, "SANDPOOL_TOKEN=bridge-key-0123456789")
	out, err := cmd.Output()
	if err != nil || !strings.Contains(string(out), "--- cell 2 (isError=false)\nstdout:\n42") || !strings.Contains(string(out), "[figure saved to figure-1.png") {
		t.Fatalf("example: %v\n%s", err, out)
	}
	if png, err := os.ReadFile(filepath.Join(cmd.Dir, "figure-1.png")); err != nil || !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Fatalf("example's figure: %v", err)
	}
}

// TestClaudeDesktopConfig: the example configuration is valid JSON whose
// commands are sandpool mcp invocations this binary accepts.
func TestClaudeDesktopConfig(t *testing.T) {
	b, err := os.ReadFile("../../examples/claude-desktop/claude_desktop_config.json")
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		MCPServers map[string]struct {
			Command string            `json:"command"`
			Args    []string          `json:"args"`
			Env     map[string]string `json:"env"`
		} `json:"mcpServers"`
	}
	if err := json.Unmarshal(b, &cfg); err != nil || len(cfg.MCPServers) == 0 {
		t.Fatalf("config: %v", err)
	}
	for name, s := range cfg.MCPServers {
		if !filepath.IsAbs(s.Command) || filepath.Base(s.Command) != "sandpool" || len(s.Args) == 0 || s.Args[0] != "mcp" {
			t.Errorf("%s: %s %v", name, s.Command, s.Args)
			continue
		}
		if err := mcpCmd().ParseFlags(s.Args[1:]); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestMCPStdioClients: mcp-go's and the official Go SDK's stdio clients
// run `sandpool mcp` as Claude Desktop would, each its own conversation.
func TestMCPStdioClients(t *testing.T) {
	serverID := podmantest.ServerID("mcp-clients")
	path, _ := writeConfig(t, serverID, "")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	plot := "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.show()"

	t.Run("mcp-go", func(t *testing.T) {
		c, err := client.NewStdioMCPClient(binary(t), nil, "mcp", "--config", path)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		var ir mcp.InitializeRequest
		ir.Params.ClientInfo = mcp.Implementation{Name: "stdio-test", Version: "1"}
		if _, err := c.Initialize(ctx, ir); err != nil {
			t.Fatal(err)
		}
		run := func(tool string, args map[string]any) *mcp.CallToolResult {
			var req mcp.CallToolRequest
			req.Params.Name, req.Params.Arguments = tool, args
			res, err := c.CallTool(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			return res
		}
		run("execute_python", map[string]any{"code": "k = 'kept'"})
		if r := run("execute_python", map[string]any{"code": "k"}); r.IsError || !strings.Contains(mcp.GetTextFromContent(r.Content[0]), "'kept'") {
			t.Fatalf("state: %+v", r.Content)
		}
		r := run("execute_python", map[string]any{"code": plot})
		if img, ok := mcp.AsImageContent(r.Content[len(r.Content)-1]); !ok || img.MIMEType != "image/png" {
			t.Fatalf("plot: %+v", r.Content)
		}
		run("upload_file", map[string]any{"name": "in.txt", "content": "round trip"})
		r = run("download_file", map[string]any{"name": "in.txt"})
		if er, ok := mcp.AsEmbeddedResource(r.Content[0]); !ok {
			t.Fatalf("download: %+v", r.Content)
		} else if tr, ok := mcp.AsTextResourceContents(er.Resource); !ok || tr.Text != "round trip" {
			t.Fatalf("download: %+v", er.Resource)
		}
	})

	t.Run("go-sdk", func(t *testing.T) {
		cl := sdk.NewClient(&sdk.Implementation{Name: "stdio-interop", Version: "1"}, nil)
		cs, err := cl.Connect(ctx, &sdk.CommandTransport{Command: exec.Command(binary(t), "mcp", "--config", path)}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer cs.Close()
		var names []string
		for tool, err := range cs.Tools(ctx, nil) {
			if err != nil {
				t.Fatal(err)
			}
			names = append(names, tool.Name)
		}
		if len(names) != 6 {
			t.Fatalf("tools: %v", names)
		}
		text := func(code string) (string, bool) {
			res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "execute_python", Arguments: map[string]any{"code": code}})
			if err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			for _, c := range res.Content {
				if tc, ok := c.(*sdk.TextContent); ok {
					b.WriteString(tc.Text)
				}
			}
			return b.String(), res.IsError
		}
		// A new process is a new conversation: k from the other client is not here.
		if out, isErr := text("k"); !isErr || !strings.Contains(out, "NameError") {
			t.Fatalf("isolation: %q", out)
		}
		text("k = 2")
		if out, _ := text("k * 21"); !strings.Contains(out, "42") {
			t.Fatalf("state: %q", out)
		}
	})
	// Both conversations ended with their processes: at most the warm
	// sandbox is left (its refill may have been cut short by the exit).
	deadline := time.Now().Add(time.Minute)
	for count(t, serverID) > 1 {
		if time.Now().After(deadline) {
			t.Fatalf("%d sandboxes after both conversations ended", count(t, serverID))
		}
		time.Sleep(200 * time.Millisecond)
	}
}
