package mcp_test

import (
	"testing"

	"github.com/sandpool/sandpool/api"
	"github.com/sandpool/sandpool/internal/inproc"
	"github.com/sandpool/sandpool/pool"
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
	e := serveMCP(t, m, m.Pool(cfg.Name), api.Limits{}, nil)
	e.inproc = true
	return e
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
