package podman

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/containers/podman/v5/pkg/specgen"
	spec "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/sandpool/sandpool/sandbox"
)

// Paths inside a sandbox.
const (
	// AgentDir is where the host's agent directory is bind-mounted, read-only.
	AgentDir = "/opt/sandpool"
	// AgentBinary is the agent inside a sandbox.
	AgentBinary = AgentDir + "/sandpool-agent"
	// DataDir is the session's files (a bounded tmpfs).
	DataDir = "/mnt/data"
)

// Labels the engine puts on every container, besides the spec's.
const (
	// LabelEngine marks containers made by sandpool (value: the runtime).
	LabelEngine = "sandpool.engine"
	// LabelIsolation records the isolation the sandbox was created for.
	LabelIsolation = "sandpool.isolation"
	// LabelUID records the sandbox uid; the bridge runs as uid+1, so code in
	// the sandbox cannot read the token passing through the bridge.
	LabelUID = "sandpool.uid"
	// LabelSpecDigest identifies the sandbox spec, so that a checkpoint is
	// restored only into a container of the same spec.
	LabelSpecDigest = "sandpool.spec-digest"
)

// containerParams are what the engine chooses per container.
type containerParams struct {
	name        string
	uid         int
	hostname    string
	agentDir    string // host directory holding the agent binary
	emptyDir    string // an empty host directory, mounted read-only at /run
	emptyFile   string // an empty host file, mounted read-only at /etc/hostname
	seccompPath string // host path of the seccomp profile
	runtime     string
	gvisor      bool
	tokenHash   string // hex SHA-256 of the agent token
	specDigest  string // what a restore must reproduce (specDigest)
	// A custom container's program line and working directory, resolved
	// against its image.
	appArgv []string
	appDir  string
}

func ptr[T any](v T) *T { return &v }

// buildSpec turns a normalized sandbox spec into podman's container spec.
// It is a pure function: everything hardening a sandbox is decided here.
func buildSpec(s *sandbox.Spec, p containerParams) *specgen.SpecGenerator {
	r := s.Resources
	g := specgen.NewSpecGenerator(s.Image, false)
	g.Name = p.name
	g.Hostname = p.hostname
	g.Entrypoint = []string{AgentBinary}
	g.Command = []string{"daemon",
		"--token-hash", p.tokenHash,
		"--kernel-memory", strconv.FormatInt(max(r.KernelMemory, 0), 10),
		"--preload", strings.Join(s.Preload, ","),
	}
	g.User = fmt.Sprintf("%d:%d", p.uid, p.uid)
	g.WorkDir = DataDir
	if s.App != nil {
		// The agent runs the image's program instead of a kernel. The
		// program is the agent's argument: nothing of it reaches a shell.
		g.Command = append([]string{"daemon", "--token-hash", p.tokenHash,
			"--app-port", strconv.Itoa(s.App.Port), "--app-dir", p.appDir, "--"}, p.appArgv...)
	}
	g.Env = sandbox.BaseEnv(s)
	g.EnvHost = ptr(false)
	g.HTTPProxy = ptr(false) // never copy the server's proxy settings in
	g.Terminal = ptr(false)
	g.Stdin = ptr(false)
	g.Labels = map[string]string{
		LabelEngine:    p.runtime,
		LabelIsolation: string(s.Isolation),
		LabelUID:       strconv.Itoa(p.uid),
	}
	if p.specDigest != "" {
		g.Labels[LabelSpecDigest] = p.specDigest
	}
	for k, v := range s.Labels {
		g.Labels[k] = v
	}

	// Network: only loopback unless egress is asked for; no /etc/hosts
	// entries for the host and no resolver of the host's.
	if s.Network == sandbox.NetworkEgress {
		g.NetNS = specgen.Namespace{NSMode: specgen.Bridge}
	} else {
		g.NetNS = specgen.Namespace{NSMode: specgen.NoNetwork}
		g.UseImageResolvConf = ptr(true)
	}
	g.UseImageHosts = ptr(true)
	// No files of podman's bind-mounted in: /etc/passwd and /etc/group
	// entries for the uid, /etc/hostname and /run/.containerenv each show
	// the container's host path (and id) in /proc/self/mountinfo. An
	// empty /run of our own keeps podman from adding .containerenv.
	g.Passwd = ptr(false)
	g.UseImageHostname = ptr(true)
	// Own process, hostname, IPC and cgroup namespaces, stated rather than
	// left to the service's defaults.
	g.PidNS = specgen.Namespace{NSMode: specgen.Private}
	g.UtsNS = specgen.Namespace{NSMode: specgen.Private}
	g.IpcNS = specgen.Namespace{NSMode: specgen.Private}
	g.CgroupNS = specgen.Namespace{NSMode: specgen.Private}

	// Privileges.
	g.Privileged = ptr(false)
	g.CapDrop = []string{"ALL"}
	g.NoNewPrivileges = ptr(true)
	g.SeccompProfilePath = p.seccompPath
	g.ReadOnlyFilesystem = ptr(true)
	g.Umask = "0022"
	g.Systemd = "false"

	// Storage: a read-only root, bounded tmpfs for everything writable, and
	// the agent directory read-only.
	// runc 1.1 gives a tmpfs the mode of the image directory it covers
	// (and podman refuses uid= options), so the image's /tmp and /mnt/data
	// are 1777 too (finalize.sh).
	tmpfs := func(dst string, size int64, extra ...string) spec.Mount {
		return spec.Mount{Destination: dst, Type: "tmpfs", Source: "tmpfs",
			Options: append([]string{"rw", "nosuid", "nodev", "size=" + strconv.FormatInt(size, 10), "mode=1777"}, extra...)}
	}
	g.Mounts = []spec.Mount{
		tmpfs("/tmp", r.TmpSize),
		tmpfs(DataDir, r.DataSize),
		// A tmpfs of the sandbox's own rather than podman's shm, which
		// gVisor serves from the host through its gofer: this one lives in
		// gVisor's memory, and so is part of a checkpoint.
		tmpfs("/dev/shm", r.ShmSize, "noexec"),
		{Destination: AgentDir, Type: "bind", Source: p.agentDir, Options: []string{"ro", "rbind", "nosuid", "nodev"}},
	}
	if p.emptyDir != "" {
		// UseImageHostname needs podman 5; the podman 4 service of Debian
		// 12 mounts its /etc/hostname unless the spec has one already.
		g.Mounts = append(g.Mounts,
			spec.Mount{Destination: "/run", Type: "bind", Source: p.emptyDir, Options: []string{"ro", "rbind", "nosuid", "nodev", "noexec"}},
			spec.Mount{Destination: "/etc/hostname", Type: "bind", Source: p.emptyFile, Options: []string{"ro", "bind", "nosuid", "nodev", "noexec"}})
	}

	// Limits: memory without swap, CPU quota, pids, rlimits (this host's
	// hard limits are below podman's defaults, so they must be explicit).
	const period = 100000
	g.ResourceLimits = &spec.LinuxResources{
		Memory: &spec.LinuxMemory{Limit: ptr(r.Memory), Swap: ptr(r.Memory)},
		CPU:    &spec.LinuxCPU{Quota: ptr(int64(r.CPUs * period)), Period: ptr(uint64(period))},
		Pids:   &spec.LinuxPids{Limit: pidsLimit(p.gvisor, r.Pids)},
	}
	g.Rlimits = []spec.POSIXRlimit{
		{Type: "nofile", Soft: uint64(r.NoFile), Hard: uint64(r.NoFile)},
		{Type: "nproc", Soft: uint64(r.Pids), Hard: uint64(r.Pids)},
		{Type: "core", Soft: 0, Hard: 0},
	}
	// Container output is only the agent's own log: keep it small.
	g.LogConfiguration = &specgen.LogConfig{Driver: "k8s-file", Size: 1 << 20}
	return g
}

// pidsLimit is the pids cgroup limit of a sandbox whose code may have pids
// tasks (RLIMIT_NPROC, per sandbox uid). Under gVisor the cgroup holds the
// Sentry's and the ptrace platform's host tasks too, several per guest
// task: a fork bomb that reached a cgroup limit of pids killed the whole
// sandbox (the battery's R1). gVisor enforces RLIMIT_NPROC on guest tasks
// itself, so the cgroup only needs room for the host side.
func pidsLimit(gvisor bool, pids int64) int64 {
	if gvisor {
		return 8 * pids
	}
	return pids
}
