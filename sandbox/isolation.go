package sandbox

import (
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/sandpool/sandpool/internal/errcode"
	"github.com/sandpool/sandpool/sandbox/agentproto"
)

// Identity is what the agent reports about the kernel it runs on.
type Identity struct {
	Release    string
	Version    string
	BootID     string
	Hypervisor bool
	Syslog     string
}

// HostIdentity is the same for the machine that runs the containers.
type HostIdentity struct {
	Release string
	// BootID is empty when unknown (a remote engine).
	BootID string
}

// LocalHost reads the identity of the machine sandpool runs on.
func LocalHost() HostIdentity {
	var h HostIdentity
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		h.Release = unix.ByteSliceToString(u.Release[:])
	}
	if b, err := os.ReadFile("/proc/sys/kernel/random/boot_id"); err == nil {
		h.BootID = strings.TrimSpace(string(b))
	}
	return h
}

// Classify tells which isolation a sandbox with identity id runs behind,
// seen from host. It returns "" when the evidence fits none, which every
// expectation rejects: the gate fails closed.
func Classify(host HostIdentity, id Identity) Isolation {
	switch {
	case id.BootID != "" && id.BootID == host.BootID:
		// The boot id is not namespaced: only the host kernel has it,
		// whatever else the report says (a host that once ran gVisor may
		// have "gVisor" in its own kernel log).
		return IsolationContainer
	case id.Release != host.Release && agentproto.LooksLikeGVisor(agentproto.Identity{Release: id.Release, Version: id.Version, BootID: id.BootID, Syslog: id.Syslog}):
		// Under gVisor the CPU's hypervisor flag may show (systrap, or a
		// host that is itself a VM): the synthetic kernel decides first.
		return IsolationGVisor
	case host.BootID == "" && id.Release == host.Release && id.BootID != "":
		return IsolationContainer
	case id.Hypervisor && id.BootID != "" && id.BootID != host.BootID:
		return IsolationVM
	}
	return ""
}

// CheckIsolation returns an IsolationMismatch error unless the identity
// shows the isolation want.
func CheckIsolation(want Isolation, host HostIdentity, id Identity) error {
	got := Classify(host, id)
	if got == want {
		return nil
	}
	seen := string(got)
	if seen == "" {
		seen = "unrecognised"
	}
	return errcode.Wrap(errcode.IsolationMismatch,
		fmt.Sprintf("sandbox isolation mismatch: expected %s but the sandbox runs on %s", want, seen),
		fmt.Errorf("agent reported kernel %q %q, hypervisor %v", id.Release, id.Version, id.Hypervisor))
}
