package tools

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/sandpool/sandpool/pool"
)

// Tool names.
const (
	ExecutePython = "execute_python"
	UploadFile    = "upload_file"
	ListFiles     = "list_files"
	DownloadFile  = "download_file"
	DeleteFile    = "delete_file"
	ResetSession  = "reset_session"
)

// Def describes a tool to a model.
type Def struct {
	Name        string
	Title       string
	Description string
	// Schema is the JSON Schema of the arguments object.
	Schema json.RawMessage
	// ReadOnly and Destructive are hints for clients that ask before
	// running a tool.
	ReadOnly    bool
	Destructive bool
}

type prop struct {
	Type        string   `json:"type"`
	Description string   `json:"description"`
	Enum        []string `json:"enum,omitempty"`
	Minimum     *float64 `json:"minimum,omitempty"`
	Maximum     *float64 `json:"maximum,omitempty"`
	Default     any      `json:"default,omitempty"`
}

func schema(props map[string]prop, required ...string) json.RawMessage {
	if required == nil {
		required = []string{}
	}
	b, err := json.Marshal(map[string]any{"type": "object", "properties": props, "required": required, "additionalProperties": false})
	if err != nil {
		panic(err) // static data
	}
	return b
}

var nameProp = prop{Type: "string", Description: "File name relative to /mnt/data, e.g. data.csv or out/plot.png (a /mnt/data/ prefix is accepted)."}

// Defs returns the tool definitions, with the limits of s in their
// descriptions and schemas.
func (s *Service) Defs() []Def { return s.defs }

// buildDefs writes the definitions for limits l (once, in NewService).
func buildDefs(l Limits) []Def {
	minT, maxT := 1.0, math.Floor(l.MaxTimeout.Seconds())
	return []Def{
		{
			Name:  ExecutePython,
			Title: "Run Python",
			Description: "Run Python 3 code in a sandboxed, stateful Jupyter-style kernel and return its output. " +
				"Variables, imports and files persist between calls in this conversation. " +
				"The value of the last expression is returned as the result; print() output comes back as stdout; " +
				"matplotlib figures (plt.show() or a figure as the last expression) come back as images. " +
				"numpy, pandas, matplotlib, scipy, sympy, scikit-learn, seaborn, pillow, openpyxl, beautifulsoup4, lxml, pyyaml, tabulate and requests are installed; " +
				"there is no internet access and pip install does not work. The working directory is /mnt/data, where uploaded files are. " +
				fmt.Sprintf("Each call may run for at most %d seconds (default %d). ", int(maxT), int(l.DefaultTimeout.Seconds())) +
				fmt.Sprintf("Output above %s per stream is truncated: print summaries (df.head(), len(x)) rather than whole datasets.", byteCount(int64(l.MaxTextBytes))),
			Schema: schema(map[string]prop{
				"code":    {Type: "string", Description: "Python source to run. Plain code, not a markdown block."},
				"timeout": {Type: "integer", Description: "Seconds the code may run before it is stopped.", Minimum: &minT, Maximum: &maxT},
			}, "code"),
			Destructive: true,
		},
		{
			Name:        UploadFile,
			Title:       "Upload a file",
			Description: fmt.Sprintf("Save a file into /mnt/data so that code can read it. Text files: pass the text as content. Binary files: pass base64 and set encoding to \"base64\". At most %s.", byteCount(l.MaxFileBytes)),
			Schema: schema(map[string]prop{
				"name":     nameProp,
				"content":  {Type: "string", Description: "The file's content: its text, or base64 when encoding is base64."},
				"encoding": {Type: "string", Description: "How content is encoded.", Enum: []string{"text", "base64"}, Default: "text"},
			}, "name", "content"),
			Destructive: true,
		},
		{
			Name:        ListFiles,
			Title:       "List files",
			Description: "List the files in /mnt/data (or a directory under it) with sizes and modification times.",
			Schema: schema(map[string]prop{
				"directory": {Type: "string", Description: "Directory relative to /mnt/data; omit for /mnt/data itself."},
			}),
			ReadOnly: true,
		},
		{
			Name:  DownloadFile,
			Title: "Download a file",
			Description: fmt.Sprintf("Return a file from /mnt/data: text files as text, other files as an embedded resource. At most %s; summarise larger files from code instead.", byteCount(l.MaxFileBytes)) +
				" To look at a figure, display it from execute_python instead.",
			Schema:   schema(map[string]prop{"name": nameProp}, "name"),
			ReadOnly: true,
		},
		{
			Name:        DeleteFile,
			Title:       "Delete a file",
			Description: "Delete a file (or an empty directory) from /mnt/data.",
			Schema:      schema(map[string]prop{"name": nameProp}, "name"),
			Destructive: true,
		},
		{
			Name:  ResetSession,
			Title: "Reset the Python session",
			Description: "Discard this conversation's sandbox: all variables, imports and files in /mnt/data are lost, and the next call starts in a fresh one. " +
				"Use it only when the session is broken or the user asks for a clean start.",
			Schema:      schema(map[string]prop{}),
			Destructive: true,
		},
	}
}

// Call runs the tool name with JSON arguments args in the session of k,
// checking the arguments first. Unknown tools and bad arguments give an
// error result that says what is wrong.
func (s *Service) Call(ctx context.Context, k pool.SessionKey, name string, args map[string]any, observe pool.Sink) Result {
	a := argReader{args: args}
	var run func() Result
	switch name {
	case ExecutePython:
		ea := ExecuteArgs{Code: a.str("code", true)}
		if t, ok := a.num("timeout"); ok {
			if t < 1 {
				a.fail("timeout must be at least 1 second")
			}
			ea.Timeout = time.Duration(min(t, s.limits.MaxTimeout.Seconds()) * float64(time.Second))
		}
		run = func() Result { return s.Execute(ctx, k, ea, observe) }
	case UploadFile:
		ua := UploadArgs{Name: a.str("name", true), Content: a.str("content", true)}
		switch enc := a.str("encoding", false); strings.ToLower(enc) {
		case "", "text", "utf-8", "utf8":
		case "base64":
			ua.Base64 = true
		default:
			a.fail(fmt.Sprintf("encoding must be \"text\" or \"base64\", not %q", clipArg(enc)))
		}
		run = func() Result { return s.Upload(ctx, k, ua) }
	case ListFiles:
		dir := a.str("directory", false)
		run = func() Result { return s.List(ctx, k, dir) }
	case DownloadFile:
		n := a.str("name", true)
		run = func() Result { return s.Download(ctx, k, n) }
	case DeleteFile:
		n := a.str("name", true)
		run = func() Result { return s.Delete(ctx, k, n) }
	case ResetSession:
		run = func() Result { return s.Reset(ctx, k) }
	default:
		return textResult(true, fmt.Sprintf("unknown tool %q; the tools are %s", clipArg(name), strings.Join([]string{ExecutePython, UploadFile, ListFiles, DownloadFile, DeleteFile, ResetSession}, ", ")))
	}
	a.unknown(s.args[name])
	if len(a.errs) > 0 {
		return textResult(true, "invalid arguments for "+name+": "+strings.Join(a.errs, "; "))
	}
	return run()
}

// argNames lists each tool's argument names, from its schema.
func argNames(defs []Def) map[string]map[string]bool {
	out := map[string]map[string]bool{}
	for _, d := range defs {
		var sc struct {
			Properties map[string]json.RawMessage `json:"properties"`
		}
		_ = json.Unmarshal(d.Schema, &sc)
		out[d.Name] = map[string]bool{}
		for k := range sc.Properties {
			out[d.Name][k] = true
		}
	}
	return out
}

// argReader reads JSON arguments, collecting every problem.
type argReader struct {
	args map[string]any
	errs []string
}

func (a *argReader) fail(msg string) { a.errs = append(a.errs, msg) }

func (a *argReader) str(key string, required bool) string {
	v, ok := a.args[key]
	if !ok || v == nil {
		if required {
			a.fail(fmt.Sprintf("%q is required", key))
		}
		return ""
	}
	s, ok := v.(string)
	if !ok {
		a.fail(fmt.Sprintf("%q must be a string, not %s", key, jsonType(v)))
	}
	return s
}

func (a *argReader) num(key string) (float64, bool) {
	v, ok := a.args[key]
	if !ok || v == nil {
		return 0, false
	}
	switch n := v.(type) {
	case float64:
		return n, true
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	case json.Number:
		f, err := n.Float64()
		if err == nil {
			return f, true
		}
	}
	a.fail(fmt.Sprintf("%q must be a number, not %s", key, jsonType(v)))
	return 0, false
}

func (a *argReader) unknown(known map[string]bool) {
	var extra []string
	for k := range a.args {
		if !known[k] {
			extra = append(extra, fmt.Sprintf("%q", clipArg(k)))
		}
	}
	sort.Strings(extra)
	if len(extra) > 0 {
		a.fail("unknown argument(s) " + strings.Join(extra, ", ") + " (the session is chosen by the server, not by an argument)")
	}
}

func jsonType(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case float64, int, int64, json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

// clipArg shortens a value echoed in an error.
func clipArg(s string) string {
	if len(s) > 40 {
		return strings.ToValidUTF8(s[:40], "") + "..."
	}
	return s
}
