"""The memory that big, short-lived work may hold at once: decoding an upload, rendering a mask
at the original size, writing it as a PNG.

A page's click works at the working size (at most 1024 px a side) and costs a few megabytes,
but a 50-megapixel photo costs hundreds of megabytes to decode or to export at its own size.
Every such job reserves its estimated bytes from ``RENDERS`` first, so that all of them
together stay within ``RENDER_BYTES``: in practice, one big job at a time beside small ones.
A job that cannot get its bytes within ``RENDER_WAIT`` seconds is refused with a message.
A big job runs (``MemoryBudget.run``) on one of ``RENDER_THREADS`` threads of lower CPU
priority, so that on two cores the model's turns, which every user's clicks wait for, still
get the processor first.

Freed memory is handed back to the system (glibc only): without that, the heap keeps every
peak and a server that once decoded a big photo stays that big.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")

RENDER_BYTES = 640 * 2**20  # all big transient work at once: one 50-megapixel job and more
RENDER_WAIT = 20.0  # seconds a job waits for its bytes before it is refused
TRIM_ABOVE = 32 * 2**20  # after a job this big, give freed memory back to the system
BIG_JOB = 32 * 2**20  # a job this big runs on the render threads, below the clicks' priority
RENDER_THREADS = 2
RENDER_NICE = 10  # Linux "nice" of the render threads: a tenth of a normal thread's share


class ServerBusyWithImages(ValueError):
    """The memory for big images is taken for longer than a user should wait."""


def _libc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:  # not glibc (macOS, musl): nothing to tune
        return None


LIBC = _libc()
if LIBC is not None:
    # Arrays of 1 MiB and more get pages of their own, returned to the system when freed.
    # glibc otherwise raises this threshold after each big free, and later big arrays come
    # from the heap, which rarely shrinks (a server that grew to 7 GB stayed there).
    M_MMAP_THRESHOLD = -3
    LIBC.mallopt(M_MMAP_THRESHOLD, 1 << 20)


def give_back_memory() -> None:
    """Return the heap's free pages to the system (a no-op where glibc is absent)."""
    if LIBC is not None:
        LIBC.malloc_trim(0)


class MemoryBudget:
    """A byte-weighted semaphore: ``reserve(n)`` holds ``n`` of ``total`` bytes."""

    def __init__(self, total: int, wait: float = RENDER_WAIT):
        self.total = total
        self.wait = wait
        self.held = 0
        self.peak = 0  # the most ever held at once, for tests and the benchmark
        self._free = threading.Condition()

    @contextmanager
    def reserve(self, nbytes: int, what: str = "this image") -> Iterator[None]:
        """Hold ``nbytes`` (at most the whole budget) while the block runs."""
        nbytes = max(0, min(int(nbytes), self.total))
        deadline = time.monotonic() + self.wait
        with self._free:
            while self.held + nbytes > self.total:
                left = deadline - time.monotonic()
                if left <= 0 or not self._free.wait(left):
                    if self.held + nbytes <= self.total:
                        break
                    raise ServerBusyWithImages(
                        f"The server is busy with other people's large images and cannot take "
                        f"{what} now: try again in a moment."
                    )
            self.held += nbytes
            self.peak = max(self.peak, self.held)
        try:
            yield
        finally:
            with self._free:
                self.held -= nbytes
                self._free.notify_all()
            if nbytes >= TRIM_ABOVE:
                give_back_memory()


    def run(self, nbytes: int, what: str, job: Callable[[], T]) -> T:
        """``job()`` with ``nbytes`` reserved: in this thread when small, else on a render
        thread (this thread waits for it)."""
        with self.reserve(nbytes, what):
            if nbytes < BIG_JOB:
                return job()
            return _render_threads().submit(job).result()


def _lower_priority() -> None:
    try:  # on Linux a thread's id names it to setpriority: only this thread is lowered
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), RENDER_NICE)
    except (AttributeError, OSError):  # elsewhere the render threads keep normal priority
        pass


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _render_threads() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(
                RENDER_THREADS, thread_name_prefix="segdemo-render", initializer=_lower_priority
            )
        return _pool


RENDERS = MemoryBudget(RENDER_BYTES)
