package podman

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"go.podman.io/common/pkg/seccomp"

	"github.com/sandpool/sandpool/sandbox"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestBuildSpecGolden pins the container spec (all hardening lives there)
// as the JSON podman receives.
func TestBuildSpecGolden(t *testing.T) {
	s := sandbox.Spec{Image: "localhost/sandpool-python:test", Isolation: sandbox.IsolationGVisor,
		Labels: map[string]string{"sandpool.pool": "p", "sandpool.session": "abc123"}}
	if err := s.Normalize(); err != nil {
		t.Fatal(err)
	}
	g := buildSpec(&s, containerParams{name: "sandpool-0011223344556677", uid: 2097152, hostname: "sbx-00112233",
		agentDir: "/var/lib/sandpool/agent/x", emptyDir: "/var/lib/sandpool/empty", emptyFile: "/var/lib/sandpool/empty-file", seccompPath: "/var/lib/sandpool/seccomp-x.json", runtime: "runsc", tokenHash: "ab"})
	if err := g.Validate(); err != nil {
		t.Fatalf("podman rejects the spec: %v", err)
	}
	got, err := json.MarshalIndent(g, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "spec.golden.json")
	if *update {
		if err := os.WriteFile(golden, append(got, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if string(want) != string(got)+"\n" {
		t.Errorf("container spec changed; review it, then run go test -run TestBuildSpecGolden -update\n%s", got)
	}
}

func TestBuildSpecEgress(t *testing.T) {
	s := sandbox.Spec{Image: "i", Network: sandbox.NetworkEgress}
	if err := s.Normalize(); err != nil {
		t.Fatal(err)
	}
	g := buildSpec(&s, containerParams{name: "n", uid: 1 << 21})
	if g.NetNS.NSMode != "bridge" {
		t.Errorf("egress network mode %q", g.NetNS.NSMode)
	}
}

func TestSeccompProfile(t *testing.T) {
	for _, rt := range []string{"runc", "runsc"} {
		b, err := SeccompProfile(rt)
		if err != nil {
			t.Fatal(err)
		}
		var p seccomp.Seccomp
		if err := json.Unmarshal(b, &p); err != nil {
			t.Fatal(err)
		}
		if p.DefaultAction != seccomp.ActErrno {
			t.Errorf("%s: default action %q", rt, p.DefaultAction)
		}
		allowed := map[string]bool{}
		denied := map[string]bool{}
		for _, r := range p.Syscalls {
			for _, n := range r.Names {
				switch {
				case r.Action == seccomp.ActAllow && len(r.Args) == 0 && len(r.Includes.Caps) == 0:
					allowed[n] = true
				case r.Action == seccomp.ActErrno && len(r.Args) == 0:
					denied[n] = true
				}
			}
		}
		for _, n := range deniedSyscalls {
			if allowed[n] || !denied[n] {
				t.Errorf("%s: %s allowed=%v denied=%v", rt, n, allowed[n], denied[n])
			}
		}
		if allowed["clone"] {
			t.Errorf("%s: clone allowed without an argument filter", rt)
		}
		if rt == "runc" && (allowed["clone3"] || !denied["clone3"]) {
			t.Errorf("runc: clone3 must answer ENOSYS")
		}
		for _, n := range []string{"read", "write", "execve", "mmap", "futex", "connect"} {
			if !allowed[n] {
				t.Errorf("%s: %s not allowed", rt, n)
			}
		}
		if !slices.ContainsFunc(p.Syscalls, func(r *seccomp.Syscall) bool {
			return slices.Contains(r.Names, "clone") && r.Action == seccomp.ActAllow && len(r.Args) == 1 && r.Args[0].Value == nsFlags
		}) {
			t.Errorf("%s: no clone rule without namespace flags", rt)
		}
	}
}
