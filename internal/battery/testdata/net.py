# Network egress (security-bar 2.2, N1-N10). Every probe must fail; the
# host-side canaries (CFG["tcp"], CFG["udp"]) must see nothing.


def tcp(host, port, family=socket.AF_INET, timeout=1.5):
    def f():
        s = socket.socket(family, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect((host, port))
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            if s.recv(1):
                raise RuntimeError("answered")
        finally:
            s.close()
    return attempt(f)


def udp(host, port, family=socket.AF_INET, payload=b"x"):
    def f():
        s = socket.socket(family, socket.SOCK_DGRAM)
        s.settimeout(1)
        try:
            s.sendto(payload, (host, port))
            s.recv(1)
        finally:
            s.close()
    return attempt(f)


def dns_query(name):
    # A minimal DNS query packet for name, type A.
    q = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    return q + b"\x00" + struct.pack(">HH", 1, 1)


got = {h: tcp(h, p) for h, p in [("1.1.1.1", 80), ("8.8.8.8", 53), ("93.184.216.34", 443)]}
got["example.com"] = attempt(lambda: socket.create_connection(("example.com", 443), timeout=1.5))
check("N1", all(v != "ok" for v in got.values()), got)

q = dns_query("canary-%s.example.com" % CFG["token"])
got = {"8.8.8.8": udp("8.8.8.8", 53, payload=q), "1.1.1.1": udp("1.1.1.1", 53, payload=q),
       "2001:4860:4860::8888": udp("2001:4860:4860::8888", 53, socket.AF_INET6, q)}
check("N2", all(v != "ok" for v in got.values()), got)

resolv = (read("/etc/resolv.conf") or b"").decode(errors="replace")
servers = [l.split()[1] for l in resolv.splitlines() if l.startswith("nameserver") and len(l.split()) > 1]
got = {"getaddrinfo": attempt(lambda: socket.getaddrinfo("example.com", 80)), "nameservers": servers}
for s in servers:
    got[s] = udp(s, 53, socket.AF_INET6 if ":" in s else socket.AF_INET, q)
check("N3", got["getaddrinfo"] != "ok" and not servers, got)

got = {"raw": attempt(lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)),
       "raw6": attempt(lambda: socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6))}
def ping():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
    s.settimeout(1)
    s.sendto(b"\x08\x00\x00\x00\x00\x01\x00\x01", ("1.1.1.1", 0))
    s.recv(64)
got["dgram_echo"] = attempt(ping)
check("N4", got["raw"] != "ok" and got["raw6"] != "ok" and got["dgram_echo"] != "ok", got)

ifaces = sorted(os.listdir("/sys/class/net")) if os.path.isdir("/sys/class/net") else []
inet6 = [l.split() for l in (read("/proc/net/if_inet6") or b"").decode().splitlines()]
non_lo6 = [l for l in inet6 if l and l[-1] != "lo"]
got = {"ifaces": ifaces, "inet6": non_lo6, "tcp6": tcp("2606:4700:4700::1111", 443, socket.AF_INET6),
       "multicast": udp("ff02::1", 9, socket.AF_INET6)}
check("N5", ifaces in (["lo"], []) and not non_lo6 and got["tcp6"] != "ok" and got["multicast"] != "ok", got,
      "gVisor shows no /sys/class/net entries" if GVISOR and not ifaces else "")

meta = {}
for host, fam in [("169.254.169.254", socket.AF_INET), ("100.100.100.200", socket.AF_INET),
                  ("169.254.170.2", socket.AF_INET), ("fd00:ec2::254", socket.AF_INET6)]:
    meta[host] = tcp(host, 80, fam)
meta["metadata.google.internal"] = attempt(lambda: socket.getaddrinfo("metadata.google.internal", 80))
check("N6", all(v != "ok" for v in meta.values()), meta)

hosts = (read("/etc/hosts") or b"").decode(errors="replace")
targets = ["169.254.1.2", "10.88.0.1", "10.0.2.2", "172.17.0.1"]
route = [l.split() for l in (read("/proc/net/route") or b"").decode().splitlines()[1:]]
for r in route:
    if len(r) > 2 and r[2] != "00000000":
        targets.append(socket.inet_ntoa(struct.pack("<I", int(r[2], 16))))
got = {}
for h in targets:
    for p in (22, 80, 443, 2375, 6443, 8080, 10250):
        v = tcp(h, p, timeout=0.5)
        if v == "ok" or p == 22:
            got["%s:%d" % (h, p)] = v
for h, p in CFG["tcp"]:
    got["canary tcp %s:%d" % (h, p)] = tcp(h, p, socket.AF_INET6 if ":" in h else socket.AF_INET)
for h, p in CFG["udp"]:
    got["canary udp %s:%d" % (h, p)] = udp(h, p, socket.AF_INET6 if ":" in h else socket.AF_INET, CFG["token"].encode())
check("N7", "host.containers.internal" not in hosts and "host.docker.internal" not in hosts
      and all(v != "ok" for v in got.values()), got)

addrs = []
for l in (read("/proc/net/fib_trie") or b"").decode().splitlines():
    if "/32 host LOCAL" in l:
        pass
own = [a for a in socket.getaddrinfo(socket.gethostname(), None) if not a[4][0].startswith(("127.", "::1"))] \
    if attempt(lambda: socket.getaddrinfo(socket.gethostname(), None)) == "ok" else []
check("N8", not own and not non_lo6, {"own non-loopback addresses": own})

socks = []
for root, dirs, files in os.walk("/"):
    if root in ("/proc", "/sys", "/dev"):
        dirs[:] = []
        continue
    for name in files + dirs:
        p = os.path.join(root, name)
        try:
            if stat.S_ISSOCK(os.lstat(p).st_mode):
                socks.append(p)
        except OSError:
            pass
abstract = sorted({l.split()[-1] for l in (read("/proc/net/unix") or b"").decode().splitlines()[1:]
                   if l.split() and l.split()[-1].startswith("@")})
check("N9", not socks and all(a.startswith("@sandpool-agent") for a in abstract),
      {"socket files": socks, "abstract": abstract})

# The agent's socket: a caller from the sandbox (its uid) must be refused
# before anything is read, and no TCP port may listen.
def agent_answers():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(3)
    s.connect("\0sandpool-agent-v1")
    r, w = os.pipe()
    s.sendmsg([b"\x01"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("ii", r, w))])
    os.write(w, b"SPv1" + b"\0" * 32)
    data = s.recv(64)
    s.close()
    if data:
        raise RuntimeError("the agent answered: %r" % data[:16])
agent = attempt(agent_answers)
listen = []
for f in ("/proc/net/tcp", "/proc/net/tcp6"):
    for l in (read(f) or b"").decode().splitlines()[1:]:
        parts = l.split()
        if len(parts) > 3 and parts[3] == "0A":
            listen.append(parts[1])
check("N10", agent != "RuntimeError" and not listen, {"agent": agent, "listening": listen},
      "refused connections end with EOF (ok), ECONNREFUSED or a reset")
done()
