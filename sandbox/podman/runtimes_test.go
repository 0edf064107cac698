package podman

import (
	"slices"
	"testing"

	"github.com/sandpool/sandpool/sandbox"
)

func TestRuntimeFlags(t *testing.T) {
	tests := []struct {
		runtime, platform string
		flags, egress     []string
		current           bool
	}{
		{"runc", "", nil, nil, false},
		{"runsc", "", []string{"network=none", "oci-seccomp", "platform=ptrace"}, []string{"network=sandbox", "oci-seccomp", "platform=ptrace"}, true},
		{"runsc", "systrap", []string{"network=none", "oci-seccomp", "platform=systrap"}, []string{"network=sandbox", "oci-seccomp", "platform=systrap"}, true},
		// Debian's runsc keeps its own default platform; its netstack does
		// not start in podman's namespace, so egress uses the host's stack.
		{"runsc-debian", "", []string{"network=none", "oci-seccomp"}, []string{"network=host", "oci-seccomp"}, false},
		{"/opt/gvisor/runsc", "", []string{"network=none", "oci-seccomp"}, []string{"network=host", "oci-seccomp"}, false},
	}
	for _, tc := range tests {
		flags := DefaultRuntimeFlags(tc.runtime, tc.platform)
		if !slices.Equal(flags, tc.flags) {
			t.Errorf("%s %s: flags %q, want %q", tc.runtime, tc.platform, flags, tc.flags)
		}
		rt := runtimeInfo{name: tc.runtime, gvisor: sandbox.IsGVisor(tc.runtime), current: tc.current}
		if got := egressFlags(rt, flags); !slices.Equal(got, tc.egress) {
			t.Errorf("%s %s: egress flags %q, want %q", tc.runtime, tc.platform, got, tc.egress)
		}
	}
	// A service whose flags already give a network needs no second one.
	if got := egressFlags(runtimeInfo{gvisor: true, current: true}, []string{"network=host"}); got != nil {
		t.Errorf("egress flags of a networked service: %q", got)
	}
}

func TestIsolationOf(t *testing.T) {
	for rt, want := range map[string]sandbox.Isolation{
		"runc": sandbox.IsolationContainer, "runsc": sandbox.IsolationGVisor, "runsc-debian": sandbox.IsolationGVisor,
		"/usr/local/bin/runsc": sandbox.IsolationGVisor, "kata-runtime": sandbox.IsolationVM, "/usr/bin/crun": sandbox.IsolationContainer,
	} {
		if got := sandbox.IsolationOf(rt); got != want {
			t.Errorf("IsolationOf(%q) = %q, want %q", rt, got, want)
		}
	}
}
