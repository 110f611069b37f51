"""File-system safety in one place: atomic writes, atomic folder swaps and exclusive locks.

Every result, checkpoint, manifest, figure and page is written with :func:`atomic_write_bytes`
(temp file in the same folder, fsync, rename), so a crash or a full disk leaves the old file or
the new one, never a torn one. Every "one writer at a time" rule (a run, a sweep, a dataset
fetch) is an :func:`exclusive_lock`: a POSIX ``flock``, released by the OS when its holder dies,
so a lock is never stale.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from ablation.errors import DiskWriteError


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder and ``os.replace``
    (see :func:`atomic_write`)."""
    atomic_write(path, lambda fh: fh.write(data))


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> None:
    """Call ``write(fh)`` on a temp file in ``path``'s folder, then ``os.replace`` it to
    ``path``: for writers that stream (a large PNG is encoded straight to disk, never held
    in memory as bytes).

    A crash or a full disk leaves either the old file or the new one, never a torn file, and
    no temp file behind (the OSError is re-raised for the caller to report). The new file gets
    the old file's permissions (or the umask default), not ``mkstemp``'s private 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = path.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError):
            raise DiskWriteError(exc.errno, f"{path}: cannot write ({exc.strerror or exc}); "
                                 "free disk space or fix permissions and rerun (the previous "
                                 "file is kept)") from None
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    """Persist a rename (POSIX); best effort, platforms without directory fds skip it."""
    try:
        dfd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """UTF-8 text version of :func:`atomic_write_bytes` (manifests, JSON, CSV)."""
    atomic_write_bytes(path, text.encode("utf-8"))


# --------------------------------------------------------------------------- folders


def swap_in(ready: Path, dest: Path) -> None:
    """Replace ``dest`` by the finished folder ``ready`` with renames, so readers see the old
    folder or the new one, never a half-copied one. ``ready`` first moves next to ``dest``
    (copied if ``dest`` lives on another filesystem, e.g. a symlinked data folder), so the
    final step is always a same-folder rename."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tag = f"{os.getpid()}-{time.monotonic_ns()}"
    incoming = dest.parent / f".{dest.name}.incoming-{tag}"
    old = dest.parent / f".{dest.name}.old-{tag}"
    try:
        os.rename(ready, incoming)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        try:
            shutil.copytree(ready, incoming, symlinks=True)
        except BaseException:
            shutil.rmtree(incoming, ignore_errors=True)
            raise
    had_old = dest.exists() or dest.is_symlink()
    try:
        if had_old:
            os.rename(dest, old)
        try:
            os.rename(incoming, dest)
        except OSError:
            if had_old:
                os.rename(old, dest)
            raise
    except BaseException:
        shutil.rmtree(incoming, ignore_errors=True)
        raise
    if old.is_symlink() or old.is_file():
        old.unlink()
    elif old.is_dir():
        shutil.rmtree(old, ignore_errors=True)


def clean_swap_leftovers(dest: Path) -> None:
    """Remove ``.incoming-`` / ``.old-`` folders a crashed :func:`swap_in` left next to
    ``dest`` (call it only while holding the lock of whatever writes ``dest``)."""
    if not dest.parent.is_dir():
        return
    for pattern in (f".{dest.name}.incoming-*", f".{dest.name}.old-*"):
        for p in dest.parent.glob(pattern):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)


# --------------------------------------------------------------------------- locks


@contextlib.contextmanager
def exclusive_lock(path: Path, busy: Callable[[str], Exception], wait: bool = False,
                   timeout: float | None = None, waiting: str | None = None,
                   poll: float = 1.0) -> Iterator[None]:
    """Hold an exclusive ``flock`` on the file ``path`` (created if missing) for a block.

    When another process holds it: ``wait=False`` raises ``busy(holder)``; ``wait=True``
    blocks until it is free, or, with ``timeout`` (seconds), polls every ``poll`` seconds and
    raises ``busy(holder)`` after that long. ``holder`` is ``" (pid N)"`` when the holder
    wrote its pid into the file (every holder does, once it has the lock), else ``""``.
    ``waiting`` is printed to stderr once (with the holder) before blocking. The OS releases
    the lock when its holder dies. Without ``fcntl`` (Windows) there is no lock.
    """
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; run one writer at a time
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        start = time.monotonic()
        announced = False
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                fh.seek(0)
                holder = fh.read().strip()
                who = f" (pid {holder})" if holder else ""
                if not wait or (timeout is not None and time.monotonic() - start > timeout):
                    raise busy(who) from None
                if waiting and not announced:
                    print(waiting.format(who=who), file=sys.stderr)
                    announced = True
                if timeout is None:
                    fcntl.flock(fh, fcntl.LOCK_EX)
                    break
                time.sleep(poll)
        try:
            fh.seek(0)
            fh.truncate()
            fh.write(str(os.getpid()))
            fh.flush()
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
