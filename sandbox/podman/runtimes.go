package podman

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/sandpool/sandpool/sandbox"
	"github.com/sandpool/sandpool/sandbox/podman/runscwrap"
)

// DebianRunsc is Debian 12's runsc, the runtime named runsc-debian.
const DebianRunsc = "/usr/bin/runsc"

// Platforms of gVisor sandpool accepts (kvm hangs on this machine kind).
const (
	PlatformPtrace  = "ptrace"
	PlatformSystrap = "systrap"
)

// DefaultPlatform is the gVisor platform of the current runsc unless a
// runtime's configuration names one: ptrace, measured faster here than
// systrap (current runsc's own default) on every row of `sandpool bench`
// (README, "gVisor platforms").
const DefaultPlatform = PlatformPtrace

// runtimeInfo is what the engine knows of its runtime.
type runtimeInfo struct {
	// name is the configured name, the value of LabelEngine.
	name string
	// binary is the real runtime executable.
	binary string
	gvisor bool
	// current marks the pinned gVisor: it has its own netstack that starts
	// in podman's network namespace, and checkpoint/restore.
	current bool
}

// resolveRuntime finds the executable behind a runtime name.
func resolveRuntime(name string) (runtimeInfo, error) {
	rt := runtimeInfo{name: name, gvisor: sandbox.IsGVisor(name)}
	switch {
	case name == sandbox.RuntimeGVisor:
		rt.binary, rt.current = GVisorBinary(), true
		if _, err := os.Stat(rt.binary); err != nil {
			return rt, fmt.Errorf("podman: gVisor %s is not installed (scripts/deps.sh builds it): %w", sandbox.GVisorVersion, err)
		}
		return rt, nil
	case name == sandbox.RuntimeGVisorDebian:
		rt.binary = DebianRunsc
	case filepath.IsAbs(name):
		rt.binary = name
		rt.current = name == GVisorBinary()
	default:
		p, err := exec.LookPath(name)
		if err != nil {
			return rt, fmt.Errorf("podman: runtime %q: %w", name, err)
		}
		rt.binary = p
	}
	if !isFile(rt.binary) {
		return rt, fmt.Errorf("podman: runtime %q: %s is not installed", name, rt.binary)
	}
	return rt, nil
}

// GVisorBinary is where scripts/deps.sh installs the pinned runsc.
func GVisorBinary() string { return filepath.Join(sandbox.GVisorDir(), "runsc") }

// RuntimeInstalled reports whether the runtime named name can be used.
func RuntimeInstalled(name string) error {
	_, err := resolveRuntime(name)
	return err
}

// DefaultRuntimeFlags returns the flags a supervised service of runtime
// gets by default. gVisor gets network=none (egress sandboxes go to a
// second service, see egressFlags) and oci-seccomp, without which it
// ignores the seccomp profile; the current gVisor its platform too.
func DefaultRuntimeFlags(runtime, platform string) []string {
	if !sandbox.IsGVisor(runtime) {
		return nil
	}
	flags := []string{"network=none", "oci-seccomp"}
	if platform == "" && runtime == sandbox.RuntimeGVisor {
		platform = DefaultPlatform
	}
	if platform != "" {
		flags = append(flags, "platform="+platform)
	}
	return flags
}

// egressFlags are the flags of the service that creates the sandboxes of
// egress pools under gVisor: the current runsc's own netstack
// (network=sandbox) works in the namespace podman makes; the 2022 runsc's
// does not start there, so it uses the host's TCP stack in the container's
// namespace (network=host). Other runtimes need no second service.
func egressFlags(rt runtimeInfo, flags []string) []string {
	if !rt.gvisor || !slices.Contains(flags, "network=none") {
		return nil
	}
	mode := "network=host"
	if rt.current {
		mode = "network=sandbox"
	}
	out := slices.Clone(flags)
	out[slices.Index(out, "network=none")] = mode
	return out
}

// runtimeVersion is the version the runtime reports, or for the current
// gVisor (whose module build says VERSION_MISSING) the pinned version.
func runtimeVersion(rt runtimeInfo) string {
	if rt.current {
		return sandbox.GVisorVersion
	}
	out, err := exec.Command(rt.binary, "--version").Output()
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(out), "\n") {
		// runc: "runc version 1.1.5"; runsc: "runsc version release-20221219.0".
		if f := strings.Fields(line); len(f) >= 3 && f[1] == "version" {
			return f[2]
		}
	}
	return "unknown"
}

// installWrapper puts the runsc wrapper (sandpool-runsc) and the path of
// the runsc it wraps in a content-addressed directory, and returns the
// wrapper's path: the runtime podman is pointed at. The directory is never
// rewritten, so containers made through it keep working after an upgrade.
func (e *Engine) installWrapper() (string, error) {
	src := e.cfg.RuntimeWrapper
	if src == "" && e.cfg.AgentPath != "" {
		// Built together (make build, the tests): look beside the agent.
		if p := filepath.Join(filepath.Dir(e.cfg.AgentPath), "sandpool-runsc"); isFile(p) {
			src = p
		}
	}
	if src == "" {
		var err error
		if src, err = findBinary("sandpool-runsc"); err != nil {
			return "", err
		}
	}
	b, err := os.ReadFile(src)
	if err != nil {
		return "", fmt.Errorf("podman: read runtime wrapper: %w", err)
	}
	// Named runsc: podman applies what it knows of runtimes by their name.
	dir, err := e.installFiles("runtime", []installFile{
		{runscwrap.TargetFile, []byte(e.rt.binary + "\n"), 0o644},
		{"runsc", b, 0o755},
	})
	if err != nil {
		return "", fmt.Errorf("podman: install runtime wrapper: %w", err)
	}
	return filepath.Join(dir, "runsc"), nil
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// findBinary looks for one of sandpool's binaries next to the running
// executable, then on PATH.
func findBinary(name string) (string, error) {
	if exe, err := os.Executable(); err == nil {
		if p := filepath.Join(filepath.Dir(exe), name); isFile(p) {
			return p, nil
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	return "", errors.New("podman: " + name + " not found next to this executable or on PATH (build it with `make build`)")
}
