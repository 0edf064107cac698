package archtest

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/sandpool/sandpool"

// buildTags are the tags every sandpool build uses (podman bindings).
const buildTags = "remote,containers_image_openpgp,exclude_graphdriver_btrfs"

type pkg struct {
	ImportPath string
	Doc        string
	Imports    []string
	Name       string
}

func list(t *testing.T) []pkg {
	t.Helper()
	out, err := exec.Command("go", "list", "-e", "-tags", buildTags, "-deps=false", "-json", module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	var pkgs []pkg
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

// rules: a package must not depend on any of the listed import paths (or
// prefixes ending in "/"), nor import any of direct itself. (Surfaces reach
// the sandbox's types through the pool's names for them, so depending on
// sandbox through pool is fine, importing it is not.)
var rules = []struct {
	pkg    string
	forbid []string
	why    string
	direct []string
}{
	{"cmd/sandpool-agent", []string{module + "/sandbox", module + "/sandbox/podman", module + "/pool", module + "/api/", module + "/tools/", module + "/agents", "github.com/containers/podman/"},
		"the in-sandbox binary must stay small, static and server-free", nil},
	{"sandbox/agent", []string{module + "/sandbox", module + "/sandbox/podman", module + "/pool", "github.com/containers/podman/"},
		"the agent is the other end of the protocol; it shares only agentproto", nil},
	{"sandbox/agentproto", []string{module + "/"}, "a leaf both ends import: standard library and yamux only", nil},
	{"internal/errcode", []string{module + "/"}, "a leaf every layer imports", nil},
	{"sandbox", []string{module + "/pool", module + "/sandbox/podman", module + "/sandbox/agent", "github.com/containers/podman/", "net/http"},
		"the engine-independent half knows nothing of backends, sessions or HTTP", nil},
	{"sandbox/podman", []string{module + "/pool", module + "/api/", module + "/tools/", module + "/agents", module + "/sandbox/agent"},
		"the podman backend sits below the pool and beside the agent", nil},
	{"pool", []string{module + "/api", module + "/tools", module + "/agents", module + "/sandbox/podman", "github.com/containers/podman/", "github.com/gorilla/websocket", "github.com/mark3labs/mcp-go/"},
		"pools know nothing of surfaces or of podman", nil},
	{"tools", []string{module + "/api", module + "/sandbox/podman", "github.com/mark3labs/mcp-go/", "github.com/tmc/langchaingo/", "github.com/containers/podman/"},
		"tool semantics are shared by MCP and langchaingo surfaces, over the pool's interface", []string{module + "/sandbox"}},
	{"tools/mcp", []string{module + "/api", module + "/agents", module + "/sandbox/podman", "github.com/tmc/langchaingo/", "github.com/containers/podman/"},
		"the MCP surface is wiring over tools", []string{module + "/sandbox"}},
	{"agents", []string{module + "/api", module + "/tools/mcp", module + "/sandbox/podman", "github.com/mark3labs/mcp-go/", "github.com/containers/podman/"},
		"langchaingo tools use the pool's interface, not the engine", []string{module + "/sandbox"}},
	{"api/wire", []string{module + "/"}, "a leaf both the server and its client import", nil},
	{"api/client", []string{module + "/api", module + "/tools", module + "/agents", module + "/sandbox/podman", "github.com/mark3labs/mcp-go/", "github.com/containers/podman/"},
		"the client carries none of the server", []string{module + "/sandbox"}},
	{"api", []string{module + "/tools", module + "/tools/mcp", module + "/agents", module + "/sandbox/podman", "github.com/mark3labs/mcp-go/", "github.com/tmc/langchaingo/"},
		"the HTTP surface talks to pools only (MCP is handed to it as an http.Handler)", nil},
	{"cmd/sandpool", []string{module + "/sandbox/agent", module + "/internal/inproc"},
		"the server runs sandboxes behind an engine; the agent runs only inside them", nil},
	{"internal/inproc", []string{module + "/api", module + "/tools", module + "/agents", module + "/sandbox/podman", "github.com/containers/podman/"},
		"the in-process test engine stands where sandbox/podman stands: below the surfaces", nil},
}

func deps(t *testing.T, path string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-tags", buildTags, "-deps", "-f", "{{.ImportPath}}", path).Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v", path, err)
	}
	return strings.Fields(string(out))
}

func imports(t *testing.T, path string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-tags", buildTags, "-f", `{{join .Imports " "}}`, path).Output()
	if err != nil {
		t.Fatalf("go list %s: %v", path, err)
	}
	return strings.Fields(string(out))
}

func forbidden(dep string, rule []string) bool {
	for _, f := range rule {
		if strings.HasSuffix(f, "/") && strings.HasPrefix(dep, f) || dep == f {
			return true
		}
	}
	return false
}

func TestImportRules(t *testing.T) {
	for _, r := range rules {
		path := module + "/" + r.pkg
		for _, d := range deps(t, path) {
			if d != path && forbidden(d, r.forbid) {
				t.Errorf("%s imports %s: %s", r.pkg, d, r.why)
			}
		}
		for _, d := range imports(t, path) {
			if forbidden(d, r.direct) {
				t.Errorf("%s imports %s directly: %s", r.pkg, d, r.why)
			}
		}
	}
}

// TestNoTestingInBinaries: our test helpers never reach a non-test build.
// (A dependency of the podman bindings imports "testing" itself; only our
// own packages are checked for it.)
func TestNoTestingInBinaries(t *testing.T) {
	for _, p := range list(t) {
		if strings.HasSuffix(p.ImportPath, "/podmantest") || strings.HasSuffix(p.ImportPath, "/archtest") || strings.HasSuffix(p.ImportPath, "/inproc") || strings.HasSuffix(p.ImportPath, "/golden") {
			continue
		}
		for _, imp := range p.Imports {
			if imp == "testing" {
				t.Errorf("%s imports testing outside its tests", p.ImportPath)
			}
		}
		for _, d := range deps(t, p.ImportPath) {
			if d == module+"/internal/podmantest" {
				t.Errorf("%s depends on podmantest outside its tests", p.ImportPath)
			}
			// The in-process engine runs sandbox code on the host,
			// unisolated: never in a binary.
			if d == module+"/internal/inproc" {
				t.Errorf("%s depends on the in-process test engine outside its tests", p.ImportPath)
			}
		}
	}
}

func TestPackagesHaveDocs(t *testing.T) {
	for _, p := range list(t) {
		if p.Doc == "" {
			t.Errorf("%s has no package doc comment", p.ImportPath)
			continue
		}
		if want := "Package " + p.Name + " "; p.Name != "main" && !strings.HasPrefix(p.Doc, want) {
			t.Errorf("%s: package doc should start with %q", p.ImportPath, want)
		}
	}
}
