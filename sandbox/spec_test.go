package sandbox

import (
	"strings"
	"testing"

	"github.com/sandpool/sandpool/internal/errcode"
	"github.com/sandpool/sandpool/sandbox/agentproto"
)

func TestNormalizeDefaults(t *testing.T) {
	s := Spec{Image: "img"}
	if err := s.Normalize(); err != nil {
		t.Fatal(err)
	}
	r := s.Resources
	if s.Isolation != IsolationGVisor || s.Network != NetworkNone || r.Memory != 1024*MiB || r.KernelMemory != 768*MiB ||
		r.Pids != 256 || r.CPUs != 1 || len(s.Preload) == 0 {
		t.Errorf("defaults: %+v", s)
	}
}

func TestNormalizeRejects(t *testing.T) {
	tests := []struct {
		name  string
		spec  Spec
		field string
	}{
		{"no image", Spec{}, "image"},
		{"bad isolation", Spec{Image: "i", Isolation: "hope"}, "isolation"},
		{"bad network", Spec{Image: "i", Network: "host"}, "network"},
		{"tiny memory", Spec{Image: "i", Resources: Resources{Memory: MiB}}, "resources.memory"},
		{"negative cpus", Spec{Image: "i", Resources: Resources{CPUs: -1}}, "resources.cpus"},
		{"kernel memory above memory", Spec{Image: "i", Resources: Resources{Memory: 256 * MiB, KernelMemory: 512 * MiB}}, "resources.kernelMemory"},
		{"tmpfs above memory", Spec{Image: "i", Resources: Resources{Memory: 256 * MiB, DataSize: 512 * MiB}}, "resources"},
		{"pids", Spec{Image: "i", Resources: Resources{Pids: 1}}, "resources.pids"},
		{"env name", Spec{Image: "i", Env: map[string]string{"A B": "x"}}, "env"},
		{"reserved env", Spec{Image: "i", Env: map[string]string{"LD_PRELOAD": "/x.so"}}, "env"},
		{"label key", Spec{Image: "i", Labels: map[string]string{"owner": "x"}}, "labels"},
		{"raw identifier in a label", Spec{Image: "i", Labels: map[string]string{"sandpool.session": "conv|42<>"}}, "labels"},
		{"module", Spec{Image: "i", Preload: []string{"os; import x"}}, "preload"},
	}
	for _, tc := range tests {
		err := tc.spec.Normalize()
		if err == nil || !strings.Contains(err.Error(), tc.field+":") {
			t.Errorf("%s: error %v, want one naming %s", tc.name, err, tc.field)
		}
	}
}

func TestBaseEnvIsAnAllowlist(t *testing.T) {
	t.Setenv("SECRET_TOKEN", "x")
	t.Setenv("HTTP_PROXY", "http://proxy")
	s := Spec{Image: "i", Env: map[string]string{"MY_SETTING": "1"}}
	if err := s.Normalize(); err != nil {
		t.Fatal(err)
	}
	env := BaseEnv(&s)
	if _, ok := env["SECRET_TOKEN"]; ok {
		t.Error("server environment leaked")
	}
	if env["MY_SETTING"] != "1" || env["HOME"] != SandboxHome {
		t.Errorf("env: %v", env)
	}
}

func TestClassify(t *testing.T) {
	host := HostIdentity{Release: "6.18.44-fc", BootID: "host-boot"}
	tests := []struct {
		name string
		host HostIdentity
		id   Identity
		want Isolation
	}{
		{"runc shares the host kernel", host, Identity{Release: "6.18.44-fc", BootID: "host-boot", Hypervisor: true}, IsolationContainer},
		{"gVisor by its log", host, Identity{Release: "4.4.0", Syslog: "[    0.000000] Starting gVisor...", Hypervisor: true}, IsolationGVisor},
		{"gVisor 2022 by its uname", host, Identity{Release: "4.4.0", Version: agentproto.GVisorVersion, Hypervisor: true}, IsolationGVisor},
		{"current gVisor (ptrace) by its uname and own boot id", host, Identity{Release: "4.19.0-gvisor", Version: agentproto.GVisorVersion, BootID: "sandbox-boot"}, IsolationGVisor},
		{"current gVisor (systrap) shows the hypervisor flag", host, Identity{Release: "4.19.0-gvisor", Version: agentproto.GVisorVersion, BootID: "sandbox-boot", Hypervisor: true}, IsolationGVisor},
		{"forged: gVisor's uname with the host's boot id is the host kernel", host, Identity{Release: "4.19.0-gvisor", Version: agentproto.GVisorVersion, BootID: "host-boot", Hypervisor: true}, IsolationContainer},
		{"forged: gVisor's log with the host's boot id is the host kernel", host, Identity{Release: "6.18.44-fc", Syslog: "[    0.000000] Starting gVisor...", BootID: "host-boot"}, IsolationContainer},
		{"forged: gVisor's version string on the host's release", host, Identity{Release: "6.18.44-fc", Version: agentproto.GVisorVersion}, ""},
		{"forged: a '-gvisor' release with another version and a boot id is a VM at most", host, Identity{Release: "4.19.0-gvisor", Version: "#1 SMP", BootID: "guest-boot", Hypervisor: true}, IsolationVM},
		{"forged: a '-gvisor' release alone is nothing", host, Identity{Release: "4.19.0-gvisor", BootID: "other"}, ""},
		{"a VM has its own kernel", host, Identity{Release: "6.1.0-kata", BootID: "guest-boot", Hypervisor: true}, IsolationVM},
		{"a guest with the host's release is still a VM", host, Identity{Release: "6.18.44-fc", BootID: "guest-boot", Hypervisor: true}, IsolationVM},
		{"other kernel without hypervisor: unknown", host, Identity{Release: "5.0", BootID: "other"}, ""},
		{"empty report: unknown", host, Identity{}, ""},
		{"remote host: same release", HostIdentity{Release: "6.18.44-fc"}, Identity{Release: "6.18.44-fc", BootID: "b"}, IsolationContainer},
	}
	for _, tc := range tests {
		if got := Classify(tc.host, tc.id); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
	if err := CheckIsolation(IsolationGVisor, host, tests[0].id); errcode.Of(err) != errcode.IsolationMismatch || !strings.Contains(errcode.Public(err), "expected gvisor but the sandbox runs on container") {
		t.Errorf("runc passing as gvisor: %v", err)
	}
	if err := CheckIsolation(IsolationGVisor, host, tests[1].id); err != nil {
		t.Error(err)
	}
}
