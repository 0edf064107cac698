package mcp_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/rs/zerolog"

	"github.com/sandpool/sandpool/api"
	"github.com/sandpool/sandpool/internal/inproc"
	"github.com/sandpool/sandpool/pool"
	"github.com/sandpool/sandpool/tools"
	mcpsrv "github.com/sandpool/sandpool/tools/mcp"
)

// The tests in this file are the MCP surface's integration tests
// (integration_test.go) over the in-process engine: real agents and
// kernels on the host's python3, no podman, in seconds.

// newInprocEnv is an env whose pool runs on the in-process engine.
func newInprocEnv(t *testing.T) *env {
	t.Helper()
	if !inproc.HasIPython() {
		t.Skip("the host's python3 has no IPython (the image test displays through it)")
	}
	cfg := pool.Config{Name: "mcp-inproc",
		Scale:     pool.ScaleConfig{MaxConcurrentSessions: 8, ReadySessionInstances: ptr(0)},
		Execution: pool.ExecutionConfig{DefaultTimeoutInSeconds: 30, MaxTimeoutInSeconds: 60}}
	m, _ := inproc.Manager(t, cfg)
	p := m.Pool(cfg.Name)
	ms, err := mcpsrv.New(mcpsrv.Options{
		Service:   tools.NewService(p, tools.PoolLimits(p.Config())),
		Secret:    m.Hasher().Derive("mcp"),
		Principal: api.PrincipalFrom,
		Log:       zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
	})
	if err != nil {
		t.Fatal(err)
	}
	s, err := api.New(context.Background(), api.Options{Manager: m, MCP: func(string) http.Handler { return ms.Handler() },
		Auth: api.AuthConfig{APIKeys: []api.APIKey{{Name: "alice", Key: aliceKey}, {Name: "bob", Key: bobKey}}},
		Log:  zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(nil)
	ts.Config = s.HTTPServer(nil)
	ts.Start()
	t.Cleanup(func() {
		ts.Close()
		s.Close(context.Background())
		ms.Close(context.Background())
	})
	return &env{t: t, url: ts.URL + "/mcp", pool: p, mcp: ms, inproc: true}
}

// pngCode displays a 1x1 PNG through IPython's display machinery (the host
// has no matplotlib; the rendering of image data is the same).
const pngCode = "import base64\nfrom IPython.display import display, Image\n" +
	"display(Image(data=base64.b64decode('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==')))"

// TestInprocMCPOverHTTP is TestMCPOverHTTP over the in-process engine.
func TestInprocMCPOverHTTP(t *testing.T) {
	t.Parallel()
	testMCPOverHTTP(t, newInprocEnv(t))
}

// TestInprocMCPBindingAndBadInput is TestMCPBindingAndBadInput over the
// in-process engine.
func TestInprocMCPBindingAndBadInput(t *testing.T) {
	t.Parallel()
	testMCPBindingAndBadInput(t, newInprocEnv(t))
}

// TestInprocGoSDKClient is TestGoSDKClient over the in-process engine.
func TestInprocGoSDKClient(t *testing.T) {
	t.Parallel()
	testGoSDKClient(t, newInprocEnv(t))
}
