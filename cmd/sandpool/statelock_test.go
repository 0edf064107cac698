package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/sandpool/sandpool/internal/podmantest"
	"github.com/sandpool/sandpool/internal/statedir"
)

// TestF11StateDirInUse: serve and an embedded mcp on a state directory
// that another process holds stop at once, with an error naming the
// holder's pid, before they start an engine or touch a sandbox.
func TestF11StateDirInUse(t *testing.T) {
	dir := t.TempDir()
	l, err := statedir.Acquire(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	path := filepath.Join(t.TempDir(), "sandpool.yaml")
	if err := os.WriteFile(path, []byte("server:\n  stateDir: "+dir+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"serve", "--config", path}, {"mcp", "--config", path}, {"mcp", "--state-dir", dir}} {
		var stderr bytes.Buffer
		cmd := strings.Join(args, " ")
		code := run(context.Background(), args, strings.NewReader(""), &bytes.Buffer{}, &stderr)
		if want := "held by another sandpool (pid " + strconv.Itoa(os.Getpid()) + ")"; code != 1 || !strings.Contains(stderr.String(), want) {
			t.Errorf("%s on a held state directory: exit %d, %q; want 1 and %q", cmd, code, stderr.String(), want)
		}
	}
}

// TestF11DefaultsDiffer: an embedded `sandpool mcp` has its own default
// state directory and server id, distinct from serve's and from another
// embedded mcp's, and stable for its slot across restarts.
func TestF11DefaultsDiffer(t *testing.T) {
	old := mcpStateBase
	mcpStateBase = t.TempDir()
	t.Cleanup(func() { mcpStateBase = old })

	serveCfg, err := loadConfig("")
	if err != nil {
		t.Fatal(err)
	}
	lock := func() (*statedir.Lock, serverConfig) {
		t.Helper()
		c, err := loadMCPConfig("")
		if err != nil {
			t.Fatal(err)
		}
		l, err := lockState(&c.Server)
		if err != nil {
			t.Fatal(err)
		}
		return l, c.Server
	}
	l1, a := lock()
	l2, b := lock()
	for _, s := range []serverConfig{a, b} {
		if s.StateDir == serveCfg.Server.StateDir || s.ServerID == serveCfg.Server.ServerID || !strings.HasPrefix(s.StateDir, mcpStateBase) {
			t.Fatalf("mcp defaults %s %s, serve's %s %s", s.StateDir, s.ServerID, serveCfg.Server.StateDir, serveCfg.Server.ServerID)
		}
	}
	if a.StateDir == b.StateDir || a.ServerID == b.ServerID {
		t.Fatalf("two embedded mcp share %s / %s and %s / %s", a.StateDir, a.ServerID, b.StateDir, b.ServerID)
	}
	l1.Close()
	l3, c := lock()
	if c.StateDir != a.StateDir || c.ServerID != a.ServerID {
		t.Fatalf("the freed slot %s / %s came back as %s / %s", a.StateDir, a.ServerID, c.StateDir, c.ServerID)
	}
	l2.Close()
	l3.Close()
}

// TestF11ServeBesideMCP: a real `sandpool mcp` process holds its state
// directory; `sandpool serve` configured on the same one refuses to start
// and names that process.
func TestF11ServeBesideMCP(t *testing.T) {
	serverID := podmantest.ServerID("f11")
	path, _ := writeConfig(t, serverID, "")
	p := startStdio(t, nil, "mcp", "--config", path)
	p.initialize()
	var stderr bytes.Buffer
	code := run(context.Background(), []string{"serve", "--config", path}, strings.NewReader(""), &bytes.Buffer{}, &stderr)
	if want := "(pid " + strconv.Itoa(p.cmd.Process.Pid) + ")"; code != 1 || !strings.Contains(stderr.String(), want) {
		t.Fatalf("serve beside mcp: exit %d, %q; want 1 and %q", code, stderr.String(), want)
	}
	p.finish()
}
