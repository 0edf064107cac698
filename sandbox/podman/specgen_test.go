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
		agentDir: "/var/lib/sandpool/agent/x", emptyDir: "/var/lib/sandpool/empty", emptyFile: "/var/lib/sandpool/empty-file", seccompPath: "/var/lib/sandpool/seccomp-x.json", runtime: "runsc", gvisor: true, tokenHash: "ab"})
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
		b, err := SeccompProfile(rt == "runsc")
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

// allowedBy reports whether p lets syscall name run with args: an allow
// rule whose every comparison holds (as gVisor reads the profile; under
// runc an errno rule also outranks an allow rule, and none overlaps).
func allowedBy(p *seccomp.Seccomp, name string, args ...uint64) bool {
	for _, r := range p.Syscalls {
		if r.Action != seccomp.ActAllow || !slices.Contains(r.Names, name) {
			continue
		}
		ok := true
		for _, a := range r.Args {
			v := args[a.Index]
			switch a.Op {
			case seccomp.OpMaskedEqual:
				ok = ok && v&a.Value == a.ValueTwo
			case seccomp.OpEqualTo:
				ok = ok && v == a.Value
			default:
				ok = false
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// TestF10SeccompSignalRules: SIGKILL and SIGSTOP cannot reach the agent
// (PID 1) by any signal call, however the pid is spelled, while every
// other signal, and those two to any other target, still can.
func TestF10SeccompSignalRules(t *testing.T) {
	const neg1 = ^uint64(0)
	tests := []struct {
		name string
		call string
		args []uint64
		want bool
	}{
		{"SIGKILL to PID 1", "kill", []uint64{1, 9}, false},
		{"SIGSTOP to PID 1", "kill", []uint64{1, 19}, false},
		{"SIGSTOP to PID 1 with high bits", "kill", []uint64{1<<32 | 1, 19}, false},
		{"SIGKILL to PID 1 as a 64-bit signal", "kill", []uint64{1, 1<<32 | 9}, false},
		{"SIGTERM to PID 1", "kill", []uint64{1, 15}, true},
		{"SIGABRT to PID 1", "kill", []uint64{1, 6}, true},
		{"probe PID 1", "kill", []uint64{1, 0}, true},
		{"SIGKILL to a child", "kill", []uint64{1234, 9}, true},
		{"SIGKILL to the largest pid", "kill", []uint64{1<<31 - 1, 9}, true},
		{"SIGKILL to everyone", "kill", []uint64{neg1, 9}, true},
		{"SIGKILL to a group", "kill", []uint64{neg1 - 76, 9}, true},
		{"SIGSTOP to the own group", "kill", []uint64{0, 19}, true},
		{"realtime signal to PID 1", "kill", []uint64{1, 64}, true},
		{"tgkill SIGSTOP to the agent", "tgkill", []uint64{1, 5, 19}, false},
		{"tgkill SIGKILL elsewhere", "tgkill", []uint64{7, 8, 9}, true},
		{"tgkill SIGURG to the agent", "tgkill", []uint64{1, 5, 23}, true},
		{"tkill SIGKILL", "tkill", []uint64{5, 9}, false},
		{"tkill SIGTERM", "tkill", []uint64{5, 15}, true},
		{"pidfd SIGSTOP", "pidfd_send_signal", []uint64{3, 19, 0, 0}, false},
		{"pidfd SIGTERM", "pidfd_send_signal", []uint64{3, 15, 0, 0}, true},
		{"sigqueue SIGKILL to PID 1", "rt_sigqueueinfo", []uint64{1, 9, 0}, false},
		{"sigqueue SIGUSR1 to PID 1", "rt_sigqueueinfo", []uint64{1, 10, 0}, true},
	}
	for _, rt := range []string{"runc", "runsc"} {
		b, err := SeccompProfile(rt == "runsc")
		if err != nil {
			t.Fatal(err)
		}
		var p seccomp.Seccomp
		if err := json.Unmarshal(b, &p); err != nil {
			t.Fatal(err)
		}
		for _, tc := range tests {
			if got := allowedBy(&p, tc.call, tc.args...); got != tc.want {
				t.Errorf("%s: %s: allowed %v, want %v", rt, tc.name, got, tc.want)
			}
		}
		for _, r := range p.Syscalls {
			idx := map[uint]bool{}
			for _, a := range r.Args {
				if idx[a.Index] {
					t.Errorf("%s: a rule of %v compares argument %d twice (runc would OR them)", rt, r.Names, a.Index)
				}
				idx[a.Index] = true
			}
		}
	}
}
