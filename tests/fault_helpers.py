"""Helpers for tests/test_faults.py: fault injection (full disk), a loopback HTTP server that
can corrupt, cut or stall a download, archive builders, and process / temp-file inspection.

Not a test module (no ``test_`` prefix); import it as ``fault_helpers`` (pytest puts tests/ on
sys.path because tests/ has no ``__init__.py``).
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import socket
import sys
import tarfile
import threading
import time
import zipfile
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- small things


def one_line(exc_or_text: object) -> str:
    """``str(exc)``, asserting it is a non-empty single line."""
    text = str(exc_or_text)
    assert text.strip(), "empty error message"
    assert "\n" not in text, f"not a one-line message: {text!r}"
    return text


def wait_for(pred: Callable[[], object], timeout: float, what: str = "condition",
             interval: float = 0.05):
    """Poll ``pred`` until it returns something truthy (returned) or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def child_env(**extra: str) -> dict[str, str]:
    """Environment for worker subprocesses: one thread each (2 shared cores; and bit-exact
    CPU results need the same thread count in every run), no mirror / proxy surprises."""
    env = {k: v for k, v in os.environ.items() if k not in ("ABLATION_MIRROR",)}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", NO_PROXY="127.0.0.1,localhost",
               no_proxy="127.0.0.1,localhost", PYTHONUNBUFFERED="1", TQDM_DISABLE="1")
    env.update(extra)
    return env


# Source for a child process that measures its own peak memory. ``ru_maxrss`` can't: a child
# starts with its parent's peak (Linux keeps the high-water mark across fork + exec), so a
# pytest process that once held 8 GB makes every child report 8 GB. VmHWM after a clear_refs
# reset is the child's own peak from that moment on.
PEAK_RSS = """
def reset_peak():
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
def peak_mb():
    with open("/proc/self/status") as fh:
        return int(next(x for x in fh if x.startswith("VmHWM")).split()[1]) / 1024
"""


def python() -> str:
    return sys.executable


def rss_mb(pid: int | None = None) -> float:
    """Resident set size of a process (default: this one) in MiB, from /proc."""
    with open(f"/proc/{pid or 'self'}/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def file_id(path: Path) -> tuple[int, int] | None:
    """(inode, mtime_ns) of ``path`` or None: changes on every atomic replace."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns


# --------------------------------------------------------------------------- processes


def kernels_started_by(pid: int) -> list[int]:
    """PIDs of live Jupyter kernels launched by process ``pid`` (their environment carries
    ``JPY_PARENT_PID``), even after they were re-parented because ``pid`` died."""
    import psutil

    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if proc.environ().get("JPY_PARENT_PID") == str(pid):
                found.append(proc.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
            continue
    return found


def live_children(pid: int | None = None) -> list[str]:
    """Non-zombie descendants of ``pid`` (default: this process), as 'pid cmdline' strings."""
    import psutil

    out = []
    try:
        kids = psutil.Process(pid or os.getpid()).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    for k in kids:
        try:
            if k.status() != psutil.STATUS_ZOMBIE:
                out.append(f"{k.pid} {' '.join(k.cmdline())[:120]}")
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return out


def kill_pids(pids) -> None:
    """SIGKILL the given PIDs (processes this test started, directly or via its children)."""
    import signal

    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


# --------------------------------------------------------------------------- leftovers


# What the package's writers leave behind only when they are killed mid-way.
TEMP_GLOBS = (".*.tmp",  # fs.atomic_write_bytes
              ".fetch.*",  # fetch._copy_verified
              ".fetch-*-*",  # download._staging (a folder)
              ".*.incoming-*", ".*.old-*",  # fs.swap_in
              )


def temp_leftovers(*roots: Path) -> list[str]:
    """Temp files / folders under ``roots`` that a finished operation must not leave."""
    found: set[str] = set()
    for root in roots:
        root = Path(root)
        if not root.exists():
            continue
        for pattern in TEMP_GLOBS:
            found.update(str(p) for p in root.rglob(pattern))
        found.update(str(p) for d in root.rglob(".sweep-tmp") for p in d.iterdir())
        found.update(str(p) for d in root.rglob("cache") if d.is_dir()
                     for p in d.iterdir()  # cache build dirs (not the builders' locks)
                     if p.name.startswith(".") and not p.name.endswith(".lock"))
        found.update(str(p) for d in root.rglob("downloads") if d.is_dir()
                     for p in d.iterdir() if p.name.startswith("tmp"))  # pooch partials
    return sorted(found)


def snapshot(folder: Path) -> dict[str, bytes]:
    """{name: bytes} of the regular files directly in ``folder`` (lock and temp files
    excluded): what must survive a failed write byte for byte."""
    folder = Path(folder)
    if not folder.is_dir():
        return {}
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())
            if p.is_file() and p.name != ".lock" and not p.name.endswith(".tmp")}


# --------------------------------------------------------------------------- full disk


class _FailingFile:
    """Wraps a binary file: the first write stores half the data, then raises ENOSPC (a disk
    that fills up mid-write)."""

    def __init__(self, fh) -> None:
        self._fh = fh

    def write(self, data) -> int:
        data = bytes(data)
        self._fh.write(data[: len(data) // 2])
        self._fh.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._fh.close()

    def __getattr__(self, name):
        return getattr(self._fh, name)


class DiskFull:
    """Make atomic writes of ``folder/name`` fail with ENOSPC from its ``nth`` write on.

    ``mode="replace"``: the temp file is complete but ``os.replace`` fails (quota / metadata
    full); ``mode="write"``: the disk fills half-way through writing the temp file. When the
    fault fires, the folder's files are recorded in :attr:`before` (what must survive).
    ``disarm()`` lets later writes through. Installed with ``monkeypatch`` (undone by pytest).
    """

    def __init__(self, monkeypatch, folder: Path, name: str, mode: str = "replace",
                 nth: int = 1) -> None:
        assert mode in ("replace", "write")
        self.folder, self.name, self.mode, self.nth = Path(folder).absolute(), name, mode, nth
        self.target = os.path.abspath(self.folder / name)
        self.seen = 0
        self.fired = 0
        self.armed = True
        self.before: dict[str, bytes] | None = None
        real_replace, real_fdopen = os.replace, os.fdopen

        def replace(src, dst, *args, **kwargs):
            if self.mode == "replace" and self._fires(os.fspath(dst)):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real_replace(src, dst, *args, **kwargs)

        def fdopen(fd, *args, **kwargs):
            fh = real_fdopen(fd, *args, **kwargs)
            if self.mode != "write" or not self.armed:
                return fh
            try:
                tmp = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                return fh
            base = os.path.basename(tmp)
            if (os.path.dirname(tmp) == str(self.folder) and base.startswith(f".{name}.")
                    and base.endswith(".tmp") and self._fires(self.target)):
                return _FailingFile(fh)
            return fh

        monkeypatch.setattr(os, "replace", replace)
        monkeypatch.setattr(os, "fdopen", fdopen)

    def _fires(self, dst: str) -> bool:
        if not self.armed or os.path.abspath(dst) != self.target:
            return False
        self.seen += 1
        if self.seen < self.nth:
            return False
        if self.before is None:
            self.before = snapshot(self.folder)
        self.fired += 1
        return True

    def disarm(self) -> None:
        self.armed = False


# --------------------------------------------------------------------------- loopback server


class LoopbackServer:
    """HTTP on 127.0.0.1; each route's ``mode``: ok | corrupt (one byte flipped) | truncate
    (announces the full length, sends half, closes) | stall (sends half, then hangs until
    :meth:`close`)."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[bytes, str]] = {}
        self.hits: dict[str, int] = {}
        self.release = threading.Event()
        routes, hits, release = self.routes, self.hits, self.release

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server API
                hits[self.path] = hits.get(self.path, 0) + 1
                if self.path not in routes:
                    self.send_error(404)
                    return
                body, mode = routes[self.path]
                if mode == "corrupt":
                    mid = len(body) // 2
                    body = body[:mid] + bytes([body[mid] ^ 0xFF]) + body[mid + 1:]
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    if mode in ("truncate", "stall"):
                        self.wfile.write(body[: len(body) // 2])
                        self.wfile.flush()
                        if mode == "stall":
                            release.wait(120)
                        self.close_connection = True
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    self.wfile.write(body)
                    self.wfile.flush()
                except OSError:  # the client went away (killed): fine
                    pass
                self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def serve(self, name: str, body: bytes, mode: str = "ok") -> str:
        self.routes[f"/{name}"] = (body, mode)
        return f"{self.base}/{name}"

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


# --------------------------------------------------------------------------- archives / images


def random_image(seed: int, size: tuple[int, int] = (40, 36), mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(seed)
    w, h = size
    shape = (h, w, 3) if mode == "RGB" else (h, w)
    return Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8))


def encoded(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, payload in members.items():
            zf.writestr(name, payload)
    return buf.getvalue()


def tar_bytes(members: dict[str, bytes], symlinks: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, target in (symlinks or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tf.addfile(info)
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tf.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


def t91_zip() -> bytes:
    """A small SRCNN_train.zip look-alike: ``Train/*.bmp``."""
    return zip_bytes({f"Train/t{i}.bmp": encoded(random_image(i, (20, 16)), "BMP")
                      for i in range(1, 4)})


def sha256(payload: bytes) -> str:
    return "sha256:" + hashlib.sha256(payload).hexdigest()


def tree(root: Path, exclude: Path | None = None) -> set[str]:
    """Every path under ``root`` (optionally skipping everything under ``exclude``)."""
    out = set()
    for p in Path(root).rglob("*"):
        if exclude is not None and (p == exclude or exclude in p.parents):
            continue
        out.add(str(p))
    return out
