package api_test

import (
	"bytes"
	"fmt"
	"io"
	"mime/multipart"
	"strings"
	"testing"
	"time"

	"github.com/sandpool/sandpool/api"
	"github.com/sandpool/sandpool/pool"
)

// TestInprocFilesRoundTrip: TestFilesRoundTrip over the in-process engine:
// upload in every generation, code that reads the files and writes one,
// listings, downloads, metadata, delete, refused names and the upload cap
// (a small one).
func TestInprocFilesRoundTrip(t *testing.T) {
	t.Parallel()
	e := newInprocEnv(t, pool.Config{Scale: pool.ScaleConfig{MaxConcurrentSessions: 2, ReadySessionInstances: ptr(0)}})
	// A 1 MiB upload cap: the cap's behaviour without moving 129 MiB.
	c := e.server(api.Options{Limits: api.Limits{MaxUploadBytes: 1 << 20}}, nil)
	const id = "?identifier=files-session"
	v2, v3 := id+"&api-version=2024-02-02-preview", id+"&api-version=2025-10-02-preview"

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

	// Code reads the files and writes a PNG (the host has no matplotlib).
	r = c.post("/code/execute"+v2, `{"properties":{"code":`+jsonString(
		"import csv, base64\nrows = list(csv.DictReader(open('data.csv')))\n"+
			"open('plot.png', 'wb').write(base64.b64decode('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=='))\n"+
			"sum(int(r['b']) for r in rows), open('in/notes.txt').read()")+`}}`)
	if p := r.json(t)["properties"].(map[string]any); p["result"] != "(6, 'hello')" {
		t.Fatalf("code over the files: %s", r.body)
	}

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
	keys(t, "GET files/{name}", c.get("/files/plot.png"+v3).json(t), "name", "directory", "type", "contentType", "sizeInBytes", "lastModifiedAt")
	want(t, c.do("DELETE", "/files/plot.png"+v3, nil, ""), 204, "")
	want(t, c.get("/files/plot.png"+v3), 404, "not_found")
	if r = c.do("DELETE", "/files/legacy.txt"+v2, nil, ""); r.status != 200 || r.json(t)["message"] != "file deleted successfully" {
		t.Fatalf("2024-02 delete: %d %s", r.status, r.body)
	}

	for _, name := range []string{"../escape.txt", "/etc/passwd", "a\x00b", strings.Repeat("n", 10<<10), "in/../../x", "a*b", "a\\b"} {
		want(t, c.upload("/files"+v3, name, []byte("x")), 400, "invalid_argument")
	}
	for _, path := range []string{"/files/content/..%2F..%2Fetc%2Fpasswd", "/files/%2Fetc%2Fpasswd/content", "/files/a%00b"} {
		want(t, c.get(path+id), 400, "invalid_argument")
	}
	big := bytes.Repeat([]byte("z"), 1<<20+1)
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

// TestInprocSessionsAndPools: TestSessionsAndPools over the in-process
// engine: session routes, listings, readiness, principals kept apart.
func TestInprocSessionsAndPools(t *testing.T) {
	t.Parallel()
	e := newInprocEnv(t, pool.Config{Scale: pool.ScaleConfig{MaxConcurrentSessions: 3, ReadySessionInstances: ptr(1)}})
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
	if rt := m["runtimes"].([]any)[0].(map[string]any); rt["name"] != "python" || !strings.HasPrefix(rt["version"].(string), "3.") {
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
