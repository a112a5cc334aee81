"""Which threads of the server run torch, and why it matters on two cores.

torch's CPU kernels share their work out over OpenMP threads, and GNU OpenMP (the runtime
torch ships) keeps a team of worker threads for each thread that has ever called into it,
for as long as that thread lives. While the process holds more OpenMP threads than it has
cores, every team stops spinning between its parallel regions and sleeps at once instead
(libgomp's "throttled" spin count), and each of the hundreds of short parallel regions of a
forward pass then waits for its threads to wake. With a second team alive, `click_net`'s
forward pass, half a second apart, took 39–42 ms against 22–25 ms with one.

Gradio serves each request on one of a pool of threads, which live on between requests, so
any of them that had called torch once (loading a model, a page's draft call moving the
clicks to another thread, another tab) kept a second team alive. So:

- the prompted tab's model work, the one that must answer within a click's time (loading its
  models, preparing an image, every click), runs on one thread of its own (``on_model_thread``);
- any other request runs on a thread that ends with it (``in_passing_thread``), so its
  team, if it made one, ends too.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

MODEL_THREAD_NAME = "segdemo-model"
_model_thread = ThreadPoolExecutor(1, thread_name_prefix=MODEL_THREAD_NAME)


def on_model_thread(work: Callable[[], T]) -> T:
    """``work()`` run on the model's thread; its result, or its error raised here. Work
    already on that thread runs at once (waiting for itself would never end). The caller
    decides who goes first (``tasks.prompted.model_turn``); this thread only runs it."""
    if threading.current_thread().name.startswith(MODEL_THREAD_NAME):
        return work()
    return _model_thread.submit(contextvars.copy_context().run, work).result()


def in_passing_thread(work: Callable[[], T]) -> T:
    """``work()`` run on a new thread that ends with it, with this thread's context (Gradio's
    request and progress live there); its result, or its error raised here."""
    with ThreadPoolExecutor(1, thread_name_prefix="segdemo-request") as passing:
        return passing.submit(contextvars.copy_context().run, work).result()
