package podman_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sandpool/sandpool/internal/errcode"
	"github.com/sandpool/sandpool/internal/podmantest"
	"github.com/sandpool/sandpool/sandbox"
	"github.com/sandpool/sandpool/sandbox/podman"
)

func TestMain(m *testing.M) { podmantest.Main(m) }

// eachRuntime runs f under runc, the current gVisor and Debian's, in parallel.
func eachRuntime(t *testing.T, f func(t *testing.T, rt podmantest.Runtime, e *podman.Engine)) {
	t.Helper()
	for _, rt := range podmantest.AllRuntimes() {
		t.Run(rt.Name, func(t *testing.T) {
			t.Parallel()
			f(t, rt, podmantest.Engine(t, rt))
		})
	}
}

func run(t *testing.T, sb *sandbox.Sandbox, code string, timeout time.Duration) (*sandbox.Result, *sandbox.Output) {
	t.Helper()
	col := sandbox.Collector{Max: 4 << 20}
	res, err := sb.Execute(context.Background(), sandbox.ExecRequest{Code: code, Timeout: timeout}, col.Sink())
	if err != nil {
		t.Fatalf("Execute(%.60q): %v", code, err)
	}
	return res, &col.Out
}

func result(out *sandbox.Output) string {
	if out.Result == nil {
		return ""
	}
	return out.Result.Data["text/plain"]
}

func TestPythonInSandbox(t *testing.T) {
	eachRuntime(t, func(t *testing.T, rt podmantest.Runtime, e *podman.Engine) {
		sb := podmantest.Create(t, e, podmantest.Spec(rt))
		if k := sb.BootInfo.Kernel; !k.Ready || !k.IPython || !strings.HasPrefix(k.Python, "3.") {
			t.Errorf("kernel: %+v", k)
		}
		res, out := run(t, sb, "data = np.arange(10)\nprint(data.sum())", 30*time.Second)
		if res.Status != sandbox.StatusOK || string(out.Stdout) != "45\n" {
			t.Errorf("numpy preloaded as np: %q %q %+v", res.Status, out.Stdout, out.Error)
		}
		_, out = run(t, sb, "df = pd.DataFrame({'a': [1, 2], 'b': ['x', 'y']})\ndf", 30*time.Second)
		if out.Result == nil || !strings.Contains(out.Result.Data["text/html"], "<table") || !strings.Contains(result(out), "a  b") {
			t.Errorf("DataFrame result: %+v", out.Result)
		}
		_, out = run(t, sb, "data.mean()", 30*time.Second)
		if result(out) != "4.5" {
			t.Errorf("state across executions: %q", result(out))
		}
		// A figure comes back as image/png, once, after the output before it.
		res, out = run(t, sb, "print('before')\nplt.plot([1, 2, 3], [3, 1, 2])\nplt.title('t')\nplt.show()\nprint('after')", 60*time.Second)
		if res.Status != sandbox.StatusOK || string(out.Stdout) != "before\nafter\n" || len(out.Displays) != 1 {
			t.Fatalf("plot: %q %q %d displays %+v", res.Status, out.Stdout, len(out.Displays), out.Error)
		}
		png, err := base64.StdEncoding.DecodeString(out.Displays[0].Data["image/png"])
		if err != nil || !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) || len(png) < 1000 {
			t.Errorf("figure is not a PNG: %d bytes, %v", len(png), err)
		}
		// A figure left open at the end of a cell is sent too.
		_, out = run(t, sb, "fig, ax = plt.subplots()\nax.bar([1, 2], [3, 4])", 60*time.Second)
		if len(out.Displays) != 1 || out.Displays[0].Data["image/png"] == "" {
			t.Errorf("implicit figure: %d displays", len(out.Displays))
		}
		res, out = run(t, sb, "import sklearn, scipy, sympy, seaborn, PIL, openpyxl, bs4, lxml, yaml, tabulate, requests\nsympy.simplify('x + x')", 120*time.Second)
		if res.Status != sandbox.StatusOK || result(out) != "2*x" {
			t.Errorf("preinstalled packages: %q %q %+v", res.Status, result(out), out.Error)
		}
		_, out = run(t, sb, "import os\nos.getcwd()", 10*time.Second)
		if result(out) != "'/mnt/data'" {
			t.Errorf("working directory: %q", result(out))
		}
	})
}

// probe reports, as JSON, what the sandbox lets code see and do.
const probe = `
import ctypes, errno, json, os, socket
st = {}
for l in open('/proc/self/status'):
    k, _, v = l.partition(':')
    st[k] = v.strip()
libc = ctypes.CDLL(None, use_errno=True)
def sc(nr, *args):
    r = libc.syscall(nr, *[ctypes.c_long(a) if isinstance(a, int) else a for a in args])
    return 'ok' if r >= 0 else errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))
def attempt(f):
    try:
        f()
        return 'ok'
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
def net(addr, kind=socket.SOCK_STREAM):
    def f():
        s = socket.socket(socket.AF_INET, kind)
        s.settimeout(2)
        if kind == socket.SOCK_DGRAM:
            s.sendto(b'x', addr)
            s.recv(1)
        else:
            s.connect(addr)
    return attempt(f)
env = [kv.split(b'=', 1)[0].decode() for kv in open('/proc/self/environ', 'rb').read().split(b'\0') if kv]
out = {
    'uid': os.getuid(), 'gid': os.getgid(), 'groups': os.getgroups(),
    'caps': {k: st.get(k) for k in ('CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb')},
    'nonewprivs': st.get('NoNewPrivs'), 'seccomp': st.get('Seccomp'),
    'hostname': socket.gethostname(), 'hosts': open('/etc/hosts').read(), 'resolv': open('/etc/resolv.conf').read(),
    'env': sorted(env),
    'ifaces': sorted(l.split(':')[0].strip() for l in open('/proc/net/dev').read().splitlines()[2:]),
    'write_usr': attempt(lambda: open('/usr/probe', 'w')),
    'write_etc': attempt(lambda: open('/etc/passwd', 'a')),
    'write_opt': attempt(lambda: open('/opt/sandpool/x', 'w')),
    'tmp': os.statvfs('/tmp').f_blocks * os.statvfs('/tmp').f_frsize,
    'data': os.statvfs('/mnt/data').f_blocks * os.statvfs('/mnt/data').f_frsize,
    'nofile': __import__('resource').getrlimit(__import__('resource').RLIMIT_NOFILE),
    'tcp_public': net(('1.1.1.1', 80)), 'udp_dns': net(('8.8.8.8', 53), socket.SOCK_DGRAM),
    'tcp_gateway': net(('10.88.0.1', 80)), 'tcp_metadata': net(('169.254.169.254', 80)),
    'dns': attempt(lambda: socket.getaddrinfo('example.com', 80)),
    'syscalls': {
        'unshare_user': sc(272, 0x10000000), 'unshare_net': sc(272, 0x40000000),
        'keyctl': sc(250, 0, -3, 0), 'bpf': sc(321, 0, 0, 0), 'perf_event_open': sc(298, 0, 0, -1, -1, 0),
        'userfaultfd': sc(323, 0), 'io_uring_setup': sc(425, 1, 0),
        'ptrace': sc(101, 3, os.getpid(), 0, 0), 'process_vm_readv': sc(310, os.getpid(), 0, 0, 0, 0, 0),
        'mount': sc(165, b'none', b'/tmp', b'tmpfs', 0, 0),
    },
    'agent_environ': attempt(lambda: open('/proc/1/environ').read()),
    'agent_mem': attempt(lambda: open('/proc/1/mem', 'rb').read(1)),
}
print(json.dumps(out))
`

type probeOut struct {
	UID, GID    int
	Groups      []int
	Caps        map[string]string
	NoNewPrivs  *string `json:"nonewprivs"`
	Seccomp     *string
	Hostname    string
	Hosts       string
	Resolv      string
	Env         []string
	Ifaces      []string
	WriteUsr    string `json:"write_usr"`
	WriteEtc    string `json:"write_etc"`
	WriteOpt    string `json:"write_opt"`
	Tmp, Data   int64
	NoFile      []int64
	TCPPublic   string `json:"tcp_public"`
	UDPDNS      string `json:"udp_dns"`
	TCPGateway  string `json:"tcp_gateway"`
	TCPMetadata string `json:"tcp_metadata"`
	DNS         string
	Syscalls    map[string]string
	AgentEnv    string `json:"agent_environ"`
	AgentMem    string `json:"agent_mem"`
}

func TestHardening(t *testing.T) {
	eachRuntime(t, func(t *testing.T, rt podmantest.Runtime, e *podman.Engine) {
		allowedEnv := map[string]bool{"container": true, "HOSTNAME": true} // podman adds these
		spec := podmantest.Spec(rt)
		spec.Env = map[string]string{"EXTRA_SETTING": "1"}
		for k := range sandbox.BaseEnv(&spec) {
			allowedEnv[k] = true
		}
		sb := podmantest.Create(t, e, spec)
		res, out := run(t, sb, probe, 60*time.Second)
		if res.Status != sandbox.StatusOK {
			t.Fatalf("probe: %q %+v %s", res.Status, out.Error, out.Stderr)
		}
		var p probeOut
		if err := json.Unmarshal(out.Stdout, &p); err != nil {
			t.Fatalf("probe output: %v: %s", err, out.Stdout)
		}
		t.Logf("probe: %+v", p)
		if p.UID < 1<<20 || p.GID != p.UID || len(p.Groups) > 1 {
			t.Errorf("user %d:%d %v, want an unprivileged per-sandbox uid", p.UID, p.GID, p.Groups)
		}
		for k, v := range p.Caps {
			// gVisor has no CapAmb line.
			if v != "0000000000000000" && !(rt.Isolation == sandbox.IsolationGVisor && k == "CapAmb" && v == "") {
				t.Errorf("%s = %q, want no capabilities", k, v)
			}
		}
		// gVisor shows neither flag in its /proc; it applies the seccomp
		// filter itself (--oci-seccomp), checked by the syscalls below.
		if rt.Isolation == sandbox.IsolationContainer && (p.NoNewPrivs == nil || *p.NoNewPrivs != "1" || p.Seccomp == nil || *p.Seccomp != "2") {
			t.Errorf("NoNewPrivs %v Seccomp %v, want 1 and 2", p.NoNewPrivs, p.Seccomp)
		}
		if !strings.HasPrefix(p.Hostname, "sbx-") || len(p.Hostname) != 12 {
			t.Errorf("hostname %q, want a random sbx-xxxxxxxx", p.Hostname)
		}
		if strings.Contains(p.Hosts, "host.") || strings.Count(p.Hosts, "\n") != 2 || p.Resolv != "" {
			t.Errorf("hosts %q resolv %q, want only localhost and no resolver", p.Hosts, p.Resolv)
		}
		for _, k := range p.Env {
			if !allowedEnv[k] {
				t.Errorf("environment variable %s is not on the allowlist", k)
			}
		}
		if !slicesEqual(p.Ifaces, []string{"lo"}) {
			t.Errorf("network interfaces %v, want only lo", p.Ifaces)
		}
		for name, got := range map[string]string{"tcp to a public address": p.TCPPublic, "udp dns": p.UDPDNS,
			"tcp to the podman gateway": p.TCPGateway, "tcp to the metadata address": p.TCPMetadata} {
			if got == "ok" {
				t.Errorf("%s succeeded", name)
			}
		}
		if p.DNS == "ok" {
			t.Errorf("name resolution worked")
		}
		for name, got := range map[string]string{"/usr": p.WriteUsr, "/etc": p.WriteEtc, "/opt/sandpool": p.WriteOpt} {
			if got != "EROFS" && got != "EACCES" {
				t.Errorf("write into %s: %s, want EROFS", name, got)
			}
		}
		if p.Tmp != 64<<20 || p.Data != 256<<20 {
			t.Errorf("tmpfs sizes /tmp %d /mnt/data %d, want 64 MiB and 256 MiB", p.Tmp, p.Data)
		}
		if len(p.NoFile) != 2 || p.NoFile[0] != 1024 || p.NoFile[1] != 1024 {
			t.Errorf("RLIMIT_NOFILE %v", p.NoFile)
		}
		for name, got := range p.Syscalls {
			if got != "EPERM" {
				t.Errorf("syscall %s: %s, want EPERM", name, got)
			}
		}
		// The agent is not dumpable: its memory is out of reach. gVisor
		// still shows its environment, which holds nothing secret (the
		// agent token is never in an environment or a command line).
		if p.AgentMem == "ok" || (rt.Isolation == sandbox.IsolationContainer && p.AgentEnv == "ok") {
			t.Errorf("the agent's memory (%s) or environment (%s) is readable", p.AgentMem, p.AgentEnv)
		}
		if rt.Name == "runc" {
			// An image property; one runtime is enough (a full scan is slow
			// under gVisor).
			_, out := run(t, sb, "import subprocess\nprint(subprocess.run(['find', '/', '-xdev', '-perm', '/6000', '-type', 'f'], capture_output=True, text=True).stdout, end='')", 120*time.Second)
			if len(out.Stdout) != 0 {
				t.Errorf("setuid/setgid files in the image: %s", out.Stdout)
			}
		}
	})
}

func slicesEqual(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestIsolationGate: real sandboxes of runc, Debian's gVisor and the
// current one on both its platforms (systrap shows the CPU's hypervisor
// flag) are classified as what they are; demanding another isolation fails.
// (Forged identities: TestClassify.)
func TestIsolationGate(t *testing.T) {
	for _, rt := range append(podmantest.AllRuntimes(), podmantest.RunscSystrap) {
		t.Run(rt.Key(), func(t *testing.T) {
			t.Parallel()
			testIsolationGate(t, rt, podmantest.Engine(t, rt))
		})
	}
}

func testIsolationGate(t *testing.T, rt podmantest.Runtime, e *podman.Engine) {
	sb := podmantest.Create(t, e, podmantest.Spec(rt))
	if got := sandbox.Classify(e.Host(), sb.BootInfo.Identity); got != rt.Isolation {
		t.Errorf("%s sandbox classified as %q (identity %+v)", rt.Key(), got, sb.BootInfo.Identity)
	}
	t.Logf("%s: identity %+v", rt.Key(), sb.BootInfo.Identity)
	// Demand an isolation this runtime does not give: creation fails
	// with a clear error and leaves no container behind.
	wrong := map[sandbox.Isolation][]sandbox.Isolation{
		sandbox.IsolationContainer: {sandbox.IsolationGVisor, sandbox.IsolationVM},
		sandbox.IsolationGVisor:    {sandbox.IsolationVM, sandbox.IsolationContainer},
	}[rt.Isolation]
	for _, iso := range wrong {
		spec := podmantest.Spec(rt)
		spec.Isolation = iso
		spec.Labels["sandpool.case"] = "gate-" + string(iso)
		_, err := e.Create(context.Background(), spec)
		if errcode.Of(err) != errcode.IsolationMismatch || !strings.Contains(errcode.Public(err), "expected "+string(iso)) {
			t.Errorf("%s with isolation %s: %v", rt.Name, iso, err)
		}
		left, err := e.List(context.Background(), map[string]string{"sandpool.case": "gate-" + string(iso), podmantest.LabelRun: podmantest.RunID()})
		if err != nil || len(left) != 0 {
			t.Errorf("a refused sandbox was left behind: %v %v", left, err)
		}
	}
}

func TestFilesInSandbox(t *testing.T) {
	eachRuntime(t, func(t *testing.T, rt podmantest.Runtime, e *podman.Engine) {
		sb := podmantest.Create(t, e, podmantest.Spec(rt))
		ctx := context.Background()
		payload := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
		if fi, err := sb.Put(ctx, "in/data.bin", bytes.NewReader(payload), 8<<20); err != nil || fi.Size != int64(len(payload)) {
			t.Fatalf("put: %+v %v", fi, err)
		}
		_, out := run(t, sb, "import hashlib\nhashlib.sha256(open('in/data.bin', 'rb').read()).hexdigest()\n", 30*time.Second)
		if want := fmt.Sprintf("'%x'", sha256.Sum256(payload)); result(out) != want {
			t.Errorf("kernel reading the upload: %q, want %q", result(out), want)
		}
		run(t, sb, "import os\nos.symlink('/etc/passwd', 'pw')\nos.mkfifo('pipe')\nopen('out.txt', 'w').write('from python')", 30*time.Second)
		var buf bytes.Buffer
		if _, err := sb.Get(ctx, "in/data.bin", &buf, 8<<20); err != nil || !bytes.Equal(buf.Bytes(), payload) {
			t.Errorf("get: %d bytes, %v", buf.Len(), err)
		}
		buf.Reset()
		if _, err := sb.Get(ctx, "out.txt", &buf, 0); err != nil || buf.String() != "from python" {
			t.Errorf("get out.txt: %q %v", buf.String(), err)
		}
		for _, p := range []string{"pw", "pipe"} {
			start := time.Now()
			if _, err := sb.Get(ctx, p, &buf, 0); errcode.Of(err) != errcode.InvalidArgument || time.Since(start) > 5*time.Second {
				t.Errorf("get %s: %v after %s", p, err, time.Since(start))
			}
		}
		if _, err := sb.Get(ctx, "../../etc/passwd", &buf, 0); errcode.Of(err) != errcode.InvalidArgument {
			t.Errorf("traversal: %v", err)
		}
		files, _, err := sb.List(ctx, "")
		if err != nil || len(files) != 4 {
			t.Errorf("list: %+v %v", files, err)
		}
		if err := sb.Delete(ctx, "in/data.bin"); err != nil {
			t.Error(err)
		}
	})
}

// egressProbe prints the sandbox's interfaces, then whether a TCP
// connection to a listener on its own first non-loopback address goes
// through (an address in the namespace podman made for this container).
const egressProbe = `import socket, fcntl, struct
ifs = sorted(l.split(':')[0].strip() for l in open('/proc/net/dev').read().splitlines()[2:])
print(','.join(ifs))
ip = None
for i in ifs:
    if i != 'lo':
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            ip = socket.inet_ntoa(fcntl.ioctl(s.fileno(), 0x8915, struct.pack('256s', i.encode()))[20:24])
            break
        except OSError:
            pass
if not ip:
    # gVisor's network=host answers no SIOCGIFADDR: the address a UDP
    # socket connected towards the default gateway is bound to (a UDP
    # connect sends nothing).
    for l in open('/proc/net/route').read().splitlines()[1:]:
        f = l.split()
        if f[1] == '00000000':
            gw = socket.inet_ntoa(struct.pack('<I', int(f[2], 16)))
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.connect((gw, 9))
            ip = s.getsockname()[0]
if ip:
    ln = socket.socket(); ln.bind((ip, 0)); ln.listen(1)
    c = socket.create_connection((ip, ln.getsockname()[1]), timeout=5)
    a, _ = ln.accept(); c.sendall(b'hi'); print(a.recv(2).decode())
else:
    print('no address')`

// TestEgressNetwork: an egress sandbox is created under every runtime, the
// current gVisor's own netstack included (a second podman service with
// network=sandbox; Debian's runsc uses network=host), and has an interface
// besides loopback that carries TCP; a sandbox without egress has loopback
// only.
func TestEgressNetwork(t *testing.T) {
	for _, rt := range podmantest.AllRuntimes() {
		t.Run(rt.Name, func(t *testing.T) {
			t.Parallel()
			e := podmantest.Engine(t, rt)
			spec := podmantest.Spec(rt)
			spec.Network = sandbox.NetworkEgress
			sb := podmantest.Create(t, e, spec)
			res, out := run(t, sb, egressProbe, 30*time.Second)
			lines := strings.Split(strings.TrimSpace(string(out.Stdout)), "\n")
			if res.Status != sandbox.StatusOK || len(lines) != 2 || !strings.Contains(lines[0], "eth0") || lines[1] != "hi" {
				t.Errorf("egress sandbox: %s %q %+v", res.Status, out.Stdout, out.Error)
			}
			// Exec, inspect and removal of it go through the engine's
			// main service.
			if _, err := e.Open(context.Background(), sb.ID); err != nil {
				t.Errorf("Open: %v", err)
			}
			none := podmantest.Create(t, e, podmantest.Spec(rt))
			if _, out := run(t, none, egressProbe, 30*time.Second); string(out.Stdout) != "lo\nno address\n" {
				t.Errorf("sandbox without egress: %q", out.Stdout)
			}
		})
	}
}
