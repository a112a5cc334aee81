"""How this process's memory allocator keeps and hands back freed memory (glibc only).

Two needs pull against each other:

- **Keep what a click frees for the next click.** A click allocates tens of megabytes for a
  moment: the network's activations, the cut's graph, full-size probability maps. By default
  glibc's malloc gives most of that back to the system as soon as it is freed, so the next
  click, half a second later, faults every page in again. On a 2-core virtual machine that
  cost a correction on a real photo about a quarter of its time (the network's forward pass 47
  against 33 ms, building the cut's graph 13 against 3 ms, clicks half a second apart).
  ``keep_freed_memory`` raises glibc's thresholds (mallopt(3)) so that up to
  ``TRIM_THRESHOLD`` of freed memory stays in the process, and makes every thread allocate
  from one arena, so that it is kept once: with an arena per thread (glibc's default) the
  server's peak under the benchmark's attack grew by 170 MiB (1505 and 1512 against 1341 and
  1343 MiB in two runs each); with one arena it stayed (1344 and 1351 MiB). The model calls
  take turns anyway (``prompted.MODEL_TURN``), so the threads hardly wait on each other's
  allocations.
- **Do not keep a big photo's peak.** Decoding a 50-megapixel upload or rendering its mask
  costs hundreds of megabytes (``segdemo.budget``). Blocks of ``MMAP_THRESHOLD`` and more get
  pages of their own, returned when freed, and after such a job ``give_back_memory`` returns
  the heap's free pages too: without that, a server that once grew to 7 GB stayed there.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

# mallopt(3)'s parameters, from glibc's <malloc.h>
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -2, -3, -8
MIB = 2**20
MMAP_THRESHOLD = 32 * MIB  # blocks at least this large get pages of their own (and give them back)
TRIM_THRESHOLD = 64 * MIB  # free memory at the heap's top kept for later, at most
TOP_PAD = 8 * MIB  # extra memory asked for each time the heap grows
ARENAS = 1  # every thread's allocations from one heap: what is freed is kept once


def _glibc():
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None  # macOS, musl: nothing to tune
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")


LIBC = _glibc()


def keep_freed_memory() -> bool:
    """Set this process's malloc to keep freed memory (see the module's docstring). Returns
    whether it could: only glibc on Linux has these settings; elsewhere nothing changes."""
    if LIBC is None:
        return False
    settings = (
        (M_MMAP_THRESHOLD, MMAP_THRESHOLD),
        (M_TRIM_THRESHOLD, TRIM_THRESHOLD),
        (M_TOP_PAD, TOP_PAD),
        (M_ARENA_MAX, ARENAS),
    )
    return all(LIBC.mallopt(option, value) == 1 for option, value in settings)


def give_back_memory() -> None:
    """Return the heap's free pages to the system now (a no-op where glibc is absent)."""
    if LIBC is not None:
        LIBC.malloc_trim(0)
