package mcp_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"

	goldenfile "github.com/sandpool/sandpool/internal/golden"

	"github.com/mark3labs/mcp-go/mcp"
)

// golden compares got with testdata/name.golden; -update rewrites it.
func golden(t *testing.T, name string, got []byte) { t.Helper(); goldenfile.Check(t, name, got) }

var (
	// Times (file listings) change from run to run.
	timestamp = regexp.MustCompile(`\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)?`)
	traceback = regexp.MustCompile(`(?s)Traceback \(most recent call last\):\n.*?\n([A-Za-z]+(Error|Exception|Interrupt)\b)`)
)

// normalizeText replaces what changes from run to run, and a traceback's
// frames (they differ between Python versions), with placeholders.
func normalizeText(s string) string {
	s = timestamp.ReplaceAllString(s, "<time>")
	s = traceback.ReplaceAllString(s, "Traceback (most recent call last):\n  <frames>\n$1")
	return collapseRuns(s)
}

// collapseRuns writes a run of more than 64 of one byte as <N × c>, so
// that truncated floods stay readable.
func collapseRuns(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		j := i
		for j < len(s) && s[j] == s[i] {
			j++
		}
		if j-i > 64 {
			fmt.Fprintf(&b, "<%d × %c>", j-i, s[i])
		} else {
			b.WriteString(s[i:j])
		}
		i = j
	}
	return b.String()
}

// renderResult is a tool result as its JSON on the wire, normalised.
func renderResult(t *testing.T, r *mcp.CallToolResult) string {
	t.Helper()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	var walk func(key string, v any) any
	walk = func(key string, v any) any {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				v[k] = walk(k, x)
			}
		case []any:
			for i, x := range v {
				v[i] = walk("", x)
			}
		case string:
			if key == "data" || key == "blob" {
				if raw, err := base64.StdEncoding.DecodeString(v); err == nil && bytes.HasPrefix(raw, []byte("\x89PNG")) {
					return fmt.Sprintf("<png %d bytes>", len(raw))
				}
			}
			return normalizeText(v)
		}
		return v
	}
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(walk("", v)); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

// TestInprocMCPRenderingGolden: how tool results render on the MCP wire
// (text, results, streams, exceptions, images, timeouts, truncation,
// files, argument errors), against testdata/rendering.golden.
func TestInprocMCPRenderingGolden(t *testing.T) {
	t.Parallel()
	e := newInprocEnv(t)
	ctx := context.Background()
	c, _ := e.connect(aliceKey, nil)
	calls := []struct {
		name, tool string
		args       map[string]any
	}{
		{"no output", "execute_python", map[string]any{"code": "x = 21"}},
		{"stdout and a result", "execute_python", map[string]any{"code": "print('double')\nx * 2"}},
		{"stderr", "execute_python", map[string]any{"code": "import sys\nprint('oops', file=sys.stderr)"}},
		{"an exception", "execute_python", map[string]any{"code": "print('before')\n1/0"}},
		{"an image", "execute_python", map[string]any{"code": pngCode}},
		{"a timeout", "execute_python", map[string]any{"code": "import time\ntime.sleep(10)", "timeout": 1}},
		{"truncated output", "execute_python", map[string]any{"code": "print('y' * 200000)"}},
		{"upload text", "upload_file", map[string]any{"name": "data.csv", "content": "a,b\n1,2\n"}},
		{"upload binary", "upload_file", map[string]any{"name": "raw.bin", "content": base64.StdEncoding.EncodeToString([]byte{0, 0xff}), "encoding": "base64"}},
		{"list", "list_files", nil},
		{"download text", "download_file", map[string]any{"name": "data.csv"}},
		{"download binary", "download_file", map[string]any{"name": "raw.bin"}},
		{"delete", "delete_file", map[string]any{"name": "raw.bin"}},
		{"download a missing file", "download_file", map[string]any{"name": "raw.bin"}},
		{"no code", "execute_python", nil},
		{"code not a string", "execute_python", map[string]any{"code": []any{1}}},
		{"unknown argument", "execute_python", map[string]any{"code": "1", "identifier": "victim"}},
		{"bad base64", "upload_file", map[string]any{"name": "x.bin", "content": "%%%", "encoding": "base64"}},
		{"path outside", "download_file", map[string]any{"name": "/etc/shadow"}},
		{"reset", "reset_session", nil},
		{"after the reset", "execute_python", map[string]any{"code": "x"}},
	}
	var b strings.Builder
	for _, cl := range calls {
		args, _ := json.Marshal(cl.args)
		fmt.Fprintf(&b, "=== %s\n%s %s\n", cl.name, cl.tool, args)
		b.WriteString(renderResult(t, call(t, c, ctx, cl.tool, cl.args)))
		b.WriteString("\n")
	}
	golden(t, "rendering", []byte(b.String()))
}
