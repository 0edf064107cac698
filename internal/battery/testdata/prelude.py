# Prelude of every battery probe. CFG (a dict) is defined above it by the
# harness: the runtime, the host's canary addresses, tokens to hunt for.
import ctypes, errno, json, os, socket, stat, struct, subprocess, sys, time

RUNTIME = CFG["runtime"]
GVISOR = RUNTIME.startswith("runsc")  # runsc (current) and runsc-debian
R = {}
libc = ctypes.CDLL(None, use_errno=True)


def check(cid, ok, got="", note=""):
    """Record a verdict: ok means the safe outcome held."""
    R[cid] = {"ok": bool(ok), "got": str(got)[:2000], "note": note}


def ename(e):
    return errno.errorcode.get(e, str(e))


def attempt(f):
    """'ok' if f() returned, else the errno name (or exception type)."""
    try:
        f()
        return "ok"
    except OSError as e:
        return ename(e.errno) if e.errno else type(e).__name__
    except Exception as e:
        return type(e).__name__


def sc(nr, *args):
    """A raw syscall: 'ok' or the errno name."""
    r = libc.syscall(nr, *[ctypes.c_long(a) if isinstance(a, int) else a for a in args])
    return "ok" if r >= 0 else ename(ctypes.get_errno())


def read(path, n=65536):
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except OSError as e:
        return None


def done():
    print("BATTERY:" + json.dumps(R))
