"""Host process settings that XLA:CPU needs to run a training step at full speed.

XLA:CPU allocates each execution's temporary buffers (about 800 MB for a BERT-mini step at batch
32 x 128) with glibc malloc from a worker thread. glibc serves blocks that large with a fresh
mmap and unmaps them on free, so every step faults all of those pages back in and the kernel
zeroes them: ~200,000 minor page faults and ~0.5 s of system time per BERT-mini step on a 2-core
host, ~15% of the step. One malloc arena, no mmap-backed blocks and no heap trimming keep freed
memory in the process, and later steps reuse it without faulting (0 faults per step measured;
see docs/PERFORMANCE.md).

`tune_malloc()` must run before JAX creates its CPU client (the first `jax.devices()` or jitted
call): the client's worker threads pick their malloc arena on their first allocation.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import importlib.util
import os
import platform

import jax

# mallopt(3) parameter numbers from glibc's <malloc.h>.
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8
# Environment variables with which a user has already chosen glibc's behaviour.
_USER_SETTINGS = ("MALLOC_ARENA_MAX", "MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_",
                  "MALLOC_MMAP_THRESHOLD_", "LD_PRELOAD")


def _cpu_only() -> bool:
    """True when JAX can only run on the CPU here (no accelerator plugin, or platforms=cpu)."""
    platforms = jax.config.jax_platforms or ""
    if platforms:
        return platforms.split(",")[0].strip() == "cpu"
    has_plugin = bool(importlib.metadata.entry_points(group="jax_plugins"))
    return not (has_plugin or importlib.util.find_spec("libtpu") is not None)


def tune_malloc() -> bool:
    """Keep freed host memory in the process for XLA:CPU's per-step buffers; True if applied.

    Applied only on Linux with glibc, when JAX will run on the CPU, and when the user has not set
    glibc's malloc environment variables (or preloaded another allocator) themselves. On
    accelerator hosts the steps' buffers live on the device and host threads keep their arenas.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    if any(name in os.environ for name in _USER_SETTINGS) or not _cpu_only():
        return False
    libc = ctypes.CDLL(None)
    return all(libc.mallopt(param, value) == 1 for param, value in (
        (_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, 2**31 - 1)))
