package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"path"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/sandpool/sandpool/internal/errcode"
	"github.com/sandpool/sandpool/sandbox/agentproto"
)

// FuzzParseExec checks parseExec on arbitrary bodies and code limits. It
// never panics. Accepted code fits maxCode and outputStreamsMaxLength is
// not negative. A refusal is an *errcode.Error with a public message and a
// client-error code (SessionPropertiesMissing, InvalidArgument or, only
// for code over the limit, TooLarge), never Internal. The generations
// agree: a flat body (python/execute, executions) parses exactly like the
// same fields in a "properties" envelope (code/execute).
func FuzzParseExec(f *testing.F) {
	for _, s := range []string{
		`{"code":"print(1)"}`,
		`{"properties":{"codeInputType":"inline","executionType":"synchronous","code":"1+1","identifier":"abcd"}}`,
		`{"properties":null,"pythonCode":"x","timeoutInSeconds":"30","outputStreamsMaxLength":100}`,
		`{"code":"cHJpbnQoIsO8IiE=","codeInputType":"InlineBase64","executionType":"Asynchronous"}`,
		`{"code":"\r\n","codeInputType":"inlinebase64"}`,
		`{"code":"x","timeoutInSeconds":9223372036854775807}`,
		`{"code":"x","timeoutInSeconds":-1}`,
		`{"code":"x","shellCommand":"ls"}`,
		`{"CODE":"x","returnJupyterFormat":true,"sessionId":"sess"}`,
		`{"code":"` + strings.Repeat("a", 300) + `"}`,
		`{"properties":[1,2]}`,
		`[]`,
		`null`,
		"  \n",
		`{"code":"\ud800"}`,
	} {
		f.Add([]byte(s), uint16(256))
	}
	f.Add([]byte(`{"code":"abc"}`), uint16(0))
	f.Add([]byte(`{"code":"abc"}`), uint16(3))
	f.Fuzz(func(t *testing.T, body []byte, limit uint16) {
		maxCode := int64(limit)
		req, err := parseExec(bytes.NewReader(body), maxCode)
		if err != nil {
			checkClientError(t, err, codePropertiesMissing, errcode.InvalidArgument, errcode.TooLarge)
		} else {
			if int64(len(req.code)) > maxCode {
				t.Fatalf("accepted %d bytes of code over a %d-byte limit", len(req.code), maxCode)
			}
			if req.maxOutput < 0 {
				t.Fatalf("negative outputStreamsMaxLength %d accepted", req.maxOutput)
			}
			// The timeout never wraps around (it is capped before the
			// multiplication), and the code is never empty, decoded or not
			// (both found by this fuzzer).
			if req.timeout < 0 || req.timeout > maxTimeoutSeconds*time.Second {
				t.Fatalf("timeout %v accepted", req.timeout)
			}
			if req.code == "" {
				t.Fatal("empty code accepted")
			}
		}
		if !json.Valid(body) || hasPropertiesKey(body) {
			return
		}
		wrapped := append(append([]byte(`{"properties":`), body...), '}')
		wreq, werr := parseExec(bytes.NewReader(wrapped), maxCode)
		if errcode.Of(err) != errcode.Of(werr) || req != wreq {
			t.Fatalf("flat and enveloped bodies differ:\nflat      %+v, %v\nenveloped %+v, %v", req, err, wreq, werr)
		}
	})
}

// hasPropertiesKey reports whether body is an object with a key that
// encoding/json would match to "properties".
func hasPropertiesKey(body []byte) bool {
	var m map[string]json.RawMessage
	if json.Unmarshal(body, &m) != nil {
		return false
	}
	for k := range m {
		if strings.EqualFold(k, "properties") {
			return true
		}
	}
	return false
}

// FuzzFileNames checks the file-name handling of the file routes on an
// arbitrary directory (the "path" query) and name. stripDataDir only ever
// drops a leading /mnt/data. A name relPath accepts is relative, has no
// NUL, backslash, C0 control character, empty or ".." segment, stays inside
// /mnt/data once joined to it and cleaned, and passes the agent's own
// agentproto.SplitPath; a refusal is InvalidArgument. A name
// checkUploadName accepts also holds no control characters at all, no
// format characters (bidi overrides) and no space but ' '.
func FuzzFileNames(f *testing.F) {
	for _, s := range [][2]string{
		{"", "x.txt"},
		{"/mnt/data", "/mnt/data/sub/x.csv"},
		{"/mnt/data/", "ünï cødé.csv"},
		{"sub", "../x"},
		{"", "/mnt/data/../etc/passwd"},
		{"", "/mnt/data//etc/passwd"},
		{"a/..", "x"},
		{"", "%2e%2e/%2E%2E/etc"},
		{"", "."},
		{"", "/mnt/data"},
		{".", "x"},
		{"", "a\x00b"},
		{"", "C:\\Windows\\x"},
		{"", "\u202egnp.exe"},
		{"", "x\u00a0y"},
		{"", "\u009b31mred"},
		{"", "dir/"},
		{"", strings.Repeat("a", agentproto.MaxNameBytes+1)},
		{strings.Repeat("d/", 2000), "x"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, dir, name string) {
		for _, s := range []string{dir, name} {
			got := stripDataDir(s)
			switch {
			case s == dataDir || s == dataDir+"/":
				if got != "" {
					t.Fatalf("stripDataDir(%q) = %q, want \"\"", s, got)
				}
			case strings.HasPrefix(s, dataDir+"/"):
				if got != s[len(dataDir)+1:] {
					t.Fatalf("stripDataDir(%q) = %q", s, got)
				}
			case got != s:
				t.Fatalf("stripDataDir(%q) = %q, want it unchanged", s, got)
			}
		}
		if err := checkUploadName(name); err != nil {
			checkClientError(t, err, errcode.InvalidArgument)
		}
		p, err := relPath(dir, name)
		if err != nil {
			checkClientError(t, err, errcode.InvalidArgument)
			return
		}
		checkRelPath(t, dir, name, p)
		if err := checkUploadName(p); err != nil {
			checkClientError(t, err, errcode.InvalidArgument)
			return
		}
		for _, r := range p {
			if r != ' ' && unicode.IsSpace(r) || unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || strings.ContainsRune(`:*?"<>|`, r) {
				t.Fatalf("upload name %q (from %q, %q) has %U", p, dir, name, r)
			}
		}
	})
}

// checkRelPath fails unless p, which relPath accepted for dir and name,
// is a safe path relative to /mnt/data.
func checkRelPath(t *testing.T, dir, name, p string) {
	t.Helper()
	if p == "" || !utf8.ValidString(p) || strings.HasPrefix(p, "/") || strings.ContainsAny(p, "\x00\\") {
		t.Fatalf("relPath(%q, %q) = %q", dir, name, p)
	}
	for _, r := range p {
		// C0, DEL and C1 (SplitPath let C1 through until this fuzzer).
		if unicode.IsControl(r) {
			t.Fatalf("relPath(%q, %q) = %q, with the control character %U", dir, name, p, r)
		}
	}
	for i, seg := range strings.Split(p, "/") {
		// The one empty segment allowed is after a trailing slash ("dir/").
		if seg == ".." || seg == "" && i != strings.Count(p, "/") {
			t.Fatalf("relPath(%q, %q) = %q, with the segment %q", dir, name, p, seg)
		}
	}
	if c := path.Clean(p); c == ".." || strings.HasPrefix(c, "../") || path.IsAbs(c) {
		t.Fatalf("relPath(%q, %q) = %q, which cleans to %q", dir, name, p, c)
	}
	if j := path.Join(dataDir, p); j != dataDir && !strings.HasPrefix(j, dataDir+"/") {
		t.Fatalf("relPath(%q, %q) = %q, which joins to %q", dir, name, p, j)
	}
	if !strings.HasSuffix(p, stripDataDir(name)) {
		t.Fatalf("relPath(%q, %q) = %q, which does not end in the name", dir, name, p)
	}
	if _, err := agentproto.SplitPath(p); err != nil {
		t.Fatalf("relPath(%q, %q) = %q, which the agent refuses: %v", dir, name, p, err)
	}
}

// checkClientError fails unless err is an *errcode.Error with one of
// codes and a public message.
func checkClientError(t *testing.T, err error, codes ...errcode.Code) {
	t.Helper()
	var e *errcode.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) carries no code", err, err)
	}
	if errcode.Public(err) == "" {
		t.Fatalf("error %v has no public message", err)
	}
	for _, c := range codes {
		if errcode.Of(err) == c {
			return
		}
	}
	t.Fatalf("error %v: code %q, want one of %q", err, errcode.Of(err), codes)
}
