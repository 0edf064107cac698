# Information leaks (security-bar 2.7, I1-I5; I6 is the harness's).
import re
allowed = set(CFG["env_allowed"])
envs = {}
for pid in ["self"] + [p for p in os.listdir("/proc") if p.isdigit()]:
    b = read("/proc/%s/environ" % pid)
    if b:
        for kv in b.split(b"\0"):
            if kv:
                k, _, v = kv.decode(errors="replace").partition("=")
                envs.setdefault(k, v)
pat = re.compile(r"(TOKEN|SECRET|PASSWORD|KEY|KUBERNETES_|CONTAINER_HOST|_PROXY|AWS_|AZURE_|GOOGLE_)", re.I)
vals = re.compile(r"(eyJ[A-Za-z0-9_-]{10,}|AKIA[0-9A-Z]{16}|-----BEGIN [A-Z ]*PRIVATE KEY)")
bad = sorted(k for k in envs if k not in allowed)
sus = sorted(k for k, v in envs.items() if pat.search(k) or vals.search(v))
leak = [k for k, v in envs.items() if CFG["identifier"] in v or CFG["server_secret"] in v]
check("I1", not bad and not sus and not leak, {"not allowlisted": bad, "suspicious": sus, "identifier or secret": leak})

hostname = socket.gethostname()
mid = (read("/etc/machine-id") or b"").strip().decode()
uuid = (read("/sys/class/dmi/id/product_uuid") or b"").strip().decode()
macs = {}
if os.path.isdir("/sys/class/net"):
    for i in os.listdir("/sys/class/net"):
        a = (read("/sys/class/net/%s/address" % i) or b"").strip().decode()
        if a and a != "00:00:00:00:00:00":
            macs[i] = a
check("I2", re.fullmatch(r"sbx-[0-9a-f]{8}", hostname) and hostname != CFG["host_hostname"] and mid != CFG["host_machine_id"]
      and not uuid and not macs, {"hostname": hostname, "machine-id": mid or "(none)", "dmi uuid": uuid, "macs": macs})

release = os.uname().release
version = (read("/proc/version") or b"").decode()
flags = (read("/proc/cpuinfo") or b"").decode()
hyper = " hypervisor" in flags
if GVISOR:
    ok = release != CFG["host_release"] or "gVisor" in version or os.uname().version == "#1 SMP Sun Jan 10 15:06:54 PST 2016"
    note = "gVisor: a synthetic kernel identity"
else:
    ok = release == CFG["host_release"]
    note = "runc shares the host kernel (exposure recorded, as expected for this runtime)"
check("I3", ok, {"release": release, "version": os.uname().version, "hypervisor flag": hyper, "cpus": os.cpu_count()}, note)

creds = []
for p in ("/var/run/secrets/kubernetes.io", "/run/secrets", "/root/.aws", "/root/.azure", "/root/.docker/config.json",
          "/etc/containers/auth.json", "/run/containers/0/auth.json", os.path.expanduser("~/.aws"), os.path.expanduser("~/.ssh"),
          os.path.expanduser("~/.docker/config.json")):
    if os.path.exists(p):
        creds.append(p)
for root in ("/etc", "/opt", "/app", "/usr/local"):
    for dp, dirs, files in os.walk(root):
        for name in files:
            p = os.path.join(dp, name)
            if name.endswith((".key", ".pem")) or "private" in dp:
                b = read(p, 4096)
                if b and b"PRIVATE KEY" in b:
                    creds.append(p)
check("I4", not creds, creds)

resolv = (read("/etc/resolv.conf") or b"").decode()
hosts = (read("/etc/hosts") or b"").decode()
route = (read("/proc/net/route") or b"").decode().splitlines()[1:]
arp = (read("/proc/net/arp") or b"").decode().splitlines()[1:]
host_ips = [ip for ip in CFG["host_ips"] if ip not in ("127.0.0.1", "::1") and ip in resolv + hosts]
check("I5", (not resolv.strip() or all(l.startswith("#") for l in resolv.splitlines() if l.strip())) and
      not host_ips and not route and not arp and CFG["host_hostname"] not in hosts,
      {"resolv.conf": resolv[:200], "hosts": hosts[:300], "routes": route, "arp": arp, "host addresses": host_ips})
done()
