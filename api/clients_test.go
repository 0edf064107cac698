package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
	"testing"

	"github.com/sandpool/sandpool/api"
	"github.com/sandpool/sandpool/pool"
)

// clientCall is one HTTP request exactly as a real client builds it:
// its URL (from the pool management endpoint), headers and body. The
// replicas below follow the client sources cited in the wire reference
// (section 9); their readers decode the response the way each client does,
// so a field a client needs that went missing, or changed type, fails here.
type clientCall struct {
	method, url string
	header      map[string]string
	body        io.Reader
}

func (c clientCall) do(t *testing.T) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(c.method, c.url, c.body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range c.header {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b
}

// strict decodes like System.Text.Json into typed fields: a wrong type
// fails, as it does in Semantic Kernel .NET.
func strict(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
}

// multipartFile is one "file" part as requests/aiohttp/FormData send it.
func multipartFile(filename, contentType string, data []byte) (io.Reader, string) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="file"; filename=%q`, filename))
	h.Set("Content-Type", contentType)
	part, _ := mw.CreatePart(h)
	part.Write(data)
	mw.Close()
	return &buf, mw.FormDataContentType()
}

// TestRealClientCalls replays, per client, the calls LangChain (Python and
// JS), Semantic Kernel (Python and .NET), LlamaIndex (Python and TS),
// AutoGen and langchain4j make, and reads the answers as they do.
func TestRealClientCalls(t *testing.T) {
	eachRuntime(t, pool.Config{Scale: pool.ScaleConfig{MaxConcurrentSessions: 8, ReadySessionInstances: ptr(1)}}, func(t *testing.T, e *env) {
		c := e.server(api.Options{}, nil)
		endpoint := c.base // the "pool management endpoint" a user configures
		auth := "Bearer " + aliceKey

		// properties is the code/execute envelope as the Python clients read it.
		type properties struct {
			Properties struct {
				Status string          `json:"status"`
				Stdout *string         `json:"stdout"`
				Stderr *string         `json:"stderr"`
				Result json.RawMessage `json:"result"`
			} `json:"properties"`
		}
		// The body every code/execute client sends.
		codeBody := func(code string) io.Reader {
			b, _ := json.Marshal(map[string]any{"properties": map[string]any{"codeInputType": "inline", "executionType": "synchronous", "code": code}})
			return bytes.NewReader(b)
		}

		t.Run("langchain-python", func(t *testing.T) {
			// endpoint + "/" + path + "?" + identifier=quote(uuid)&api-version=2024-02-02-preview
			session := "5b0e9a3c-6f1e-4a8c-9d57-2b3f1c0e7a11"
			u := func(path string) string {
				return endpoint + "/" + path + "?identifier=" + url.PathEscape(session) + "&api-version=2024-02-02-preview"
			}
			hdr := map[string]string{"Authorization": auth, "Content-Type": "application/json", "User-Agent": "langchain-azure-dynamic-sessions/1.0.3 (Language=Python)"}
			// The tool sanitises ```python fences away before sending.
			st, b := clientCall{"POST", u("code/execute"), hdr, codeBody("import numpy as np\nx = np.arange(5)\nint(x.sum())")}.do(t)
			var p properties
			strict(t, b, &p)
			if st != 200 || string(p.Properties.Result) != "10" || p.Properties.Stdout == nil || p.Properties.Stderr == nil {
				t.Fatalf("execute: %d %s", st, b)
			}
			// Upload: files=[("file", (remote_file_path, data, "application/octet-stream"))], data={}.
			body, ct := multipartFile("sales.csv", "application/octet-stream", []byte("q,n\n1,5\n2,7\n"))
			st, b = clientCall{"POST", u("files/upload"), map[string]string{"Authorization": auth, "Content-Type": ct}, body}.do(t)
			var up struct {
				Value []struct {
					Properties struct {
						Filename string `json:"filename"`
						Size     int64  `json:"size"`
					} `json:"properties"`
				} `json:"value"`
			}
			strict(t, b, &up)
			if st != 200 || len(up.Value) != 1 || up.Value[0].Properties.Filename != "sales.csv" || up.Value[0].Properties.Size != 12 {
				t.Fatalf("upload: %d %s", st, b)
			}
			// The model then reads f"/mnt/data/{filename}".
			_, b = clientCall{"POST", u("code/execute"), hdr, codeBody("import pandas as pd\nint(pd.read_csv('/mnt/data/sales.csv').n.sum())")}.do(t)
			if strict(t, b, &p); string(p.Properties.Result) != "12" {
				t.Fatalf("read upload: %s", b)
			}
			// A figure: result is a dict with type image and base64_data.
			_, b = clientCall{"POST", u("code/execute"), hdr, codeBody(plot)}.do(t)
			strict(t, b, &p)
			var img map[string]any
			if json.Unmarshal(p.Properties.Result, &img); img["type"] != "image" || img["base64_data"] == "" {
				t.Fatalf("image: %.200s", b)
			}
			// Download: files/content/{quote(path)}; list: value[].
			st, b = clientCall{"GET", u("files/content/" + url.PathEscape("sales.csv")), map[string]string{"Authorization": auth}, nil}.do(t)
			if st != 200 || string(b) != "q,n\n1,5\n2,7\n" {
				t.Fatalf("download: %d %q", st, b)
			}
			_, b = clientCall{"GET", u("files"), map[string]string{"Authorization": auth}, nil}.do(t)
			if strict(t, b, &up); len(up.Value) != 1 || up.Value[0].Properties.Filename != "sales.csv" {
				t.Fatalf("list: %s", b)
			}
			// delete_session(): DELETE session at 2025-10-02-preview.
			del := endpoint + "/session?identifier=" + url.PathEscape(session) + "&api-version=2025-10-02-preview"
			if st, b = (clientCall{"DELETE", del, map[string]string{"Authorization": auth}, nil}).do(t); st/100 != 2 {
				t.Fatalf("delete session: %d %s", st, b)
			}
		})

		t.Run("langchain-js", func(t *testing.T) {
			// The endpoint with a trailing slash, encodeURIComponent(sessionId).
			u := endpoint + "/code/execute?identifier=" + url.QueryEscape("js-session-1") + "&api-version=2024-02-02-preview"
			st, b := clientCall{"POST", u, map[string]string{"Content-Type": "application/json", "Authorization": auth,
				"User-Agent": "langchainjs-azure-dynamic-sessions (Language=JavaScript; node.js/v20.20.2; linux; x64)"}, codeBody("print('hi')")}.do(t)
			var p properties
			if strict(t, b, &p); st != 200 || *p.Properties.Stdout != "hi\n" {
				t.Fatalf("%d %s", st, b)
			}
		})

		t.Run("semantic-kernel-python", func(t *testing.T) {
			// No encoding; timeoutInSeconds in the properties; all four keys read.
			base := endpoint + "/"
			u := func(path string) string {
				return base + path + "?identifier=sk-py-session&api-version=2024-02-02-preview"
			}
			b0, _ := json.Marshal(map[string]any{"properties": map[string]any{"codeInputType": "inline", "executionType": "synchronous", "code": "1/0", "timeoutInSeconds": 100}})
			st, b := clientCall{"POST", u("code/execute"), map[string]string{"Authorization": auth, "Content-Type": "application/json",
				"User-Agent": "semantic-kernel-python/1.0 (Language=Python)"}, bytes.NewReader(b0)}.do(t)
			var raw struct {
				Properties map[string]json.RawMessage `json:"properties"`
			}
			strict(t, b, &raw)
			for _, k := range []string{"status", "result", "stdout", "stderr"} {
				if _, ok := raw.Properties[k]; !ok {
					t.Fatalf("no %q: %s", k, b)
				}
			}
			if st != 200 || string(raw.Properties["status"]) != `"Failure"` {
				t.Fatalf("exception: %d %s", st, b)
			}
			// Upload with remote_file_path forced under /mnt/data/, then
			// list and find the entry whose full path matches.
			body, ct := multipartFile("/mnt/data/report.txt", "application/octet-stream", []byte("ok"))
			if st, b = (clientCall{"POST", u("files/upload"), map[string]string{"Authorization": auth, "Content-Type": ct}, body}).do(t); st != 200 {
				t.Fatalf("upload: %d %s", st, b)
			}
			_, b = clientCall{"GET", u("files"), map[string]string{"Authorization": auth}, nil}.do(t)
			var list struct {
				Value []struct {
					Properties struct {
						Filename string `json:"filename"`
						Size     int64  `json:"size"`
					} `json:"properties"`
				} `json:"value"`
			}
			strict(t, b, &list)
			found := false
			for _, v := range list.Value {
				found = found || "/mnt/data/"+v.Properties.Filename == "/mnt/data/report.txt" && v.Properties.Size == 2
			}
			if !found {
				t.Fatalf("uploaded file not listed as /mnt/data/report.txt: %s", b)
			}
		})

		t.Run("semantic-kernel-dotnet", func(t *testing.T) {
			// new Uri(endpoint + "/", "executions?identifier=<raw>&api-version=2024-10-02-preview").
			u := func(path string) string {
				return endpoint + "/" + path + "?identifier=sk-net-session&api-version=2024-10-02-preview"
			}
			hdr := map[string]string{"Authorization": auth, "Content-Type": "application/json", "User-Agent": "Semantic-Kernel/1.50.0 (Language=dotnet)"}
			// Typed like SessionsPythonCodeExecutionResult: status is a
			// required string, executionResult a string or null.
			type execResult struct {
				Status string `json:"status"`
				Result struct {
					Stdout          string  `json:"stdout"`
					Stderr          string  `json:"stderr"`
					ExecutionResult *string `json:"executionResult"`
				} `json:"result"`
			}
			for _, tc := range []struct{ code, stdout, result string }{
				{"print('a')\n6*7", "a\n", "42"},
				{"'text'", "", "text"},
				{"x = 1", "", ""},
			} {
				b0, _ := json.Marshal(map[string]any{"codeInputType": "Inline", "executionType": "Synchronous", "timeoutInSeconds": 100, "code": tc.code})
				st, b := clientCall{"POST", u("executions"), hdr, bytes.NewReader(b0)}.do(t)
				var r execResult
				strict(t, b, &r)
				if st != 200 || r.Status != "Succeeded" || r.Result.Stdout != tc.stdout || r.Result.ExecutionResult == nil || *r.Result.ExecutionResult != tc.result {
					t.Fatalf("%q: %d %s", tc.code, st, b)
				}
			}
			// Upload: POST files, MultipartFormDataContent {fileContent, "file", name}.
			body, ct := multipartFile("net.txt", "application/octet-stream", []byte("dotnet"))
			st, b := clientCall{"POST", u("files"), map[string]string{"Authorization": auth, "Content-Type": ct}, body}.do(t)
			// SessionsRemoteFileMetadata: name, lastModifiedAt (DateTime)
			// and type are required.
			type meta struct {
				Name           *string `json:"name"`
				SizeInBytes    int64   `json:"sizeInBytes"`
				LastModifiedAt *string `json:"lastModifiedAt"`
				ContentType    string  `json:"contentType"`
				Type           *string `json:"type"`
			}
			var m meta
			if strict(t, b, &m); st != 200 || m.Name == nil || *m.Name != "net.txt" || m.LastModifiedAt == nil || m.Type == nil || m.SizeInBytes != 6 {
				t.Fatalf("upload: %d %s", st, b)
			}
			var list struct {
				Value []meta `json:"value"`
			}
			_, b = clientCall{"GET", u("files"), map[string]string{"Authorization": auth}, nil}.do(t)
			if strict(t, b, &list); len(list.Value) != 1 {
				t.Fatalf("list: %s", b)
			}
			if st, b = (clientCall{"GET", u("files/" + url.PathEscape("net.txt") + "/content"), map[string]string{"Authorization": auth}, nil}).do(t); st != 200 || string(b) != "dotnet" {
				t.Fatalf("download: %d %q", st, b)
			}
		})

		t.Run("llamaindex-python", func(t *testing.T) {
			u := func(path string) string {
				return endpoint + "/" + path + "?identifier=" + url.PathEscape("llama-py-session") + "&api-version=2024-02-02-preview"
			}
			// The sanitiser appends a newline; the whole response is returned.
			st, b := clientCall{"POST", u("code/execute"), map[string]string{"Authorization": auth, "Content-Type": "application/json",
				"User-Agent": "llamaindex-azure-code-interpreter/0.5.0 (Language=Python)"}, codeBody("sum([1, 2, 3])\n")}.do(t)
			var p properties
			if strict(t, b, &p); st != 200 || string(p.Properties.Result) != "6" {
				t.Fatalf("%d %s", st, b)
			}
			// Upload sends only Authorization; the name has /mnt/data/.
			body, ct := multipartFile("/mnt/data/notes.md", "application/octet-stream", []byte("# n"))
			if st, b = (clientCall{"POST", u("files/upload"), map[string]string{"Authorization": auth, "Content-Type": ct}, body}).do(t); st != 200 {
				t.Fatalf("upload: %d %s", st, b)
			}
			if st, b = (clientCall{"GET", u("files/content/notes.md"), map[string]string{"Authorization": auth}, nil}).do(t); string(b) != "# n" {
				t.Fatalf("download: %d %q", st, b)
			}
		})

		t.Run("autogen", func(t *testing.T) {
			// api-version first, identifier unencoded; no User-Agent.
			u := func(path string) string {
				return endpoint + "/" + path + "?api-version=2024-02-02-preview&identifier=autogen-3f2a"
			}
			hdr := map[string]string{"Authorization": auth, "Content-Type": "application/json"}
			// First use: the package listing, parsed from the repr string
			// of the list in "result", then chdir.
			st, b := clientCall{"POST", u("code/execute"), hdr, codeBody("import pkg_resources\n[d.project_name for d in pkg_resources.working_set]")}.do(t)
			var p properties
			strict(t, b, &p)
			var listing string
			if st != 200 || !strings.Contains(p.Properties.Status, "Success") || json.Unmarshal(p.Properties.Result, &listing) != nil {
				t.Fatalf("package listing: %d %.300s", st, b)
			}
			pkgs := strings.Split(strings.Trim(strings.TrimSpace(listing), "[]"), ",\n")
			if !strings.Contains(listing, "'numpy'") || len(pkgs) < 10 {
				t.Fatalf("package listing parsed to %d entries: %.300s", len(pkgs), listing)
			}
			_, b = clientCall{"POST", u("code/execute"), hdr, codeBody("import os; os.chdir('/mnt/data')")}.do(t)
			if strict(t, b, &p); !strings.Contains(p.Properties.Status, "Success") {
				t.Fatalf("chdir: %s", b)
			}
			// A failing block: "Failure" in status means exit code 1.
			_, b = clientCall{"POST", u("code/execute"), hdr, codeBody("import sys\nprint('x', file=sys.stderr)\nraise SystemExit(3)")}.do(t)
			if strict(t, b, &p); !strings.Contains(p.Properties.Status, "Failure") || !strings.Contains(*p.Properties.Stderr, "x") {
				t.Fatalf("failure: %s", b)
			}
			// Upload with aiohttp FormData, then list value[].properties.filename.
			body, ct := multipartFile("in.json", "application/octet-stream", []byte(`{"k": 1}`))
			if st, b = (clientCall{"POST", u("files/upload"), map[string]string{"Authorization": auth, "Content-Type": ct}, body}).do(t); st != 200 {
				t.Fatalf("upload: %d %s", st, b)
			}
			_, b = clientCall{"GET", u("files"), map[string]string{"Authorization": auth}, nil}.do(t)
			if !strings.Contains(string(b), `"filename":"in.json"`) {
				t.Fatalf("list: %s", b)
			}
		})

		t.Run("llamaindex-ts", func(t *testing.T) {
			// python/execute with the identifier in the body too; top-level fields.
			u := endpoint + "/python/execute?identifier=" + url.QueryEscape("llama-ts-session") + "&api-version=2024-02-02-preview"
			b0, _ := json.Marshal(map[string]any{"properties": map[string]any{"identifier": "llama-ts-session", "codeInputType": "inline", "executionType": "synchronous", "pythonCode": "print(1)\n2"}})
			st, b := clientCall{"POST", u, map[string]string{"Authorization": auth, "Content-Type": "application/json"}, bytes.NewReader(b0)}.do(t)
			var out struct {
				Result json.RawMessage `json:"result"`
				Stdout *string         `json:"stdout"`
				Stderr *string         `json:"stderr"`
			}
			if strict(t, b, &out); st != 200 || string(out.Result) != "2" || out.Stdout == nil || *out.Stdout != "1\n" || out.Stderr == nil {
				t.Fatalf("%d %s", st, b)
			}
		})

		t.Run("langchain4j", func(t *testing.T) {
			u := endpoint + "/code/execute?identifier=lc4j-session&api-version=2024-02-02-preview"
			st, b := clientCall{"POST", u, map[string]string{"Authorization": auth, "Content-Type": "application/json",
				"User-Agent": "langchain4j-azure-dynamic-sessions/1.0.0-beta1 (Language=Java)"}, codeBody("'java'")}.do(t)
			var p properties
			if strict(t, b, &p); st != 200 || string(p.Properties.Result) != `"java"` {
				t.Fatalf("%d %s", st, b)
			}
			// Its upload part says Content-Type: application/json.
			body, ct := multipartFile("data.json", "application/json", []byte(`[1]`))
			if st, b = (clientCall{"POST", endpoint + "/files/upload?identifier=lc4j-session&api-version=2024-02-02-preview", map[string]string{"Authorization": auth, "Content-Type": ct}, body}).do(t); st != 200 {
				t.Fatalf("upload: %d %s", st, b)
			}
		})
	})
}
