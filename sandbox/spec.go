// Package sandbox holds the backend-independent half of sandpool's sandbox
// engine: the Spec a sandbox is created from (with hardened defaults), the
// isolation identity gate, and Conn, the client of the in-sandbox agent
// protocol that runs executions and file operations over any byte stream.
// It knows nothing of sessions or HTTP; backends (sandbox/podman) create the
// containers and hand Conn a way to dial the agent.
package sandbox

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strings"
	"time"
)

// Isolation is the kind of boundary a sandbox must run behind.
type Isolation string

// Isolations.
const (
	// IsolationContainer is a plain container on the host kernel (runc).
	IsolationContainer Isolation = "container"
	// IsolationGVisor is a gVisor sandbox (runsc): a user-space kernel.
	IsolationGVisor Isolation = "gvisor"
	// IsolationVM is a virtual machine with its own guest kernel (Kata).
	IsolationVM Isolation = "vm"
)

// Network is a sandbox's network access.
type Network string

// Networks.
const (
	// NetworkNone: a network namespace with only loopback (the default).
	NetworkNone Network = "none"
	// NetworkEgress: outbound access through the engine's default network.
	NetworkEgress Network = "egress"
)

// Resources bounds what a sandbox may use.
type Resources struct {
	// CPUs is the CPU quota in cores.
	CPUs float64
	// Memory is the memory limit in bytes (swap is not allowed). tmpfs
	// contents count against it.
	Memory int64
	// KernelMemory caps the Python kernel's address space, so a memory bomb
	// raises MemoryError instead of taking the sandbox down. 0 means 3/4 of
	// Memory; negative means no cap.
	KernelMemory int64
	// Pids bounds the number of processes and threads.
	Pids int64
	// NoFile is RLIMIT_NOFILE.
	NoFile int64
	// TmpSize, DataSize and ShmSize bound the tmpfs mounts at /tmp,
	// /mnt/data and /dev/shm.
	TmpSize  int64
	DataSize int64
	ShmSize  int64
}

// MiB is a mebibyte.
const MiB = 1 << 20

// DefaultResources returns the resources a Spec gets when it sets none.
func DefaultResources() Resources {
	return Resources{
		CPUs:     1,
		Memory:   1024 * MiB,
		Pids:     256,
		NoFile:   1024,
		TmpSize:  64 * MiB,
		DataSize: 256 * MiB,
		ShmSize:  64 * MiB,
	}
}

// Spec describes a sandbox to create. Zero fields take safe defaults;
// Normalize fills them in and rejects unsafe or malformed values.
type Spec struct {
	// Image is the container image; it must contain python3.
	Image string
	// Isolation is the boundary the sandbox must run behind; creation fails
	// when the agent reports another one. Default: IsolationGVisor.
	Isolation Isolation
	// Network defaults to NetworkNone.
	Network   Network
	Resources Resources
	// Env adds variables to the sandbox's environment, which otherwise holds
	// only BaseEnv: nothing of the server's environment reaches a sandbox.
	Env map[string]string
	// Labels are attached to the container. Keys must start with
	// "sandpool."; values are limited to [A-Za-z0-9._-], so raw session
	// identifiers cannot be stored (store a keyed hash).
	Labels map[string]string
	// Preload lists modules the kernel imports before it is ready. nil
	// means DefaultPreload; an empty non-nil slice preloads nothing.
	Preload []string
	// StartTimeout bounds creation up to a ready kernel; default 90s.
	StartTimeout time.Duration
	// App, when set, makes the sandbox a custom container running the
	// image's own program instead of a Python kernel; Preload is unused.
	App *App
}

// DefaultPreload is imported into every kernel before it is ready, and bound
// to their usual names (np, pd, plt).
var DefaultPreload = []string{"numpy", "pandas", "matplotlib", "matplotlib.pyplot"}

var (
	envName    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	labelKey   = regexp.MustCompile(`^sandpool\.[a-z0-9._-]{1,60}$`)
	labelValue = regexp.MustCompile(`^[A-Za-z0-9._-]{0,128}$`)
	moduleName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$`)
)

// reservedEnv are set by BaseEnv and cannot be overridden.
var reservedEnv = map[string]bool{"PATH": true, "HOME": true, "USER": true, "LOGNAME": true, "LD_PRELOAD": true, "LD_LIBRARY_PATH": true, "PYTHONPATH": true, "PYTHONHOME": true}

// Normalize fills in defaults and validates s. Errors name the field.
func (s *Spec) Normalize() error {
	def := DefaultResources()
	r := &s.Resources
	if s.Isolation == "" {
		s.Isolation = IsolationGVisor
	}
	if s.Network == "" {
		s.Network = NetworkNone
	}
	if r.CPUs == 0 {
		r.CPUs = def.CPUs
	}
	if r.Memory == 0 {
		r.Memory = def.Memory
	}
	if r.Pids == 0 {
		r.Pids = def.Pids
	}
	if r.NoFile == 0 {
		r.NoFile = def.NoFile
	}
	if r.TmpSize == 0 {
		r.TmpSize = def.TmpSize
	}
	if r.DataSize == 0 {
		r.DataSize = def.DataSize
	}
	if r.ShmSize == 0 {
		r.ShmSize = def.ShmSize
	}
	if r.KernelMemory == 0 {
		r.KernelMemory = r.Memory / 4 * 3
	}
	if s.Preload == nil {
		s.Preload = DefaultPreload
	}
	if s.StartTimeout == 0 {
		s.StartTimeout = 90 * time.Second
	}
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{field}, args...)...))
	}
	if s.Image == "" || strings.ContainsAny(s.Image, " \t\n\x00") {
		bad("image", "must be a non-empty image reference")
	}
	switch s.Isolation {
	case IsolationContainer, IsolationGVisor, IsolationVM:
	default:
		bad("isolation", "must be container, gvisor or vm, not %q", s.Isolation)
	}
	switch s.Network {
	case NetworkNone, NetworkEgress:
	default:
		bad("network", "must be none or egress, not %q", s.Network)
	}
	if !(r.CPUs > 0 && r.CPUs <= 256) || math.IsNaN(r.CPUs) {
		bad("resources.cpus", "must be in (0, 256]")
	}
	if r.Memory < 128*MiB {
		bad("resources.memory", "must be at least 128 MiB")
	}
	if r.KernelMemory > r.Memory {
		bad("resources.kernelMemory", "must not exceed resources.memory")
	}
	if r.Pids < 16 || r.Pids > 1<<16 {
		bad("resources.pids", "must be in [16, 65536]")
	}
	if r.NoFile < 64 || r.NoFile > 1<<16 {
		bad("resources.nofile", "must be in [64, 65536]")
	}
	for _, f := range []struct {
		name string
		v    int64
	}{{"resources.tmpSize", r.TmpSize}, {"resources.dataSize", r.DataSize}, {"resources.shmSize", r.ShmSize}} {
		if f.v < MiB {
			bad(f.name, "must be at least 1 MiB")
		}
	}
	if r.TmpSize+r.DataSize+r.ShmSize > r.Memory {
		bad("resources", "tmpSize+dataSize+shmSize (tmpfs, counted as memory) must not exceed memory")
	}
	envBytes := 0
	if s.App != nil {
		s.App.normalize(bad)
	}
	for k, v := range s.Env {
		switch {
		case !envName.MatchString(k):
			bad("env", "invalid variable name %q", k)
		case reservedEnv[k] && s.App == nil:
			bad("env", "%s cannot be set", k)
		case strings.ContainsRune(v, 0):
			bad("env", "value of %s contains NUL", k)
		}
		envBytes += len(k) + len(v)
	}
	if envBytes > 64<<10 {
		bad("env", "larger than 64 KiB")
	}
	for k, v := range s.Labels {
		if !labelKey.MatchString(k) {
			bad("labels", "key %q must match sandpool.[a-z0-9._-]+", k)
		}
		if !labelValue.MatchString(v) {
			bad("labels", "value of %s must match [A-Za-z0-9._-]{0,128}", k)
		}
	}
	for _, m := range s.Preload {
		if !moduleName.MatchString(m) {
			bad("preload", "invalid module name %q", m)
		}
	}
	return errors.Join(errs...)
}

// SandboxHome is HOME inside a sandbox: a tmpfs, since the root is read-only.
const SandboxHome = "/tmp"

// BaseEnv is the whole environment of a sandbox before Spec.Env: an
// allowlist, so nothing of the server's environment leaks in. A custom
// container gets only HOME (the root is read-only) besides its image's
// environment and Spec.Env.
func BaseEnv(s *Spec) map[string]string {
	if s.App != nil {
		env := map[string]string{"HOME": SandboxHome}
		for k, v := range s.Env {
			env[k] = v
		}
		return env
	}
	threads := fmt.Sprint(max(1, int(math.Ceil(s.Resources.CPUs))))
	env := map[string]string{
		"PATH":                    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME":                    SandboxHome,
		"USER":                    "sandbox",
		"LOGNAME":                 "sandbox",
		"LANG":                    "C.UTF-8",
		"TERM":                    "dumb",
		"PYTHONDONTWRITEBYTECODE": "1",
		"MPLBACKEND":              "Agg",
		"MPLCONFIGDIR":            SandboxHome + "/.config/matplotlib",
		"IPYTHONDIR":              SandboxHome + "/.ipython",
		// Few malloc arenas and BLAS threads keep the address space (which
		// KernelMemory caps) close to what is really used.
		"MALLOC_ARENA_MAX":     "2",
		"OPENBLAS_NUM_THREADS": threads,
		"OMP_NUM_THREADS":      threads,
		"MKL_NUM_THREADS":      threads,
	}
	for k, v := range s.Env {
		env[k] = v
	}
	return env
}

// EnvList renders an environment map as sorted KEY=VALUE pairs.
func EnvList(env map[string]string) []string {
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}
