package inproc_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sandpool/sandpool/internal/errcode"
	"github.com/sandpool/sandpool/internal/inproc"
	"github.com/sandpool/sandpool/pool"
	"github.com/sandpool/sandpool/sandbox"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func run(t *testing.T, sb *sandbox.Sandbox, code string) string {
	t.Helper()
	var col sandbox.Collector
	res, err := sb.Execute(context.Background(), sandbox.ExecRequest{Code: code, Timeout: 20 * time.Second}, col.Sink())
	if err != nil {
		t.Fatalf("Execute(%q): %v", code, err)
	}
	if res.Status != sandbox.StatusOK {
		t.Fatalf("Execute(%q): status %s, error %+v", code, res.Status, col.Out.Error)
	}
	return string(col.Out.Stdout)
}

// TestEngine: labels, listing, a data directory per sandbox, adoption by
// id with the kernel's state, removal of the sandbox and its directory.
func TestEngine(t *testing.T) {
	t.Parallel()
	e := inproc.ForTest(t, inproc.Config{})
	ctx := context.Background()
	spec := func(pool string) sandbox.Spec {
		return sandbox.Spec{Image: "inproc", Labels: map[string]string{"sandpool.pool": pool}, Preload: []string{}}
	}
	a, err := e.Create(ctx, spec("a"))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := e.Create(ctx, spec("b"))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if a.ID == b.ID || a.Name == b.Name || len(a.ID) != 64 {
		t.Fatalf("ids %q %q, names %q %q: want distinct random ids", a.ID, b.ID, a.Name, b.Name)
	}
	if !a.BootInfo.Kernel.Ready {
		t.Fatalf("boot info %+v: kernel not ready", a.BootInfo)
	}

	list, err := e.List(ctx, map[string]string{"sandpool.pool": "a"})
	if err != nil || len(list) != 1 || list[0].ID != a.ID || !list[0].Running || list[0].Labels["sandpool.pool"] != "a" {
		t.Fatalf("List(pool a) = %+v, %v; want only a", list, err)
	}
	if all, _ := e.List(ctx, nil); len(all) != 2 {
		t.Fatalf("List(nil): %d sandboxes, want 2", len(all))
	}

	// Each sandbox has a data directory of its own, its working directory.
	dirA := run(t, a, "import os\nopen('mine.txt', 'w').write('a')\nprint(os.getcwd(), end='')\nkept = 41")
	dirB := run(t, b, "import os\nprint(os.getcwd(), end='')")
	if dirA == dirB || filepath.Base(dirA) != "data" {
		t.Fatalf("data directories %q and %q: want one per sandbox", dirA, dirB)
	}
	if names, _, err := b.List(ctx, ""); err != nil || len(names) != 0 {
		t.Fatalf("b's files: %v %v; want none of a's", names, err)
	}

	// Adoption: a new client of a's agent finds its kernel state.
	a2, err := e.Open(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer a2.Close()
	if got := run(t, a2, "print(kept + 1)"); got != "42\n" {
		t.Fatalf("after Open: %q, want the kernel's state", got)
	}
	if _, err := e.Open(ctx, "0123"); errcode.Of(err) != errcode.NotFound {
		t.Fatalf("Open(unknown) = %v, want not_found", err)
	}

	// Removal: the directory goes, the sandbox is gone to its clients.
	if err := e.Remove(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Dir(dirA)); !os.IsNotExist(err) {
		t.Fatalf("after Remove, %s: %v; want it removed", filepath.Dir(dirA), err)
	}
	var col sandbox.Collector
	if _, err := a2.Execute(ctx, sandbox.ExecRequest{Code: "1", Timeout: time.Second}, col.Sink()); errcode.Of(err) != errcode.SandboxGone {
		t.Fatalf("Execute after Remove: %v, want sandbox_gone", err)
	}
	if err := e.Remove(ctx, a.ID); err != nil {
		t.Fatalf("second Remove: %v", err)
	}
	if list, _ := e.List(ctx, nil); len(list) != 1 || list[0].ID != b.ID {
		t.Fatalf("after Remove: %+v", list)
	}
}

// TestEngineRefusesApps: custom containers need an image's program.
func TestEngineRefusesApps(t *testing.T) {
	t.Parallel()
	e := inproc.ForTest(t, inproc.Config{})
	_, err := e.Create(context.Background(), sandbox.Spec{Image: "x", App: &sandbox.App{Port: 8080}})
	if errcode.Of(err) != errcode.InvalidArgument {
		t.Fatalf("Create(app) = %v, want invalid_argument", err)
	}
}

// TestManagerAdoptsAcrossRestart: a pool manager restarted on the same
// engine and state directory adopts its sessions (kernel state kept), as
// a restarted server adopts its containers.
func TestManagerAdoptsAcrossRestart(t *testing.T) {
	t.Parallel()
	e := inproc.ForTest(t, inproc.Config{})
	dir := t.TempDir()
	cfg := pool.Config{Name: "adopt", Runtime: inproc.Runtime, Image: "inproc", Scale: pool.ScaleConfig{MaxConcurrentSessions: 2, ReadySessionInstances: ptr(0)}}
	id, err := pool.ParseIdentifier("adopt-session")
	if err != nil {
		t.Fatal(err)
	}
	k := pool.Key("alice", id)
	start := func() *pool.Manager {
		m, err := pool.NewManager(context.Background(), []pool.Config{cfg}, pool.ManagerOptions{
			Engines:  map[string]pool.Engine{inproc.Runtime: e},
			StateDir: dir,
			Settings: pool.Settings{ServerID: "inproc-adopt"},
		})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	exec := func(m *pool.Manager, code string) string {
		t.Helper()
		var col sandbox.Collector
		res, err := m.Pool("adopt").Execute(context.Background(), k, sandbox.ExecRequest{Code: code, Timeout: 20 * time.Second}, col.Sink())
		if err != nil || res.Status != sandbox.StatusOK {
			t.Fatalf("Execute(%q): %v %+v", code, err, res)
		}
		return string(col.Out.Stdout)
	}
	m1 := start()
	exec(m1, "kept = 'yes'")
	m1.Close(context.Background())
	if e.Len() != 1 {
		t.Fatalf("%d sandboxes after the first manager closed, want its session's", e.Len())
	}
	m2 := start()
	defer m2.Close(context.Background())
	if got := exec(m2, "print(kept)"); got != "yes\n" {
		t.Fatalf("after the restart: %q, want the adopted kernel's state", got)
	}
}

func ptr(n int) *int { return &n }
