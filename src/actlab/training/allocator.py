"""Keep freed CPU memory inside the process, so training steps reuse it instead of faulting it in.

PyTorch's CPU tensors come from malloc. glibc's malloc hands every block above its mmap threshold
(128 KiB, rising to at most 32 MiB as such blocks are freed) to the kernel as a fresh mapping, and
gives the top of its heap back whenever more than the trim threshold lies free there. A training
step frees almost everything it allocated, so the next step gets fresh pages again, and each one
costs a page fault plus zeroing on first touch. Measured with benchmarks/throughput.py's S model
(4 x 128, 2 threads) on a 2-core machine: about 4,000 minor faults per step (16 MB of new
pages), under 100 with the settings below; a fresh 64 MiB tensor costs about 6x a copy into
memory already held. PyTorch's CPU performance tuning guide recommends swapping in jemalloc or
tcmalloc for the same reason; this does it without a preload: `mallopt(M_MMAP_MAX, 0)` serves
every block from the heap, `mallopt(M_TRIM_THRESHOLD, 2**31 - 1)` never gives it back.

The price: the process keeps its peak memory until it exits, which a training process reaches
every step anyway. The actlab command line and its sweep workers call `keep_freed_memory()`
before any work; a program that imports actlab calls it itself if it wants it. ACTLAB_MALLOC=system
leaves the allocator alone. Other C libraries (musl, macOS, Windows): nothing to do, nothing done.
"""

from __future__ import annotations

import ctypes
import os
import sys

ENV = "ACTLAB_MALLOC"
_OFF = ("0", "system", "off", "no")
_M_TRIM_THRESHOLD = -1  # glibc's <malloc.h>
_M_MMAP_MAX = -4
_INT_MAX = 2**31 - 1

_applied: list[bool] = []  # the outcome of the first call: one call per process does it


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # only glibc has it; musl's mallopt is a no-op anyway
        return libc
    except (OSError, AttributeError):
        return None


def keep_freed_memory() -> bool:
    """Apply the settings above once per process; True when they are in force."""
    if _applied:
        return _applied[0]
    if os.environ.get(ENV, "").strip().lower() in _OFF:
        _applied.append(False)
        return False
    libc = _glibc()
    ok = False
    if libc is not None:
        libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
        ok = bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, _INT_MAX))
    _applied.append(ok)
    return ok


def describe() -> str:
    """One word for env.json: which allocator behaviour this process's runs had."""
    if not _applied:
        return "system"
    return "glibc-keep-freed" if _applied[0] else "system"
