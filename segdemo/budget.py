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

After a big job its freed memory is handed back to the system (``heap.give_back_memory``):
without that, a server that once decoded a big photo stays that big.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

from segdemo.heap import give_back_memory

T = TypeVar("T")

RENDER_BYTES = 640 * 2**20  # all big transient work at once: one 50-megapixel job and more
RENDER_WAIT = 20.0  # seconds a job waits for its bytes before it is refused
TRIM_ABOVE = 32 * 2**20  # after a job this big, give freed memory back to the system
BIG_JOB = 32 * 2**20  # a job this big runs on the render threads, below the clicks' priority
RENDER_THREADS = 2
RENDER_NICE = 10  # Linux "nice" of the render threads: a tenth of a normal thread's share


class ServerBusyWithImages(ValueError):
    """The memory for big images is taken for longer than a user should wait."""


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
