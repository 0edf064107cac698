# sandpool kernel: a long-lived Python process driven by sandpool-agent.
#
# fd 3 carries commands from the agent, fd 4 carries events to it; both are
# frames of a 4-byte big-endian length followed by JSON. User code's stdout
# and stderr are the process's fds 1 and 2, which the agent reads directly,
# so output of subprocesses is captured too. The agent drains fds 1 and 2
# after it reads a "done" event, which keeps output and "done" in order.
import ast
import base64
import builtins
import io
import json
import os
import re
import signal
import struct
import sys
import threading
import time
import traceback

CMD_FD, EVT_FD = 3, 4
MAX_PNG = 2 << 20  # larger images are replaced by a note (frames are 4 MiB)
MAX_TEXT = 1 << 20  # text/plain and text/html of one bundle
MAX_TB = 200
ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")

_executing = False
_shown = set()


def _on_sigint(signum, frame):
    if _executing:
        raise KeyboardInterrupt
    # Between executions an interrupt has nothing to stop.


class Channel:
    def __init__(self):
        self.evt = os.fdopen(EVT_FD, "wb", buffering=0)
        self.buf = b""
        # User code must not inherit the control pipes into subprocesses.
        os.set_inheritable(CMD_FD, False)
        os.set_inheritable(EVT_FD, False)

    def _fill(self, n):
        # One read usually brings a whole command: fewer syscalls, which
        # are costly under gVisor.
        while len(self.buf) < n:
            chunk = os.read(CMD_FD, max(n - len(self.buf), 65536))
            if not chunk:
                return False
            self.buf += chunk
        return True

    def recv(self):
        if not self._fill(4):
            return None
        (n,) = struct.unpack(">I", self.buf[:4])
        if not self._fill(4 + n):
            return None
        body, self.buf = self.buf[4:4 + n], self.buf[4 + n:]
        return json.loads(body)

    def send(self, obj):
        body = json.dumps(obj, ensure_ascii=False, default=str).encode("utf-8", "replace")
        data = struct.pack(">I", len(body)) + body
        # A signal may interrupt a partial write; finish it so the frame
        # stream stays intact.
        view = memoryview(data)
        while view:
            try:
                n = self.evt.write(view)
            except KeyboardInterrupt:
                continue
            view = view[n:]


chan = None


def _clip(s):
    if len(s) > MAX_TEXT:
        return s[:MAX_TEXT] + "\n[... truncated]"
    return s


def _bundle(data):
    """Normalise a MIME bundle to str values (binary as base64)."""
    out = {}
    for mime, v in (data or {}).items():
        if not isinstance(mime, str):
            continue
        if isinstance(v, (bytes, bytearray)):
            if len(v) > MAX_PNG:
                out["text/plain"] = "<%s output omitted: %d bytes exceeds the limit>" % (mime, len(v))
                continue
            out[mime] = base64.b64encode(bytes(v)).decode("ascii")
        elif isinstance(v, str):
            if mime.startswith("image/") and len(v) > MAX_PNG * 4 // 3:
                out["text/plain"] = "<%s output omitted: too large>" % mime
                continue
            out[mime] = _clip(v) if mime.startswith("text/") else v
        else:
            try:
                out[mime] = json.dumps(v, default=str)
            except Exception:
                out[mime] = str(v)
    return out


def _json_value(v):
    """The JSON form of a primitive result, or None."""
    if isinstance(v, bool) or v is None:
        return None if v is None else v
    if isinstance(v, int):
        return v if -(2 ** 53) <= v <= 2 ** 53 else None
    if isinstance(v, float):
        return v if v == v and v not in (float("inf"), float("-inf")) else None
    if isinstance(v, str):
        return _clip(v)
    return None


def emit_display(data):
    # What the cell printed before this comes first.
    flush_output()
    chan.send({"type": "display", "data": _bundle(data)})


def emit_result(data, value):
    flush_output()
    msg = {"type": "result", "data": _bundle(data)}
    jv = _json_value(value)
    if jv is not None:
        msg["value"] = jv
    chan.send(msg)


def _error(ename, evalue, tb_lines):
    lines = []
    for chunk in tb_lines or []:
        lines.extend(ANSI.sub("", str(chunk)).rstrip("\n").split("\n"))
    if len(lines) > MAX_TB:
        lines = lines[: MAX_TB // 2] + ["[... %d lines omitted]" % (len(lines) - MAX_TB)] + lines[-MAX_TB // 2 :]
    return {"type": "error", "ename": ANSI.sub("", ename), "evalue": _clip(ANSI.sub("", evalue)), "traceback": lines}


# --- matplotlib --------------------------------------------------------------

def _figure_png(fig):
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()


def flush_figures():
    """Send every open figure as image/png, then close them all."""
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is None:
        return
    try:
        nums = plt.get_fignums()
    except Exception:
        return
    for num in nums:
        try:
            fig = plt.figure(num)
            if id(fig) in _shown:
                continue
            png = _figure_png(fig)
            w, h = fig.get_size_inches() * fig.dpi
            text = "<Figure size %dx%d with %d Axes>" % (w, h, len(fig.axes))
            emit_display({"image/png": png, "text/plain": text})
        except Exception as e:  # a broken figure must not break the kernel
            emit_display({"text/plain": "<figure could not be rendered: %s>" % e})
    try:
        plt.close("all")
    except Exception:
        pass
    _shown.clear()


def _patch_pyplot():
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is None or getattr(plt.show, "_sandpool", False):
        return

    def show(*args, **kwargs):
        flush_figures()

    show._sandpool = True
    plt.show = show


# --- runners -------------------------------------------------------------------

class PlainRunner:
    """Runs cells with exec when IPython is missing."""

    ipython = False

    def __init__(self):
        import types

        # A real __main__ module lets pickle and multiprocessing find
        # functions defined in cells.
        mod = types.ModuleType("__main__")
        sys.modules["__main__"] = mod
        self.ns = mod.__dict__
        self.ns["__builtins__"] = builtins

    def namespace(self):
        return self.ns

    def run(self, code):
        try:
            tree = ast.parse(code, "<cell>", "exec")
        except SyntaxError as e:
            return _error(type(e).__name__, str(e), traceback.format_exception_only(type(e), e))
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = ast.Expression(tree.body.pop().value)
        try:
            exec(compile(tree, "<cell>", "exec"), self.ns)
            if last is not None:
                value = eval(compile(last, "<cell>", "eval"), self.ns)
                if value is not None:
                    self.ns["_"] = value
                    data = {"text/plain": repr(value)}
                    html = getattr(value, "_repr_html_", None)
                    if callable(html):
                        try:
                            h = html()
                            if isinstance(h, str):
                                data["text/html"] = h
                        except Exception:
                            pass
                    emit_result(data, value)
        except BaseException as e:  # noqa: B902 - user code may raise anything
            tb = traceback.extract_tb(e.__traceback__)
            tb = [f for f in tb if f.filename not in ("<string>", "<sandpool-kernel>")]  # the kernel's own frames
            lines = ["Traceback (most recent call last):"] + [
                l.rstrip("\n") for l in traceback.format_list(tb)
            ] + [l.rstrip("\n") for l in traceback.format_exception_only(type(e), e)]
            return _error(type(e).__name__, str(e), lines)
        return None


class IPythonRunner:
    """Runs cells in an IPython InteractiveShell."""

    ipython = True

    def __init__(self):
        from IPython.core.displayhook import DisplayHook
        from IPython.core.displaypub import DisplayPublisher
        from IPython.core.interactiveshell import InteractiveShell
        from traitlets.config import Config

        runner = self
        self.error = None

        class Hook(DisplayHook):
            def write_output_prompt(self):
                pass

            def write_format_data(self, format_dict, md_dict=None):
                runner.result = format_dict

            def finish_displayhook(self):
                pass

            def log_output(self, format_dict):
                pass

        class Pub(DisplayPublisher):
            def publish(self, data, metadata=None, source=None, *, transient=None, update=False, **kw):
                emit_display(data)

            def clear_output(self, wait=False):
                pass

        cfg = Config()
        cfg.HistoryManager.enabled = False
        cfg.HistoryManager.hist_file = ":memory:"
        self.shell = InteractiveShell.instance(config=cfg, colors="NoColor")
        hook = Hook(shell=self.shell, cache_size=self.shell.cache_size)
        self.shell.displayhook = hook
        self.shell.display_trap.hook = hook  # the trap installs it as sys.displayhook
        self.shell.display_pub = Pub(shell=self.shell)
        self.shell.InteractiveTB.set_mode("Plain")
        try:
            from IPython.core.pylabtools import select_figure_formats

            if "matplotlib" in sys.modules:
                select_figure_formats(self.shell, {"png"})
        except Exception:
            pass

        def showtb(etype, evalue, stb):
            runner.error = _error(getattr(etype, "__name__", str(etype)), str(evalue), stb)

        self.shell._showtraceback = showtb

    def namespace(self):
        return self.shell.user_ns

    def run(self, code):
        self.error = None
        self.result = None
        res = self.shell.run_cell(code, store_history=False)
        if self.result is not None:
            value = res.result
            if value is not None and type(value).__module__.startswith("matplotlib.figure"):
                _shown.add(id(value))
            emit_result(self.result, value)
        if not res.success and self.error is None:
            e = res.error_in_exec or res.error_before_exec
            self.error = _error(type(e).__name__, str(e), traceback.format_exception(type(e), e, e.__traceback__))
        return self.error


# --- output --------------------------------------------------------------------
# User code's stdout and stderr are buffered here, and flushed every 20 ms
# while a cell runs, at its end, and before a fork (so a child does not
# repeat what its parent wrote). Written through, every print costs a few
# system calls here and in the agent, and under gVisor each costs tens of
# microseconds: 100 000 prints took 22 s under runsc, 0.3 s under runc.

_out_lock = threading.Lock()  # held while flushing: never during a fork
_cell = threading.Event()  # set while a cell runs: the flusher's cue
FLUSH_INTERVAL = 0.02


def _buffered(fd, old):
    raw = io.FileIO(fd, "w", closefd=False)
    return io.TextIOWrapper(io.BufferedWriter(raw, 1 << 16), encoding=old.encoding, errors=old.errors)


def _flush_locked():
    for s in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            s.flush()
        except BaseException:  # noqa: B902
            pass


def flush_output():
    with _out_lock:
        _flush_locked()


def _flusher():
    while True:
        _cell.wait()
        time.sleep(FLUSH_INTERVAL)
        flush_output()


def _before_fork():
    _out_lock.acquire()
    _flush_locked()


def _flushing(f):
    def call(*args, **kwargs):
        flush_output()
        return f(*args, **kwargs)

    call.__name__, call.__doc__, call.__wrapped__ = f.__name__, f.__doc__, f
    return call


def setup_output():
    sys.stdout = _buffered(1, sys.stdout)
    sys.stderr = _buffered(2, sys.stderr)
    os.register_at_fork(before=_before_fork, after_in_parent=_out_lock.release, after_in_child=_out_lock.release)
    # What the cell printed comes before what a program it starts prints,
    # and is not lost to an exec.
    for name in ("system", "posix_spawn", "posix_spawnp", "execv", "execve"):
        if hasattr(os, name):
            setattr(os, name, _flushing(getattr(os, name)))
    import subprocess

    if getattr(subprocess, "_fork_exec", None) is not None:
        subprocess._fork_exec = _flushing(subprocess._fork_exec)
    threading.Thread(target=_flusher, name="sandpool-flush", daemon=True).start()


# --- fork budget (gVisor) -------------------------------------------------------

def _guard_fork(budget):
    """Makes os.fork (and so multiprocessing and pty) fail with EAGAIN once
    the sandbox holds budget processes. Under gVisor a forked copy of this
    kernel costs about 30 MiB (copy-on-write in 2 MiB units), and a sandbox
    out of memory dies whole: a fork bomb must stop at EAGAIN first, as it
    does at RLIMIT_NPROC under runc. A lock serialises count and fork, so
    concurrent forkers cannot overshoot. Forks that bypass os (ctypes) are
    not counted."""
    import errno
    import fcntl

    real_fork = os.fork
    lock_path = "/dev/shm/.sandpool-fork"

    def fork():
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:
            fd = -1
        try:
            if fd >= 0:
                fcntl.flock(fd, fcntl.LOCK_EX)
            n = sum(1 for e in os.listdir("/proc") if e.isdigit())
            if n >= budget:
                raise OSError(errno.EAGAIN, "Resource temporarily unavailable (the sandbox's process budget)")
            return real_fork()
        finally:
            if fd >= 0:
                os.close(fd)  # in the child too: the lock is the parent's

    os.fork = fork


# --- main loop -----------------------------------------------------------------

def _arg(name, default=""):
    argv = sys.argv[1:]
    for i, a in enumerate(argv):
        if a == name and i + 1 < len(argv):
            return argv[i + 1]
    return default


def main():
    global chan, _executing
    as_limit = int(_arg("--as-limit", "0") or 0)
    if as_limit > 0:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (as_limit, as_limit))
    nproc = int(_arg("--nproc-limit", "0") or 0)
    if nproc > 0:
        import resource

        # Below the sandbox's own limit: a fork bomb or zombies must leave
        # the agent room for the threads it needs.
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
    budget = int(_arg("--fork-budget", "0") or 0)
    if budget > 0:
        _guard_fork(budget)
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("1000")  # under memory pressure the kernel dies, not the agent
    except OSError:
        pass
    chan = Channel()
    signal.signal(signal.SIGINT, _on_sigint)
    setup_output()

    t0 = time.monotonic()
    preload = [m for m in _arg("--preload").split(",") if m]
    aliases = {"numpy": "np", "pandas": "pd", "matplotlib.pyplot": "plt"}
    loaded = {}
    for mod in preload:
        try:
            __import__(mod)
            loaded[mod] = sys.modules[mod]
        except Exception as e:
            print("sandpool: preload of %s failed: %s" % (mod, e), file=sys.stderr)
    _patch_pyplot()
    runner = None
    if _arg("--no-ipython") != "1":
        try:
            runner = IPythonRunner()
        except Exception as e:
            print("sandpool: IPython unavailable (%s), using plain exec" % e, file=sys.stderr)
    if runner is None:
        runner = PlainRunner()
    ns = runner.namespace()
    for mod, alias in aliases.items():
        if mod in loaded:
            ns[alias] = loaded[mod]
    # User code imports modules from the working directory, as in Jupyter.
    sys.path.insert(0, "")
    # One throwaway cell, so the first real one does not pay for what the
    # shell sets up lazily (tens of milliseconds under gVisor).
    try:
        runner.run("None")
    except BaseException:  # noqa: B902
        pass
    chan.send({
        "type": "ready",
        "python": sys.version.split()[0],
        "ipython": runner.ipython,
        "preload_ms": int((time.monotonic() - t0) * 1000),
    })

    while True:
        try:
            msg = chan.recv()
        except KeyboardInterrupt:
            continue
        if msg is None:
            return
        if msg.get("op") != "execute":
            continue
        err = None
        try:
            if signal.getsignal(signal.SIGINT) is not _on_sigint:
                signal.signal(signal.SIGINT, _on_sigint)  # user code replaced it
            _executing = True
            _cell.set()
            err = runner.run(msg.get("code", ""))
        except KeyboardInterrupt:
            err = _error("KeyboardInterrupt", "", ["KeyboardInterrupt"])
        except BaseException as e:  # noqa: B902
            err = _error(type(e).__name__, str(e), traceback.format_exception(type(e), e, e.__traceback__))
        finally:
            _executing = False
            _cell.clear()
        try:
            _patch_pyplot()
            flush_figures()
        except BaseException as e:  # noqa: B902
            print("sandpool: figures: %s" % e, file=sys.stderr)
        flush_output()
        if err is not None:
            chan.send(err)
        chan.send({"type": "done", "status": "error" if err is not None else "ok"})


if __name__ == "__main__":
    main()
