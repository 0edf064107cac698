package api_test

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sandpool/sandpool/api"
	"github.com/sandpool/sandpool/internal/inproc"
	"github.com/sandpool/sandpool/internal/podmantest"
	"github.com/sandpool/sandpool/pool"
)

// The tests in the inproc_*_test.go files run the HTTP surface over the
// in-process engine (real agents and kernels, the host's python3, no
// podman): the wire formats, files, sessions and the WebSocket in seconds.
// The same surface over real containers, under runc and runsc, is tested
// in integration_test.go and ws_test.go.

// newInprocEnv is an env whose pool runs on the in-process engine.
func newInprocEnv(t *testing.T, cfg pool.Config) *env {
	t.Helper()
	cfg.Name = "api-inproc"
	m, _ := inproc.Manager(t, cfg)
	return &env{t: t, rt: podmantest.Runtime{Name: inproc.Runtime}, mgr: m, cfg: m.Pool(cfg.Name).Config(), inproc: true}
}

// exchange is one request of a golden test and what it is expected to show.
type exchange struct {
	name, method, path, body string
}

// goldenHeaders are the response headers a golden file records.
var goldenHeaders = []string{"Content-Type", "x-ms-error-code", "Retry-After", "Operation-Location", "operation-id"}

// record runs the exchanges in order and renders what came back,
// normalised, for a golden file.
func (c *client) record(t *testing.T, xs []exchange) ([]byte, []response) {
	t.Helper()
	var out []byte
	var rs []response
	for _, x := range xs {
		var r response
		if x.method == "POST" {
			r = c.post(x.path, x.body)
		} else {
			r = c.do(x.method, x.path, nil, "")
		}
		out = append(out, render(t, x, r)...)
		rs = append(rs, r)
	}
	return out, rs
}

// render renders one exchange for a golden file.
func render(t *testing.T, x exchange, r response) []byte {
	t.Helper()
	var b strings.Builder
	{
		fmt.Fprintf(&b, "=== %s\n%s %s\n", x.name, x.method, x.path)
		if body := x.body; len(body) > 200 {
			fmt.Fprintf(&b, "%s... (%d bytes)\n", body[:60], len(body))
		} else if body != "" {
			fmt.Fprintf(&b, "%s\n", body)
		}
		fmt.Fprintf(&b, "--- %d %s\n", r.status, http.StatusText(r.status))
		for _, h := range goldenHeaders {
			if v := r.header.Get(h); v != "" {
				switch h {
				case "operation-id":
					v = "<id>"
				case "Operation-Location":
					v = opLocation.ReplaceAllString(v, "/executions/<id>?")
				}
				fmt.Fprintf(&b, "%s: %s\n", h, v)
			}
		}
		if len(r.body) > 0 {
			b.WriteString(normalizeJSON(t, r.body))
			b.WriteString("\n")
		}
		b.WriteString("\n")
	}
	return []byte(b.String())
}

var opLocation = regexp.MustCompile(`/executions/[^?/]+\?`)

func checkIPython(t *testing.T) {
	t.Helper()
	if !inproc.HasIPython() {
		t.Skip("the host's python3 has no IPython: the golden files are IPython's rendering")
	}
}

// pngCode displays a 1x1 PNG through IPython's display machinery (the host
// has no matplotlib; the rendering of image data is the same).
const pngCode = "import base64\nfrom IPython.display import display, Image\n" +
	"display(Image(data=base64.b64decode('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==')))"

// TestInprocExecuteGolden: the execute responses of the three wire
// generations (legacy python/execute, 2024-02-02 code/execute, 2024-10-02
// and later executions), results, exceptions, images, timeouts, output
// caps and asynchronous executions, against testdata/execute.golden.
func TestInprocExecuteGolden(t *testing.T) {
	t.Parallel()
	e := newInprocEnv(t, pool.Config{Scale: pool.ScaleConfig{MaxConcurrentSessions: 2, ReadySessionInstances: ptr(0)}})
	c := e.server(api.Options{}, nil)
	checkIPython(t)
	q := "?identifier=golden-exec&api-version="
	v2, v3 := q+"2024-02-02-preview", q+"2025-10-02-preview"
	xs := []exchange{
		{"legacy", "POST", "/python/execute", `{"properties":{"identifier":"golden-exec","codeInputType":"inline","executionType":"synchronous","pythonCode":"x = 6 * 7\nx"}}`},
		{"legacy exception", "POST", "/python/execute", `{"properties":{"identifier":"golden-exec","pythonCode":"print('before')\n1/0"}}`},
		{"2024-02-02 envelope", "POST", "/code/execute" + v2, `{"properties":{"codeInputType":"inline","executionType":"synchronous","code":"print(x)\n{'a': x}"}}`},
		{"2024-02-02 flat", "POST", "/code/execute" + v2, `{"codeInputType":"INLINE","executionType":"SYNCHRONOUS","code":"import sys\nprint('err', file=sys.stderr)\nx"}`},
		{"2024-02-02 exception", "POST", "/code/execute" + v2, `{"properties":{"code":"print('before')\n1/0"}}`},
		{"2024-02-02 image", "POST", "/code/execute" + v2, `{"properties":{"code":` + jsonString(pngCode) + `}}`},
		{"2024-02-02 no result", "POST", "/code/execute" + v2, `{"properties":{"code":"y = 1"}}`},
		{"executions", "POST", "/executions" + v3, `{"codeInputType":"Inline","executionType":"Synchronous","code":"print(7*9)","timeoutInSeconds":60}`},
		{"execute alias", "POST", "/execute" + v3, `{"code":"x + 1"}`},
		{"string result", "POST", "/executions" + v3, `{"code":"'nan'"}`},
		{"jupyter-format result", "POST", "/executions" + v3, `{"code":"'nan'","returnJupyterFormatExecutionResult":true}`},
		{"executions exception", "POST", "/executions" + v3, `{"code":"raise KeyError('k')"}`},
		{"executions image", "POST", "/executions" + v3, `{"code":` + jsonString(pngCode) + `}`},
		{"timeout", "POST", "/executions" + v3, `{"code":"import time\ntime.sleep(5)","timeoutInSeconds":1}`},
		{"output cap", "POST", "/executions" + v3, `{"code":"print('x' * 300)","outputStreamsMaxLength":100}`},
		{"state after the timeout", "POST", "/executions" + v3, `{"code":"x"}`},
		{"asynchronous", "POST", "/executions" + q + "2025-02-02-preview", `{"executionType":"Asynchronous","code":"import time\ntime.sleep(0.5)\nx + 1"}`},
	}
	got, rs := c.record(t, xs)
	// The asynchronous execution's result, once it is done.
	loc := strings.TrimPrefix(rs[len(rs)-1].header.Get("Operation-Location"), "/pools/"+e.cfg.Name)
	x := exchange{"asynchronous, done", "GET", opLocation.ReplaceAllString(loc, "/executions/<id>?"), ""}
	deadline := time.Now().Add(time.Minute)
	for {
		r := c.get(loc)
		if r.json(t)["status"] != "Running" || time.Now().After(deadline) {
			got = append(got, render(t, x, r)...)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	golden(t, "execute", got)
}

// TestInprocErrorsGolden: the error bodies of every generation for bad
// input, against testdata/errors.golden.
func TestInprocErrorsGolden(t *testing.T) {
	t.Parallel()
	e := newInprocEnv(t, pool.Config{Scale: pool.ScaleConfig{MaxConcurrentSessions: 1, ReadySessionInstances: ptr(0)}})
	c := e.server(api.Options{Limits: api.Limits{MaxCodeBytes: 1 << 10}}, nil)
	ok := "?identifier=golden-err&api-version="
	var xs []exchange
	for _, gen := range []struct{ name, path, version string }{
		{"legacy", "/python/execute", ""},
		{"2024-02-02", "/code/execute", "2024-02-02-preview"},
		{"2025-10-02", "/executions", "2025-10-02-preview"},
	} {
		p := gen.path + ok + gen.version
		if gen.version == "" {
			p = gen.path + "?identifier=golden-err"
		}
		xs = append(xs,
			exchange{gen.name + " malformed JSON", "POST", p, `{"code":`},
			exchange{gen.name + " empty body", "POST", p, ``},
			exchange{gen.name + " missing code", "POST", p, `{"codeInputType":"Inline"}`},
			exchange{gen.name + " code too large", "POST", p, `{"code":"` + strings.Repeat("1", 2<<10) + `"}`},
			exchange{gen.name + " bad timeout", "POST", p, `{"code":"1","timeoutInSeconds":-1}`},
			exchange{gen.name + " bad identifier", "POST", strings.Replace(p, "golden-err", "abc", 1), `{"code":"1"}`},
		)
	}
	xs = append(xs,
		exchange{"shell command", "POST", "/executions" + ok + "2025-10-02-preview", `{"shellCommand":"ls"}`},
		exchange{"bad enum", "POST", "/executions" + ok + "2025-10-02-preview", `{"code":"1","executionType":"Later"}`},
		exchange{"unknown api-version", "POST", "/executions" + ok + "2099-01-01", `{"code":"1"}`},
		exchange{"no identifier", "POST", "/executions?api-version=2025-10-02-preview", `{"code":"1"}`},
		exchange{"unknown route", "GET", "/nothing" + ok + "2025-10-02-preview", ``},
		exchange{"wrong method", "GET", "/executions" + ok + "2025-10-02-preview", ``},
		exchange{"unknown execution", "GET", "/executions/0123456789ab" + ok + "2025-10-02-preview", ``},
		exchange{"no session", "GET", "/session" + ok + "2025-02-02-preview", ``},
		exchange{"first session", "POST", "/executions" + ok + "2025-10-02-preview", `{"code":"1"}`},
		exchange{"capacity", "POST", "/executions?identifier=golden-other&api-version=2025-10-02-preview", `{"code":"1"}`},
	)
	got, _ := c.record(t, xs)
	noToken := *c
	noToken.token = ""
	more, _ := noToken.record(t, []exchange{{"no token", "POST", "/executions" + ok + "2025-10-02-preview", `{"code":"1"}`}})
	got = append(got, more...)
	golden(t, "errors", got)
}
