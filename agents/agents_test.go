package agents

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	lcagents "github.com/tmc/langchaingo/agents"
	"github.com/tmc/langchaingo/chains"
	"github.com/tmc/langchaingo/llms"
	"github.com/tmc/langchaingo/llms/fake"

	"github.com/sandpool/sandpool/internal/errcode"
	"github.com/sandpool/sandpool/pool"
	"github.com/sandpool/sandpool/tools"
)

// recorder is a backend that records what reached it and answers with the
// code it ran as stdout.
type recorder struct {
	keys  []pool.SessionKey
	codes []string
	files map[string]string
}

func (r *recorder) Execute(_ context.Context, k pool.SessionKey, req pool.ExecRequest, sink pool.Sink) (*pool.Result, error) {
	r.keys, r.codes = append(r.keys, k), append(r.codes, req.Code)
	sink(pool.Event{Kind: pool.EventStdout, Text: []byte("ran: " + req.Code)})
	return &pool.Result{Status: pool.StatusOK, StdoutBytes: int64(len(req.Code) + 5)}, nil
}

func (r *recorder) Put(_ context.Context, k pool.SessionKey, p string, rd io.Reader, _ int64) (pool.FileInfo, error) {
	b, _ := io.ReadAll(rd)
	r.keys = append(r.keys, k)
	r.files[p] = string(b)
	return pool.FileInfo{Name: p, Size: int64(len(b))}, nil
}

func (r *recorder) Get(_ context.Context, _ pool.SessionKey, p string, w io.Writer, _ int64) (pool.FileInfo, error) {
	s, ok := r.files[p]
	if !ok {
		return pool.FileInfo{}, errcode.New(errcode.NotFound, "no such file")
	}
	io.WriteString(w, s)
	return pool.FileInfo{Name: p, Size: int64(len(s))}, nil
}

func (r *recorder) List(context.Context, pool.SessionKey, string) ([]pool.FileInfo, bool, error) {
	var out []pool.FileInfo
	for n, s := range r.files {
		out = append(out, pool.FileInfo{Name: n, Size: int64(len(s)), ModTime: time.Unix(0, 0)})
	}
	return out, false, nil
}

func (r *recorder) Remove(context.Context, pool.SessionKey, string) error { return nil }
func (r *recorder) Delete(context.Context, pool.SessionKey) error         { return nil }

func conversation(t *testing.T, id string) (*Conversation, *recorder) {
	t.Helper()
	b, err := NewBinder([]byte("a-binder-secret-of-at-least-32-bytes!"))
	if err != nil {
		t.Fatal(err)
	}
	k, err := b.Key("app", id)
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{files: map[string]string{}}
	return NewConversation(tools.NewService(r, tools.Limits{}), k), r
}

func TestStripFences(t *testing.T) {
	tests := []struct{ in, want string }{
		{"print(1)", "print(1)"},
		{"```python\nprint(1)\n```", "print(1)"},
		{"  ```py\nx = 1\ny = 2\n```  \n", "x = 1\ny = 2"},
		{"```\nprint(1)\n```", "print(1)"},
		{"`print(1)`", "print(1)"},
		{"python\nprint(1)", "print(1)"},
		{"s = '```'\nprint(s)", "s = '```'\nprint(s)"},
	}
	for _, tc := range tests {
		if got := StripFences(tc.in); got != tc.want {
			t.Errorf("StripFences(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestBinder(t *testing.T) {
	b, _ := NewBinder([]byte("a-binder-secret-of-at-least-32-bytes!"))
	b2, _ := NewBinder([]byte("another-secret-of-at-least-32-bytes!!"))
	k1, _ := b.Key("app", "conv-1")
	again, _ := b.Key("app", "conv-1")
	k2, _ := b.Key("app", "conv-2")
	other, _ := b.Key("other", "conv-1")
	keyed, _ := b2.Key("app", "conv-1")
	if k1 != again || k1 == k2 || k1.Identifier == keyed.Identifier || other.Principal == k1.Principal {
		t.Fatalf("keys: %v %v %v %v %v", k1, again, k2, other, keyed)
	}
	if strings.Contains(k1.Identifier.String(), "conv") {
		t.Fatal("the identifier shows the conversation id")
	}
	if _, err := b.Key("app", ""); err == nil {
		t.Fatal("an empty conversation id was accepted")
	}
	if _, err := NewBinder([]byte("short")); err == nil {
		t.Fatal("a short secret was accepted")
	}
}

func TestToolsAndDispatch(t *testing.T) {
	c, r := conversation(t, "conv-1")
	ctx := context.Background()
	py := c.PythonTool()
	if out, err := py.Call(ctx, "```python\nprint(6 * 7)\n```"); err != nil || !strings.Contains(out, "ran: print(6 * 7)") {
		t.Fatalf("python: %q %v", out, err)
	}
	if out, _ := py.Call(ctx, "   "); !strings.HasPrefix(out, "Error: code is empty") {
		t.Fatalf("empty: %q", out)
	}
	byName := map[string]func(string) string{}
	for _, tl := range c.Tools() {
		tl := tl
		byName[tl.Name()] = func(in string) string { out, _ := tl.Call(ctx, in); return out }
		if tl.Description() == "" {
			t.Errorf("%s has no description", tl.Name())
		}
	}
	if out := byName["write_file"](`{"name": "a.csv", "content": "x\n1\n"}`); !strings.Contains(out, "saved /mnt/data/a.csv") {
		t.Fatalf("write_file: %q", out)
	}
	if out := byName["write_file"]("a.csv: x"); !strings.HasPrefix(out, "Error: the input must be JSON") {
		t.Fatalf("write_file bad input: %q", out)
	}
	if out := byName["read_file"](" 'a.csv' "); out != "x\n1\n" {
		t.Fatalf("read_file: %q", out)
	}
	if out := byName["list_files"](""); !strings.Contains(out, "a.csv") {
		t.Fatalf("list_files: %q", out)
	}
	if out := byName["read_file"]("../../etc/passwd"); !strings.HasPrefix(out, "Error: the file name is not allowed") {
		t.Fatalf("read_file traversal: %q", out)
	}

	// Function calling: definitions and dispatch.
	defs := c.Definitions()
	if len(defs) != 6 || defs[0].Function.Name != tools.ExecutePython || defs[0].Function.Parameters.(map[string]any)["type"] != "object" {
		t.Fatalf("definitions: %+v", defs)
	}
	msgs := c.ToolMessages(ctx, []llms.ToolCall{
		{ID: "call-1", Type: "function", FunctionCall: &llms.FunctionCall{Name: tools.ExecutePython, Arguments: `{"code": "` + "```python\\nx = 1\\n```" + `"}`}},
		{ID: "call-2", Type: "function", FunctionCall: &llms.FunctionCall{Name: tools.ExecutePython, Arguments: `{"code": "1", "identifier": "someone-elses"}`}},
		{ID: "call-3", Type: "function", FunctionCall: &llms.FunctionCall{Name: tools.ListFiles, Arguments: `not json`}},
		{ID: "call-4", Type: "function", FunctionCall: &llms.FunctionCall{Name: "rm", Arguments: `{}`}},
	})
	want := []string{"ran: x = 1", "Error: invalid arguments for execute_python: unknown argument(s) \"identifier\"", "Error: the arguments must be a JSON object", "Error: unknown tool \"rm\""}
	for i, m := range msgs {
		resp := m.Parts[0].(llms.ToolCallResponse)
		if m.Role != llms.ChatMessageTypeTool || resp.ToolCallID != "call-"+string(rune('1'+i)) || !strings.Contains(resp.Content, want[i]) {
			t.Errorf("tool message %d: %+v", i, m)
		}
	}
	// Every call reached the conversation's session, whatever the arguments said.
	for _, k := range r.keys {
		if k != r.keys[0] {
			t.Fatalf("a call reached another session: %v", r.keys)
		}
	}
}

// TestLangchaingoExecutor: the tool plugs into langchaingo's own agent
// executor (a ReAct agent on a scripted model).
func TestLangchaingoExecutor(t *testing.T) {
	c, r := conversation(t, "conv-exec")
	llm := fake.NewFakeLLM([]string{
		"I should compute it.\nAction: python\nAction Input: ```python\nprint(2 + 2)\n```",
		"Final Answer: 4",
	})
	ex := lcagents.NewExecutor(lcagents.NewOneShotAgent(llm, c.Tools()), lcagents.WithMaxIterations(3))
	out, err := chains.Run(context.Background(), ex, "What is 2 + 2?")
	if err != nil || out != "4" {
		t.Fatalf("executor: %q %v", out, err)
	}
	if len(r.codes) != 1 || r.codes[0] != "print(2 + 2)" {
		t.Fatalf("code run: %q", r.codes)
	}
}
