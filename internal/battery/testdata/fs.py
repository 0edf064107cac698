# Filesystem (security-bar 2.3, F1-F5 and F7-F10; F6 is driven through the
# file API by the harness).
mounts = []
for l in (read("/proc/self/mountinfo") or b"").decode().splitlines():
    f = l.split()
    sep = f.index("-")
    mounts.append({"point": f[4], "opts": f[5], "type": f[sep + 1], "src": f[sep + 2], "root": f[3]})
rw = sorted(m["point"] for m in mounts if "rw" in m["opts"].split(",") and m["type"] not in ("proc", "devpts", "mqueue", "tmpfs"))
host_paths = [m for m in mounts if any(s in m["root"] + m["src"] for s in ("/var/lib/containers", "overlay-containers", "libpod", "/home", "/run/podman", "/root"))
              and m["point"] != "/opt/sandpool"]
ro_points = {p: attempt(lambda p=p: open(os.path.join(p, ".battery-probe"), "w")) for p in ("/proc/sys", "/sys", "/sys/fs/cgroup")
             if os.path.isdir(p)}
# The current gVisor mounts its own cgroupfs per controller read-write (no
# host cgroup behind it); nothing in it may be writable by the sandbox.
def cgroup_writes(point):
    w = []
    for dp, dirs, files in os.walk(point):
        for n in files:
            if attempt(lambda p=os.path.join(dp, n): open(p, "w").close()) == "ok":
                w.append(os.path.join(dp, n))
        if attempt(lambda d=os.path.join(dp, ".battery-probe"): os.mkdir(d)) == "ok":
            w.append(dp + " (mkdir)")
    return w
cg = {m["point"]: cgroup_writes(m["point"]) for m in mounts if GVISOR and m["type"] == "cgroup" and m["point"] in rw}
check("F1", all(v != "ok" for v in ro_points.values()) and not host_paths and not any(cg.values()) and
      all(p in ("/mnt/data", "/tmp", "/dev/shm", "/etc/hosts", "/etc/resolv.conf", "/etc/hostname", "/run/.containerenv", "/dev/termination-log") or p.startswith(("/proc", "/dev")) or p in cg
          for p in rw),
      {"rw (not tmpfs/proc)": rw, "host paths": host_paths, "write into": ro_points, "writable in gVisor's cgroupfs": cg},
      "gVisor serves its own mount table" + ("; its own cgroupfs is mounted rw per controller, nothing in it writable by the sandbox" if cg else "") if GVISOR else "")

got = {}
for p in ("/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug", "/proc/1/environ", "/proc/1/mem"):
    b = read(p, 4096)
    got[p] = "unreadable" if b is None else ("empty" if not b else "readable")
kall = read("/proc/kallsyms", 4096)
got["/proc/kallsyms"] = "unreadable" if kall is None else ("zeroed" if all(l.startswith(b"0000000000000000") for l in kall.splitlines()[:20] if l) else "addresses")
for p in ("/proc/sysrq-trigger", "/proc/sys/kernel/core_pattern", "/proc/sys/vm/drop_caches"):
    got["write " + p] = attempt(lambda p=p: open(p, "w").close())
secret = [p for p in ("/proc/kcore", "/proc/1/environ", "/proc/1/mem") if got[p] == "readable"]
if GVISOR and got["/proc/1/environ"] == "readable":
    # gVisor lets the sandbox uid read the agent's environment (not its
    # memory): it holds only the allowlisted variables, checked in I1.
    secret.remove("/proc/1/environ")
check("F2", not secret and got["/proc/kallsyms"] != "addresses" and all(got["write " + p] != "ok" for p in
      ("/proc/sysrq-trigger", "/proc/sys/kernel/core_pattern", "/proc/sys/vm/drop_caches")), got,
      "gVisor: /proc/1/environ readable, allowlisted contents" if GVISOR else "")

# Read-only, or at least unwritable by the sandbox: this host has cgroup
# v1, where runc mounts a root-owned tmpfs at /sys/fs/cgroup and the
# controllers read-only under it; gVisor has no statvfs for /proc/sys.
ro = {}
cg = ["/sys/fs/cgroup/" + d for d in (os.listdir("/sys/fs/cgroup") if os.path.isdir("/sys/fs/cgroup") else [])]
for p in ["/sys", "/sys/fs/cgroup", "/proc/sys"] + cg:
    try:
        flag = bool(os.statvfs(p).f_flag & os.ST_RDONLY)
    except OSError as e:
        flag = False
    w = attempt(lambda p=p: open(os.path.join(p, ".battery-probe"), "w").close())
    ro[p] = "ro" if flag else ("unwritable: " + w if w != "ok" else "WRITABLE")
ids = {p: (read(p, 256) or b"").strip().decode(errors="replace") for p in
       ("/sys/class/dmi/id/product_uuid", "/sys/class/dmi/id/product_serial", "/sys/class/dmi/id/board_serial")}
ids = {k: v for k, v in ids.items() if v}
try:
    debug = os.listdir("/sys/kernel/debug") if os.path.isdir("/sys/kernel/debug") else []
except OSError:
    debug = []
check("F3", all(v != "WRITABLE" for v in ro.values()) and not ids and not debug,
      {"read-only": ro, "host identifiers": ids, "debugfs": debug[:5]})

got = {p: attempt(lambda p=p: open(os.path.join(p, ".battery-probe"), "w").close()) for p in ("/", "/usr", "/etc", "/bin", "/opt/sandpool")}
check("F4", all(v in ("EROFS", "EACCES") for v in got.values()), got)

def fill(path):
    n = 0
    try:
        with open(os.path.join(path, ".battery-fill"), "wb") as f:
            chunk = b"\0" * (1 << 20)
            while n < (2 << 30):
                f.write(chunk)
                f.flush()
                n += len(chunk)
    except OSError as e:
        return n, ename(e.errno)
    finally:
        try:
            os.remove(os.path.join(path, ".battery-fill"))
        except OSError:
            pass
    return n, "no limit"
got = {p: fill(p) for p in ("/tmp", "/mnt/data", "/dev/shm", os.environ.get("HOME", "/tmp"))}
limits = CFG["quotas"]
check("F5", all(e in ("ENOSPC", "EDQUOT") and n <= limits.get(p, 1 << 30) for p, (n, e) in got.items()), got)

devs = sorted(os.listdir("/dev"))
allowed = {"null", "zero", "full", "random", "urandom", "tty", "ptmx", "pts", "shm", "fd", "stdin", "stdout", "stderr",
           "console", "mqueue", "core", "termination-log"}
opens = {p: attempt(lambda p=p: os.close(os.open(p, os.O_RDONLY))) for p in
         ("/dev/mem", "/dev/kmsg", "/dev/kvm", "/dev/vda", "/dev/sda", "/dev/fuse", "/dev/net/tun", "/dev/vsock", "/dev/nvidia0")}
mk = {"chr": attempt(lambda: os.mknod("/tmp/.battery-chr", stat.S_IFCHR | 0o600, os.makedev(1, 1))),
      "blk": attempt(lambda: os.mknod("/tmp/.battery-blk", stat.S_IFBLK | 0o600, os.makedev(8, 0)))}
note = ""
if GVISOR:
    # gVisor's Sentry serves its own /dev/fuse and /dev/net/tun (no host
    # device behind them); they open, but are usable only with mount(2)
    # and TUNSETIFF, which need what the sandbox lacks.
    import fcntl
    def tunsetiff():
        fd = os.open("/dev/net/tun", os.O_RDWR)
        try:
            fcntl.ioctl(fd, 0x400454CA, struct.pack("16sH", b"battery0", 0x0001))
        finally:
            os.close(fd)
    usable = {"TUNSETIFF": attempt(tunsetiff), "mount fuse": sc(165, b"fuse", b"/tmp", b"fuse", 0, b"fd=3,rootmode=40000,user_id=0,group_id=0")}
    opens.update(usable)
    for p in ("/dev/fuse", "/dev/net/tun"):
        if opens[p] == "ok":
            opens[p] = "gVisor's own (unusable)"
    allowed |= {"fuse", "net"}
    note = "gVisor serves its own /dev/fuse and /dev/net/tun; TUNSETIFF and mounting FUSE fail"
    # The current gVisor adds /dev/char, links major:minor -> the devices
    # above: allowed when every link points at an allowed one.
    if os.path.isdir("/dev/char"):
        links = {n: os.readlink(os.path.join("/dev/char", n)) for n in os.listdir("/dev/char")}
        opens["/dev/char links"] = {n: l for n, l in links.items() if l.removeprefix("../").split("/")[0] not in allowed} or "all to the devices above"
        if opens["/dev/char links"] == "all to the devices above":
            allowed.add("char")
        note += "; /dev/char links to the same devices"
check("F7", set(devs) <= allowed and all(v != "ok" for v in opens.values()) and all(v != "ok" for v in mk.values()),
      {"dev": devs, "opens": opens, "mknod": mk}, note)

got = {"mount": sc(165, b"none", b"/tmp", b"tmpfs", 0, 0), "chroot": sc(161, b"/"), "pivot_root": sc(155, b"/tmp", b"/tmp"),
       "umount": sc(166, b"/mnt/data", 0)}
check("F8", all(v in ("EPERM", "EACCES", "ENOSYS") for v in got.values()), got)

fds = {}
for d in ("/proc/self/fd", "/proc/1/fd"):
    try:
        for fd in os.listdir(d):
            try:
                fds["%s/%s" % (d, fd)] = os.readlink("%s/%s" % (d, fd))
            except OSError as e:
                fds["%s/%s" % (d, fd)] = ename(e.errno)
    except OSError as e:
        fds[d] = ename(e.errno)
leaks = {k: v for k, v in fds.items() if v.startswith("/") and not v.startswith(("/dev/", "/proc/", "/tmp", "/mnt/data", "/usr/", "/opt/sandpool"))}
cwd = os.path.realpath("/proc/self/cwd")
exe = attempt(lambda: open("/proc/self/exe", "wb").close())
check("F9", not leaks and cwd.startswith(("/mnt/data", "/tmp")) and exe != "ok", {"leaks": leaks, "cwd": cwd, "exe": exe, "fds": len(fds)})

found = []
for root, dirs, files in os.walk("/"):
    if root in ("/proc", "/sys", "/dev"):
        dirs[:] = []
        continue
    for name in files:
        if CFG["host_canary"] in name:
            found.append(os.path.join(root, name))
check("F10", not found, found)
done()
