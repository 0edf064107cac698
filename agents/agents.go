// Package agents gives Go agents built with langchaingo a sandboxed,
// stateful Python code interpreter: langchaingo tools (tools.Tool, for
// ReAct-style agents and executors) and function-calling definitions with
// a dispatcher (llms.Tool, for native tool calling).
//
// A Conversation binds the tools to one sandbox session. The application
// chooses the conversation (its own conversation id, mapped to a keyed
// identifier by a Binder); nothing the model writes can change it. The
// backend is an in-process pool or a remote server (api/client).
package agents

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/tmc/langchaingo/llms"
	lctools "github.com/tmc/langchaingo/tools"

	"github.com/sandpool/sandpool/pool"
	"github.com/sandpool/sandpool/tools"
)

// Binder maps an application's conversation ids to session identifiers:
// a keyed hash, so an identifier cannot be derived from a conversation id
// without the secret, and two conversations never share one.
type Binder struct{ h *pool.Hasher }

// NewBinder returns a Binder keyed by secret (at least 32 bytes; keep it
// stable for conversations to find their sandboxes again).
func NewBinder(secret []byte) (*Binder, error) {
	h, err := pool.NewHasher(secret)
	if err != nil {
		return nil, fmt.Errorf("agents: %w", err)
	}
	return &Binder{h: h}, nil
}

// Key is the session key of conversation for principal (the caller the
// application acts for; "" when a remote server's token decides it).
func (b *Binder) Key(principal pool.Principal, conversation string) (pool.SessionKey, error) {
	if conversation == "" {
		return pool.SessionKey{}, errors.New("agents: the conversation id is empty")
	}
	// The conversation's session is the tools': the principal's own REST
	// requests never reach or list it.
	return pool.Key(principal.Within("agents"), b.h.IdentifierFor("agents-conversation", string(principal), conversation)), nil
}

// Conversation is the code interpreter of one conversation.
type Conversation struct {
	svc *tools.Service
	key pool.SessionKey
}

// NewConversation binds svc to the session of key (from a Binder).
func NewConversation(svc *tools.Service, key pool.SessionKey) *Conversation {
	return &Conversation{svc: svc, key: key}
}

// Reset discards the conversation's sandbox; the next call starts fresh.
func (c *Conversation) Reset(ctx context.Context) error {
	if r := c.svc.Reset(ctx, c.key); r.IsError {
		return errors.New(r.JoinText())
	}
	return nil
}

// Tools returns the langchaingo tools of the conversation: Python, and
// listing, reading and writing files in /mnt/data.
func (c *Conversation) Tools() []lctools.Tool {
	return []lctools.Tool{&pythonTool{c}, &listFilesTool{c}, &readFileTool{c}, &writeFileTool{c}}
}

// PythonTool returns the code-interpreter tool alone.
func (c *Conversation) PythonTool() lctools.Tool { return &pythonTool{c} }

// fence matches a whole input wrapped in a markdown code block.
var fence = regexp.MustCompile("(?s)^\\s*```[a-zA-Z0-9_+-]*[ \\t]*\\n?(.*?)\\n?```\\s*$")

// StripFences removes what models wrap code in: a markdown code block
// (```python ... ```), or stray backticks and a leading "python" line.
func StripFences(in string) string {
	if m := fence.FindStringSubmatch(in); m != nil {
		return m[1]
	}
	s := strings.Trim(in, " \t\r\n`")
	if rest, ok := strings.CutPrefix(s, "python\n"); ok {
		s = rest
	}
	return s
}

// observation is what a langchaingo tool returns to the model: the text
// of the result, failures included (a Go error would stop the executor).
func observation(r tools.Result) string {
	t := r.JoinText()
	if r.IsError {
		return "Error: " + t
	}
	return t
}

type pythonTool struct{ c *Conversation }

func (t *pythonTool) Name() string { return "python" }

func (t *pythonTool) Description() string {
	return "Runs Python 3 code in a sandboxed, stateful interpreter and returns stdout, stderr, the value of the last expression and errors. " +
		"Variables, imports and files persist between calls. The input is plain Python code (no markdown). " +
		"numpy, pandas, matplotlib, scipy and scikit-learn are installed; there is no internet access. Files are in /mnt/data. " +
		"Print what you need to see; output is truncated when long."
}

func (t *pythonTool) Call(ctx context.Context, input string) (string, error) {
	r := t.c.svc.Execute(ctx, t.c.key, tools.ExecuteArgs{Code: StripFences(input)}, nil)
	return observation(r), nil
}

type listFilesTool struct{ c *Conversation }

func (t *listFilesTool) Name() string { return "list_files" }

func (t *listFilesTool) Description() string {
	return "Lists the files in /mnt/data with sizes and modification times. Input: a directory under /mnt/data, or nothing."
}

func (t *listFilesTool) Call(ctx context.Context, input string) (string, error) {
	return observation(t.c.svc.List(ctx, t.c.key, strings.TrimSpace(input))), nil
}

type readFileTool struct{ c *Conversation }

func (t *readFileTool) Name() string { return "read_file" }

func (t *readFileTool) Description() string {
	return "Returns the content of a text file in /mnt/data. Input: the file name, e.g. results.csv."
}

func (t *readFileTool) Call(ctx context.Context, input string) (string, error) {
	return observation(t.c.svc.Download(ctx, t.c.key, strings.Trim(strings.TrimSpace(input), "\"'`"))), nil
}

type writeFileTool struct{ c *Conversation }

func (t *writeFileTool) Name() string { return "write_file" }

func (t *writeFileTool) Description() string {
	return `Writes a text file into /mnt/data for code to read. Input: JSON {"name": "data.csv", "content": "a,b\n1,2\n"}.`
}

func (t *writeFileTool) Call(ctx context.Context, input string) (string, error) {
	var a struct {
		Name    string `json:"name"`
		Content string `json:"content"`
	}
	if err := json.Unmarshal([]byte(StripFences(input)), &a); err != nil || a.Name == "" {
		return `Error: the input must be JSON {"name": "...", "content": "..."}`, nil
	}
	return observation(t.c.svc.Upload(ctx, t.c.key, tools.UploadArgs{Name: a.Name, Content: a.Content})), nil
}

// Definitions are the tools for native tool calling (llms.WithTools): the
// same names and JSON schemas as the MCP tools.
func (c *Conversation) Definitions() []llms.Tool {
	var out []llms.Tool
	for _, d := range c.svc.Defs() {
		var params map[string]any
		_ = json.Unmarshal(d.Schema, &params)
		out = append(out, llms.Tool{Type: "function", Function: &llms.FunctionDefinition{Name: d.Name, Description: d.Description, Parameters: params}})
	}
	return out
}

// Dispatch runs one tool call of the model and returns its response.
// Arguments that are not a JSON object get an error response the model
// can act on; the session is the conversation's whatever they say.
func (c *Conversation) Dispatch(ctx context.Context, call llms.ToolCall) llms.ToolCallResponse {
	resp := llms.ToolCallResponse{ToolCallID: call.ID}
	if call.FunctionCall == nil {
		resp.Content = "Error: the tool call has no function"
		return resp
	}
	resp.Name = call.FunctionCall.Name
	var args map[string]any
	if a := strings.TrimSpace(call.FunctionCall.Arguments); a != "" {
		if err := json.Unmarshal([]byte(a), &args); err != nil {
			resp.Content = "Error: the arguments must be a JSON object"
			return resp
		}
	}
	if call.FunctionCall.Name == tools.ExecutePython {
		if code, ok := args["code"].(string); ok {
			args["code"] = StripFences(code)
		}
	}
	resp.Content = observation(c.svc.Call(ctx, c.key, call.FunctionCall.Name, args, nil))
	return resp
}

// ToolMessages runs every tool call of a model's answer, in order, and
// returns the tool messages to append to the history (one per call).
func (c *Conversation) ToolMessages(ctx context.Context, calls []llms.ToolCall) []llms.MessageContent {
	var out []llms.MessageContent
	for _, call := range calls {
		out = append(out, llms.MessageContent{Role: llms.ChatMessageTypeTool, Parts: []llms.ContentPart{c.Dispatch(ctx, call)}})
	}
	return out
}
