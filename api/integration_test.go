package api_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/sandpool/sandpool/api"
	"github.com/sandpool/sandpool/internal/podmantest"
	"github.com/sandpool/sandpool/pool"
)

func TestMain(m *testing.M) { podmantest.Main(m) }

const (
	aliceKey = "alice-key-0123456789"
	bobKey   = "bob-key-0123456789ab"
)

// env is one runtime's real pool manager; servers of the HTTP surface
// with various options share it.
type env struct {
	t   testing.TB
	rt  podmantest.Runtime
	mgr *pool.Manager
	cfg pool.Config
	// inproc: the pool runs on the in-process engine (the host's python3,
	// without the image's packages).
	inproc bool
}

func newEnv(t testing.TB, rt podmantest.Runtime, cfg pool.Config) *env {
	cfg.Name = "api-" + rt.Name
	m := podmantest.Manager(t, rt, cfg)
	return &env{t: t, rt: rt, mgr: m, cfg: m.Pool(cfg.Name).Config()}
}

// server starts an HTTP surface over the env's pool; its log goes to buf
// when given.
func (e *env) server(opt api.Options, logTo io.Writer) *client {
	e.t.Helper()
	opt.Manager = e.mgr
	if opt.Auth.APIKeys == nil && opt.Auth.JWT == nil {
		opt.Auth.APIKeys = []api.APIKey{{Name: "alice", Key: aliceKey}, {Name: "bob", Key: bobKey}}
	}
	if logTo == nil {
		logTo = io.Discard
	}
	opt.Log = zerolog.New(logTo)
	url, _ := podmantest.Serve(e.t, opt)
	return &client{t: e.t, url: url, base: url + "/pools/" + e.cfg.Name, token: aliceKey}
}

type client struct {
	t     testing.TB
	url   string
	base  string
	token string
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("status %d, body %q: %v", r.status, r.body, err)
	}
	return m
}

func (c *client) do(method, path string, body io.Reader, contentType string) response {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+path, body)
	if err != nil {
		c.t.Fatal(err)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return response{status: res.StatusCode, header: res.Header, body: b}
}

// root is a client for the server's own routes (not the pool's).
func (c *client) root() *client {
	r := *c
	r.base = c.url
	return &r
}

func (c *client) post(path, body string) response {
	return c.do("POST", path, strings.NewReader(body), "application/json")
}

func (c *client) get(path string) response { return c.do("GET", path, nil, "") }

// upload sends one multipart "file" part named name.
func (c *client) upload(path, name string, content []byte) response {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	h := make(map[string][]string)
	h["Content-Disposition"] = []string{fmt.Sprintf(`form-data; name="file"; filename=%q`, name)}
	h["Content-Type"] = []string{"application/octet-stream"}
	part, _ := mw.CreatePart(h)
	part.Write(content)
	mw.Close()
	return c.do("POST", path, &buf, mw.FormDataContentType())
}

func want(t *testing.T, r response, status int, code string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	if code != "" {
		if got := r.header.Get("x-ms-error-code"); got != code {
			t.Fatalf("x-ms-error-code %q, want %q: %s", got, code, r.body)
		}
		if e, _ := r.json(t)["error"].(map[string]any); e["code"] != code || e["message"] == "" {
			t.Fatalf("error body %s, want code %q", r.body, code)
		}
	}
	if r.header.Get("x-ms-request-id") == "" {
		t.Fatal("no request id")
	}
}

// keys checks that m has exactly the keys listed.
func keys(t *testing.T, what string, m map[string]any, want ...string) {
	t.Helper()
	if len(m) != len(want) {
		t.Fatalf("%s: keys %v, want %v", what, mapKeys(m), want)
	}
	for _, k := range want {
		if _, ok := m[k]; !ok {
			t.Fatalf("%s: no %q in %v", what, k, mapKeys(m))
		}
	}
}

func mapKeys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func eachRuntime(t *testing.T, cfg pool.Config, f func(t *testing.T, e *env)) {
	for _, rt := range podmantest.Runtimes() {
		t.Run(rt.Name, func(t *testing.T) {
			t.Parallel()
			f(t, newEnv(t, rt, cfg))
		})
	}
}

func ptr(n int) *int { return &n }

const plot = "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.show()"

// TestExecuteGenerations: the three wire formats with the shapes of the
// reference, exceptions, images, asynchronous executions.
func TestExecuteGenerations(t *testing.T) {
	eachRuntime(t, pool.Config{Scale: pool.ScaleConfig{MaxConcurrentSessions: 3, ReadySessionInstances: ptr(1)}}, func(t *testing.T, e *env) {
		c := e.server(api.Options{}, nil)
		q := "?identifier=gen-session&api-version="

		// Legacy: flat, pythonCode, identifier in the body only.
		r := c.post("/python/execute", `{"properties":{"identifier":"gen-session","codeInputType":"inline","executionType":"synchronous","pythonCode":"x = 6 * 7\nx"}}`)
		want(t, r, 200, "")
		m := r.json(t)
		keys(t, "python/execute", m, "$id", "status", "stdout", "stderr", "result", "executionTimeInMilliseconds")
		if m["status"] != "Success" || m["result"] != float64(42) {
			t.Fatalf("python/execute: %s", r.body)
		}

		// 2024-02-02: the properties envelope; a doubled slash; a flat body;
		// enums in any case.
		for _, body := range []string{
			`{"properties":{"codeInputType":"inline","executionType":"synchronous","code":"print(x)\n{'a': x}"}}`,
			`{"codeInputType":"INLINE","executionType":"SYNCHRONOUS","code":"print(x)\n{'a': x}"}`,
		} {
			r = c.post("//code/execute/"+q+"2024-02-02-preview", body)
			want(t, r, 200, "")
			p, _ := r.json(t)["properties"].(map[string]any)
			keys(t, "code/execute", p, "$id", "status", "stdout", "stderr", "result", "executionResult", "executionTimeInMilliseconds")
			if p["status"] != "Success" || p["stdout"] != "42\n" || p["result"] != "{'a': 42}" {
				t.Fatalf("code/execute: %s", r.body)
			}
		}
		// An exception: Failure, traceback in stderr.
		r = c.post("/code/execute"+q+"2024-02-02-preview", `{"properties":{"code":"print('before')\n1/0"}}`)
		p, _ := r.json(t)["properties"].(map[string]any)
		if p["status"] != "Failure" || p["stdout"] != "before\n" || !strings.Contains(p["stderr"].(string), "ZeroDivisionError: division by zero") || p["result"] != "" {
			t.Fatalf("exception in code/execute: %s", r.body)
		}
		// An image.
		r = c.post("/code/execute"+q+"2024-02-02-preview", `{"properties":{"code":`+jsonString(plot)+`}}`)
		p, _ = r.json(t)["properties"].(map[string]any)
		img, _ := p["result"].(map[string]any)
		keys(t, "image result", img, "type", "format", "base64_data")
		if png, _ := base64.StdEncoding.DecodeString(img["base64_data"].(string)); img["type"] != "image" || img["format"] != "png" || !bytes.HasPrefix(png, []byte("\x89PNG")) {
			t.Fatalf("image: %v %v", img["type"], img["format"])
		}

		// 2024-10-02 and later: executions (and execute), headers, GET.
		for _, route := range []string{"/executions", "/execute"} {
			r = c.post(route+q+"2025-10-02-preview", `{"codeInputType":"Inline","executionType":"Synchronous","code":"print(7*9)","timeoutInSeconds":60}`)
			want(t, r, 200, "")
			m = r.json(t)
			keys(t, "executions", m, "id", "identifier", "executionType", "status", "result")
			res, _ := m["result"].(map[string]any)
			keys(t, "executions result", res, "stdout", "stderr", "executionResult", "executionTimeInMilliseconds")
			if m["status"] != "Succeeded" || m["identifier"] != "gen-session" || res["stdout"] != "63\n" || res["executionResult"] != "" {
				t.Fatalf("%s: %s", route, r.body)
			}
			if r.header.Get("operation-id") != m["id"] || !strings.HasPrefix(r.header.Get("Operation-Location"), "/pools/"+e.cfg.Name+"/executions/"+m["id"].(string)+"?") {
				t.Fatalf("headers: %v", r.header)
			}
			got := c.get(strings.TrimPrefix(r.header.Get("Operation-Location"), "/pools/"+e.cfg.Name))
			want(t, got, 200, "")
			if !bytes.Equal(got.body, r.body) {
				t.Fatalf("GET executions/{id}: %s, want %s", got.body, r.body)
			}
		}
		r = c.post("/executions"+q+"2025-10-02-preview", `{"code":"'nan'"}`)
		if res := r.json(t)["result"].(map[string]any); res["executionResult"] != "nan" {
			t.Fatalf("string result: %s", r.body)
		}
		r = c.post("/executions"+q+"2025-10-02-preview", `{"code":"'nan'","returnJupyterFormatExecutionResult":true}`)
		if res := r.json(t)["result"].(map[string]any); res["executionResult"] != "'nan'" {
			t.Fatalf("jupyter-format result: %s", r.body)
		}
		r = c.post("/executions"+q+"2025-10-02-preview", `{"code":"raise KeyError('k')"}`)
		m = r.json(t)
		if errBody, _ := m["error"].(map[string]any); m["status"] != "Failed" || errBody["code"] != "python_exception" || !strings.Contains(m["result"].(map[string]any)["stderr"].(string), "KeyError") {
			t.Fatalf("exception in executions: %s", r.body)
		}
		r = c.post("/executions"+q+"2025-10-02-preview", `{"code":"import time\ntime.sleep(5)","timeoutInSeconds":1}`)
		if m = r.json(t); m["status"] != "Failed" || m["error"].(map[string]any)["code"] != "timeout" {
			t.Fatalf("timeout: %s", r.body)
		}
		// Output caps.
		r = c.post("/executions"+q+"2025-10-02-preview", `{"code":"print('x' * 10000)","outputStreamsMaxLength":100}`)
		if out := r.json(t)["result"].(map[string]any)["stdout"].(string); !strings.HasPrefix(out, strings.Repeat("x", 100)+"\n[sandpool: output truncated; 10001 bytes") {
			t.Fatalf("capped output: %q", out)
		}

		// Asynchronous: 202 Running, then Succeeded; another principal
		// cannot see it.
		r = c.post("/executions"+q+"2025-02-02-preview", `{"executionType":"Asynchronous","code":"import time\ntime.sleep(1)\nx + 1"}`)
		want(t, r, 202, "")
		m = r.json(t)
		keys(t, "async", m, "id", "identifier", "executionType", "status")
		if m["status"] != "Running" {
			t.Fatalf("async: %s", r.body)
		}
		loc := strings.TrimPrefix(r.header.Get("Operation-Location"), "/pools/"+e.cfg.Name)
		bob := *c
		bob.token = bobKey
		want(t, bob.get(loc), 404, "execution_not_found")
		deadline := time.Now().Add(time.Minute)
		for {
			m = c.get(loc).json(t)
			if m["status"] != "Running" || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if m["status"] != "Succeeded" || m["result"].(map[string]any)["executionResult"] != "43" {
			t.Fatalf("async result: %v", m)
		}
	})
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// TestFilesRoundTrip: upload in every generation, code that reads a file
// and writes a plot, list, metadata, download, delete; names that must be
// refused; the upload cap.
func TestFilesRoundTrip(t *testing.T) {
	eachRuntime(t, pool.Config{Scale: pool.ScaleConfig{MaxConcurrentSessions: 2, ReadySessionInstances: ptr(1)}}, func(t *testing.T, e *env) {
		testFilesRoundTrip(t, e, 128<<20) // the default cap
	})
}

// testFilesRoundTrip tests the file routes over e's pool with an upload
// cap of maxUpload: upload in every generation, code that reads the files
// and writes one, listings, downloads, metadata, delete, refused names and
// the cap.
func testFilesRoundTrip(t *testing.T, e *env, maxUpload int64) {
	c := e.server(api.Options{Limits: api.Limits{MaxUploadBytes: pool.Quantity(maxUpload)}}, nil)
	const id = "?identifier=files-session"
	v2, v3 := id+"&api-version=2024-02-02-preview", id+"&api-version=2025-10-02-preview"

	// Semantic Kernel sends /mnt/data/<name>; the listing gives it back
	// relative, and /mnt/data/ + filename is the uploaded path.
	r := c.upload("/files/upload"+v2, "/mnt/data/data.csv", []byte("a,b\n1,2\n3,4\n"))
	want(t, r, 200, "")
	item := r.json(t)["value"].([]any)[0].(map[string]any)["properties"].(map[string]any)
	keys(t, "files/upload", item, "$id", "filename", "size", "lastModifiedTime")
	if item["filename"] != "data.csv" || item["size"] != float64(12) {
		t.Fatalf("upload: %s", r.body)
	}
	r = c.upload("/files"+v3+"&path=/mnt/data/in", "notes.txt", []byte("hello"))
	want(t, r, 200, "")
	keys(t, "POST files", r.json(t), "name", "directory", "type", "contentType", "sizeInBytes", "lastModifiedAt")
	r = c.upload("/python/uploadFile"+id, "legacy.txt", []byte("old"))
	want(t, r, 200, "")
	keys(t, "python/uploadFile", r.json(t)["$values"].([]any)[0].(map[string]any), "$id", "filename", "size", "last_modified_time")

	// Code reads the files and writes a plot.
	r = c.post("/code/execute"+v2, `{"properties":{"code":`+jsonString(plotFilesCode(e))+`}}`)
	if p := r.json(t)["properties"].(map[string]any); p["result"] != "(6, 'hello')" {
		t.Fatalf("code over the files: %s", r.body)
	}

	// Listings.
	r = c.get("/files" + v2)
	var names []string
	for _, v := range r.json(t)["value"].([]any) {
		names = append(names, v.(map[string]any)["properties"].(map[string]any)["filename"].(string))
	}
	if strings.Join(names, ",") != "data.csv,legacy.txt,plot.png" {
		t.Fatalf("2024-02 listing: %v", names)
	}
	r = c.get("/files" + v3 + "&recursive=true")
	var found []string
	for _, v := range r.json(t)["value"].([]any) {
		f := v.(map[string]any)
		found = append(found, fmt.Sprintf("%s/%s:%s", f["directory"], f["name"], f["type"]))
	}
	if strings.Join(found, ",") != "/data.csv:File,/in:Directory,/legacy.txt:File,/plot.png:File,in/notes.txt:File" {
		t.Fatalf("recursive listing: %v", found)
	}
	if n := len(c.get("/python/files" + id).json(t)["$values"].([]any)); n != 3 {
		t.Fatalf("legacy listing: %d files", n)
	}

	// Downloads, every route; the plot is a PNG.
	for _, path := range []string{"/files/content/plot.png" + id, "/files/plot.png/content" + id, "/python/downloadFile" + id + "&filename=plot.png"} {
		r = c.get(path)
		want(t, r, 200, "")
		if !bytes.HasPrefix(r.body, []byte("\x89PNG")) || r.header.Get("Content-Type") != "image/png" || r.header.Get("X-Content-Type-Options") != "nosniff" {
			t.Fatalf("%s: %d bytes, %v", path, len(r.body), r.header)
		}
	}
	if r = c.get("/files/in%2Fnotes.txt/content" + id); string(r.body) != "hello" {
		t.Fatalf("escaped slash: %s", r.body)
	}
	if r = c.get("/files/content/in/notes.txt" + id); string(r.body) != "hello" {
		t.Fatalf("nested download: %s", r.body)
	}
	// Metadata and delete, both formats.
	keys(t, "GET files/{name}", c.get("/files/plot.png"+v3).json(t), "name", "directory", "type", "contentType", "sizeInBytes", "lastModifiedAt")
	want(t, c.do("DELETE", "/files/plot.png"+v3, nil, ""), 204, "")
	want(t, c.get("/files/plot.png"+v3), 404, "not_found")
	if r = c.do("DELETE", "/files/legacy.txt"+v2, nil, ""); r.status != 200 || r.json(t)["message"] != "file deleted successfully" {
		t.Fatalf("2024-02 delete: %d %s", r.status, r.body)
	}

	// Names that must be refused, before anything reaches the sandbox.
	for _, name := range []string{"../escape.txt", "/etc/passwd", "a\x00b", strings.Repeat("n", 10<<10), "in/../../x", "a*b", "a\\b"} {
		want(t, c.upload("/files"+v3, name, []byte("x")), 400, "invalid_argument")
	}
	for _, path := range []string{"/files/content/..%2F..%2Fetc%2Fpasswd", "/files/%2Fetc%2Fpasswd/content", "/files/a%00b"} {
		want(t, c.get(path+id), 400, "invalid_argument")
	}
	// 1 MiB over the cap: refused by length at once; streamed without a
	// length, refused at the cap with nothing left behind.
	big := bytes.Repeat([]byte("z"), int(maxUpload)+(1<<20))
	want(t, c.upload("/files"+v3, "big.bin", big), 413, "too_large")
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		part, _ := mw.CreateFormFile("file", "big.bin")
		part.Write(big)
		mw.Close()
		pw.Close()
	}()
	want(t, c.do("POST", "/files"+v3, pr, mw.FormDataContentType()), 413, "too_large")
	want(t, c.get("/files/big.bin"+v3), 404, "not_found")
}

// plotFilesCode reads data.csv and in/notes.txt and writes plot.png, a
// PNG: with pandas and matplotlib in the image; with the standard library
// on the in-process engine (the host has neither).
func plotFilesCode(e *env) string {
	if !e.inproc {
		return "import pandas as pd, matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n" +
			"df = pd.read_csv('data.csv')\nplt.plot(df.a, df.b)\nplt.savefig('plot.png')\n" +
			"int(df.b.sum()), open('in/notes.txt').read()"
	}
	return "import csv, base64\nrows = list(csv.DictReader(open('data.csv')))\n" +
		"open('plot.png', 'wb').write(base64.b64decode('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=='))\n" +
		"sum(int(r['b']) for r in rows), open('in/notes.txt').read()"
}

// TestSessionsAndPools: session routes, listings, metadata, readiness, and
// principals kept apart.
func TestSessionsAndPools(t *testing.T) {
	eachRuntime(t, pool.Config{Scale: pool.ScaleConfig{MaxConcurrentSessions: 3, ReadySessionInstances: ptr(1)}}, testSessionsAndPools)
}

// testSessionsAndPools tests the session routes, listings, metadata and
// readiness over e's pool, and that principals are kept apart.
func testSessionsAndPools(t *testing.T, e *env) {
	c := e.server(api.Options{}, nil)
	v := "&api-version=2025-02-02-preview"
	deadline := time.Now().Add(time.Minute)
	for st := c.root().get("/readyz"); st.status != 200; st = c.root().get("/readyz") {
		if time.Now().After(deadline) {
			t.Fatalf("not ready: %s", st.body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	want(t, c.get("/session?identifier=sess-1"+v), 404, "not_found")
	c.post("/executions?identifier=sess-1"+v, `{"code":"s = 1"}`)
	c.post("/executions?identifier=sess-2"+v, `{"code":"s = 2"}`)
	r := c.get("/session?identifier=sess-1" + v)
	want(t, r, 200, "")
	keys(t, "session", r.json(t), "identifier", "etag", "state", "createdAt", "lastAccessedAt", "expireAt", "expiresAt")

	bob := *c
	bob.token = bobKey
	want(t, bob.get("/session?identifier=sess-1"+v), 404, "not_found")
	if n := bob.get("/listSessions?x=1" + v).json(t)["count"]; n != float64(0) {
		t.Fatalf("bob sees %v sessions", n)
	}
	m := c.get("/listSessions?x=1" + v).json(t)
	if m["count"] != float64(2) || len(m["sessions"].([]any)) != 2 || len(m["value"].([]any)) != 2 {
		t.Fatalf("listSessions: %v", m)
	}
	if m = c.get("/listSessions?skip=1" + v).json(t); len(m["sessions"].([]any)) != 1 || m["sessions"].([]any)[0].(map[string]any)["identifier"] != "sess-2" {
		t.Fatalf("skip=1: %v", m)
	}
	if m = c.post("/.management/listSessions?skip=0"+v, "").json(t); m["count"] != float64(2) {
		t.Fatalf(".management/listSessions: %v", m)
	}
	if m = c.post("/.management/getSession?identifier=sess-2"+v, "").json(t); m["identifier"] != "sess-2" {
		t.Fatalf(".management/getSession: %v", m)
	}
	r = c.post("/.management/stopSession?identifier=sess-2"+v, "")
	if r.status != 200 || string(r.body) != "Session sess-2 in session pool "+e.cfg.Name+" stopped." {
		t.Fatalf("stopSession: %d %q", r.status, r.body)
	}
	want(t, c.do("DELETE", "/session?identifier=sess-1"+v, nil, ""), 204, "")
	want(t, c.do("DELETE", "/session?identifier=sess-1"+v, nil, ""), 404, "not_found")
	// A deleted session's next request starts a new one, without the old
	// state.
	r = c.post("/executions?identifier=sess-1"+v, `{"code":"'s' in globals()"}`)
	if res := r.json(t)["result"].(map[string]any); res["executionResult"] != "False" {
		t.Fatalf("after delete: %s", r.body)
	}

	m = c.get("/metadata?api-version=2025-02-02-preview").json(t)
	// The image's packages are listed; the host's python3 is no image.
	if rt := m["runtimes"].([]any)[0].(map[string]any); rt["name"] != "python" || !strings.HasPrefix(rt["version"].(string), "3.") ||
		!e.inproc && len(m["preInstalledPackages"].([]any)) < 10 {
		t.Fatalf("metadata: %v", m)
	}
	if m = c.get("").json(t); m["name"] != e.cfg.Name || m["runtime"] != e.rt.Name {
		t.Fatalf("pool: %v", m)
	}
	all := c.root().get("/pools").json(t)["value"].([]any)
	if len(all) != 1 || all[0].(map[string]any)["state"].(map[string]any)["ready"] == nil {
		t.Fatalf("pool listing: %v", all)
	}
}

// TestBadInput: clear 4xx with stable codes, nothing created, the server
// healthy afterwards, and nothing secret in the access log.
func TestBadInput(t *testing.T) {
	eachRuntime(t, pool.Config{Scale: pool.ScaleConfig{MaxConcurrentSessions: 2, ReadySessionInstances: ptr(0)}}, func(t *testing.T, e *env) {
		var logBuf podmantest.Buffer
		c := e.server(api.Options{Limits: api.Limits{MaxCodeBytes: 1 << 10, BodyTimeoutSeconds: 1}}, &logBuf)
		v := "&api-version=2025-10-02-preview"
		ok := "?identifier=bad-input" + v
		cases := []struct {
			name, method, path, body string
			status                   int
			code                     string
		}{
			{"malformed JSON", "POST", "/executions" + ok, `{"code":`, 400, "invalid_argument"},
			{"missing code", "POST", "/executions" + ok, `{"codeInputType":"Inline"}`, 400, "SessionPropertiesMissing"},
			{"empty body", "POST", "/code/execute" + ok, ``, 400, "SessionPropertiesMissing"},
			{"code too large", "POST", "/executions" + ok, `{"code":"` + strings.Repeat("1", 2<<10) + `"}`, 413, "too_large"},
			{"shell command", "POST", "/executions" + ok, `{"shellCommand":"ls"}`, 400, "invalid_argument"},
			{"bad timeout", "POST", "/executions" + ok, `{"code":"1","timeoutInSeconds":-1}`, 400, "invalid_argument"},
			{"bad enum", "POST", "/executions" + ok, `{"code":"1","executionType":"Later"}`, 400, "invalid_argument"},
			{"unknown api-version", "POST", "/executions?identifier=bad-input&api-version=2099-01-01", `{"code":"1"}`, 400, "unsupported_api_version"},
			{"no identifier", "POST", "/executions?api-version=2025-10-02-preview", `{"code":"1"}`, 400, "invalid_identifier"},
			{"3 characters", "POST", "/executions?identifier=abc" + v, `{"code":"1"}`, 400, "invalid_identifier"},
			{"129 characters", "POST", "/executions?identifier=" + strings.Repeat("a", 129) + v, `{"code":"1"}`, 400, "invalid_identifier"},
			{"space", "POST", "/executions?identifier=a%20bcd" + v, `{"code":"1"}`, 400, "invalid_identifier"},
			{"unicode", "POST", "/executions?identifier=" + url.QueryEscape("sessión") + v, `{"code":"1"}`, 400, "invalid_identifier"},
			{"slash", "POST", "/executions?identifier=ab%2Fcd" + v, `{"code":"1"}`, 400, "invalid_identifier"},
			{"dot dot", "POST", "/executions?identifier=..%2F.." + v, `{"code":"1"}`, 400, "invalid_identifier"},
			{"NUL", "POST", "/executions?identifier=abcd%00" + v, `{"code":"1"}`, 400, "invalid_identifier"},
			{"question mark", "POST", "/executions?identifier=abcd%3F" + v, `{"code":"1"}`, 400, "invalid_identifier"},
			{"unknown route", "GET", "/nothing" + ok, ``, 404, "route_not_found"},
			{"wrong method", "GET", "/executions" + ok, ``, 405, "method_not_allowed"},
			{"unknown execution", "GET", "/executions/0123456789ab" + ok, ``, 404, "execution_not_found"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				want(t, c.do(tc.method, tc.path, strings.NewReader(tc.body), "application/json"), tc.status, tc.code)
			})
		}
		want(t, c.root().get("/pools/nope/files"+ok), 404, "pool_not_found")
		noToken := *c
		noToken.token = ""
		r := noToken.post("/executions"+ok, `{"code":"1"}`)
		want(t, r, 401, "unauthenticated")
		if r.header.Get("WWW-Authenticate") == "" {
			t.Fatal("401 without WWW-Authenticate")
		}
		wrong := *c
		wrong.token = "not-a-key-at-all-0000"
		want(t, wrong.post("/executions"+ok, `{"code":"1"}`), 401, "unauthenticated")
		if st := e.mgr.Pool(e.cfg.Name).Status(); st.Allocated+st.Pending != 0 {
			t.Fatalf("bad requests created sessions: %+v", st)
		}

		// A slow client: a body that stalls is cut off; the server goes on.
		u, _ := url.Parse(c.url)
		conn, err := net.Dial("tcp", u.Host)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "POST /pools/%s/executions%s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: 100\r\n\r\n{\"code\":", e.cfg.Name, ok, aliceKey)
		conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		head, _ := io.ReadAll(io.LimitReader(conn, 12))
		conn.Close()
		if !strings.HasPrefix(string(head), "HTTP/1.1 4") {
			t.Fatalf("stalled body: %q", head)
		}
		want(t, c.root().get("/healthz"), 200, "")
		r = c.post("/executions"+ok, `{"code":"'still fine'"}`)
		if r.json(t)["result"].(map[string]any)["executionResult"] != "still fine" {
			t.Fatalf("after the bad input: %s", r.body)
		}
		logs := logBuf.String()
		for _, secret := range []string{aliceKey, "bad-input", "still fine", "not-a-key"} {
			if strings.Contains(logs, secret) {
				t.Fatalf("the access log holds %q", secret)
			}
		}
		if !strings.Contains(logs, `"route":"executions"`) {
			t.Fatalf("no access log: %s", logs)
		}
	})
}

// TestLimits: per-principal rate and capacity errors as 429 with
// Retry-After; other callers unaffected.
func TestLimits(t *testing.T) {
	eachRuntime(t, pool.Config{Scale: pool.ScaleConfig{MaxConcurrentSessions: 1, ReadySessionInstances: ptr(0)}}, func(t *testing.T, e *env) {
		c := e.server(api.Options{Limits: api.Limits{RequestsPerSecond: 1, Burst: 3}}, nil)
		v := "&api-version=2025-10-02-preview"
		want(t, c.post("/executions?identifier=limit-1"+v, `{"code":"1"}`), 200, "")
		r := c.post("/executions?identifier=limit-2"+v, `{"code":"1"}`)
		want(t, r, 429, "capacity_exceeded")
		if r.header.Get("Retry-After") == "" {
			t.Fatal("capacity error without Retry-After")
		}
		var limited response
		for range 5 {
			if limited = c.get("/session?identifier=limit-1" + v); limited.status == 429 {
				break
			}
		}
		want(t, limited, 429, "rate_limited")
		if limited.header.Get("Retry-After") == "" {
			t.Fatal("rate limit without Retry-After")
		}
		bob := *c
		bob.token = bobKey
		want(t, bob.get("/session?identifier=limit-1"+v), 404, "not_found")
	})
}
