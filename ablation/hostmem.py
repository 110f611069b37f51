"""Keep freed activation buffers in the process heap while training on a CPU.

glibc serves large allocations (above its mmap threshold) with ``mmap`` and hands them back to
the kernel with ``munmap`` as soon as they are freed. A training step frees and re-allocates
the same activation tensors every iteration, so every iteration page-faults them in again and
the kernel zeroes them: about 52,000 minor page faults per step (~200 MB of fresh pages) for the
task-4 baseline at batch 16, LR patch 48, roughly 15% of a CPU step on 2 cores. Raising the
mmap and trim thresholds for the length of the loop keeps those blocks in the heap: a typical
step then faults ~0 pages, and an odd step still grows the heap by an activation or two while
its free blocks settle (tests/test_hostmem.py counts them per step). This is what tcmalloc or
jemalloc give via ``LD_PRELOAD``, without asking the user to preload anything.

Linux with glibc only; elsewhere (macOS, musl, Windows) :func:`reuse_freed_memory` does nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
from collections.abc import Iterator

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
GLIBC_DEFAULT_THRESHOLD = 128 * 1024  # both thresholds' glibc defaults
_KEEP = (1 << 30, 32 * 1024 * 1024)  # try 1 GiB; glibc builds that cap the threshold take 32 MiB


def _libc():
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "mallopt") else None
    except OSError:
        return None


@contextlib.contextmanager
def reuse_freed_memory(enabled: bool = True) -> Iterator[bool]:
    """Within the block, freed large buffers stay in the heap for the next iteration.

    Yields whether the tuning is active. On exit the heap is trimmed and the trim threshold
    goes back to glibc's default, so freed memory is returned to the kernel again (a notebook
    kernel that trains and then does other work gets its memory back). The mmap threshold stays
    raised: glibc cannot re-enable its dynamic threshold once it has been set.
    """
    libc = _libc() if enabled else None
    active = False
    if libc is not None:
        active = any(libc.mallopt(M_MMAP_THRESHOLD, v) == 1 for v in _KEEP)
        active = active and libc.mallopt(M_TRIM_THRESHOLD, _KEEP[0]) == 1
    try:
        yield active
    finally:
        if active:
            libc.mallopt(M_TRIM_THRESHOLD, GLIBC_DEFAULT_THRESHOLD)
            libc.malloc_trim(0)
