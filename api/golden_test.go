package api_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"

	goldenfile "github.com/sandpool/sandpool/internal/golden"
)

// golden compares got with testdata/name.golden; -update rewrites it.
func golden(t *testing.T, name string, got []byte) { t.Helper(); goldenfile.Check(t, name, got) }

// volatile are fields whose values change from run to run (ids, times,
// durations); golden files hold a placeholder instead.
var volatile = map[string]string{
	"id":                          "<id>",
	"etag":                        "<etag>",
	"executionTimeInMilliseconds": "<ms>",
	"durationMs":                  "<ms>",
	"createdAt":                   "<time>",
	"lastAccessedAt":              "<time>",
	"expireAt":                    "<time>",
	"expiresAt":                   "<time>",
	"lastModifiedAt":              "<time>",
	"lastModifiedTime":            "<time>",
	"last_modified_time":          "<time>",
}

// cellRef is IPython's name for a cell in a traceback ("Cell In[7], line
// 2"): its number counts the kernel's executions.
var cellRef = regexp.MustCompile(`Cell In\[\d+\]`)

// normalizeJSON replaces volatile values with placeholders and reduces
// tracebacks to their last line (their frames differ between Python
// versions); the result is indented JSON with sorted keys.
func normalizeJSON(t *testing.T, body []byte) string {
	t.Helper()
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return fmt.Sprintf("(not JSON) %q", body)
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(normalizeValue("", v)); err != nil {
		t.Fatal(err)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

func normalizeValue(key string, v any) any {
	if p, ok := volatile[key]; ok && v != nil && v != "" {
		return p
	}
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			v[k] = normalizeValue(k, x)
		}
		return v
	case []any:
		if key == "traceback" && len(v) > 0 {
			// A traceback as lines: only the exception's line is stable.
			return []any{"<frames>", v[len(v)-1]}
		}
		for i, x := range v {
			v[i] = normalizeValue("", x)
		}
		return v
	case string:
		return normalizeString(key, v)
	}
	return v
}

func normalizeString(key, s string) string {
	if key == "base64_data" || key == "image/png" {
		if b, err := base64.StdEncoding.DecodeString(s); err == nil && bytes.HasPrefix(b, []byte("\x89PNG")) {
			return fmt.Sprintf("<png %d bytes>", len(b))
		}
	}
	const header = "Traceback (most recent call last):"
	if i := strings.Index(s, header); i >= 0 {
		lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
		return s[:i] + header + "\n  <frames>\n" + lines[len(lines)-1]
	}
	if loc := cellRef.FindStringIndex(s); loc != nil {
		lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
		return s[:loc[0]] + "<frames>\n" + lines[len(lines)-1]
	}
	return s
}
