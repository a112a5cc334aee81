"""The second CPU core for a lone click's refinement: a helper process that cuts its other views.

A lone click asks for several masks (``click_model``'s whole image and close-up, SAM's three),
and each is refined on the photo (``tasks.refine``). PyMaxflow holds the GIL while it cuts, so
two threads would cut one after the other. A helper process, which imports only the
refinement, cuts every view but the first while the server cuts the first: for ``click_net``
the whole image's view, usually the slowest, so a first click waits about as long as for that
one cut instead of both. (SAM's helper cuts two of its three masks.) The masks are the same
either way.

- The helper starts at the first lone click and is used once it says it is ready; until then,
  and while another refinement uses it, the views are cut here.
- It exits at the end of its socket: when the server closes its end, or ends in any way.
- Every request is numbered and its answer must carry the number, so no answer can reach
  another click. A helper that fails, or answers later than ``HELPER_WAIT``, is killed and its
  views are cut here; a new one starts at a later lone click, no sooner than ``RETRY_AFTER``
  after the failure, twice as long after each failure in a row.
- An error in a view's cut (the helper's answer) is not the helper's failure: the view is cut
  here again, which raises the same error for the caller to report.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

from segdemo.heap import keep_freed_memory
from segdemo.prompts import Box, Click
from segdemo.tasks.refine import refine

HELPER_WAIT = 1.0  # seconds for each way of a request: a view's cut takes a small part of it
RETRY_AFTER = 60.0  # seconds after a failure before a new helper may start; doubled each time
MOST_RETRY = 3600.0
PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder that holds ``segdemo``
READY = "ready"

log = logging.getLogger(__name__)


class _Helper:
    """The child process and our end of its socket. Sending and receiving each give up after
    ``HELPER_WAIT`` (the socket's own time-outs), so a stuck helper cannot hold a click."""

    def __init__(self):
        ours, theirs = socket.socketpair()
        wait = struct.pack("ll", int(HELPER_WAIT), int(HELPER_WAIT % 1 * 1e6))
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, wait)
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, wait)
        path = os.pathsep.join(filter(None, [str(PACKAGE_ROOT), os.environ.get("PYTHONPATH")]))
        try:
            with theirs:
                self.process = subprocess.Popen(
                    [sys.executable, "-m", __name__, str(theirs.fileno())],
                    pass_fds=(theirs.fileno(),),
                    env={**os.environ, "PYTHONPATH": path},
                    stdin=subprocess.DEVNULL,
                )
        except BaseException:
            ours.close()
            raise
        self.connection = Connection(ours.detach())
        self.ready = False
        self.asked = 0  # the number of the last request sent

    def is_ready(self) -> bool:
        """Whether the helper has said it is ready (without waiting)."""
        if not self.ready and self.connection.poll(0):
            self.ready = self.connection.recv() == READY
            if not self.ready:
                raise RuntimeError("the helper's first word was not 'ready'")
        return self.ready

    def ask(self, calls: list[tuple]) -> None:
        self.asked += 1
        self.connection.send((self.asked, calls))

    def answer(self) -> list[np.ndarray] | Exception:
        """The masks for the request sent last, or the error its cut raised in the helper."""
        if not self.connection.poll(HELPER_WAIT):
            raise TimeoutError(f"no answer within {HELPER_WAIT} s")
        number, answer = self.connection.recv()
        if number != self.asked:
            raise RuntimeError(f"the answer to request {number} came for request {self.asked}")
        return answer

    def close(self) -> None:
        self.connection.close()
        self.process.kill()
        self.process.wait()


def _cut_each(calls: list[tuple]) -> list[np.ndarray]:
    """``refine(*call)`` for each of ``calls``, one after the other, in this process."""
    return [refine(*call) for call in calls]


class SecondCore:
    """Refinements of several views, the first here and the others in a helper process.
    ``enabled``: False cuts every view here, one after the other (the benchmark compares)."""

    def __init__(self):
        self.enabled = True
        self.helper: _Helper | None = None
        self.failures = 0  # failures in a row
        self.retry_at = 0.0  # no new helper before this (time.monotonic)
        self.views_cut = 0  # views the helpers have cut, all told
        self._lock = threading.Lock()  # one refinement at a time uses the helper

    def refine_views(
        self,
        photo: np.ndarray,
        beliefs,
        clicks: tuple[Click, ...] = (),
        box: Box | None = None,
        previous: np.ndarray | None = None,
    ) -> list[np.ndarray]:
        """``tasks.refine.refine(photo, belief, clicks, box, previous)`` for each of
        ``beliefs`` (``HxW float32`` each)."""
        calls = [(photo, belief, clicks, box, previous) for belief in beliefs]
        if len(calls) < 2 or not self.enabled or not self._lock.acquire(blocking=False):
            return _cut_each(calls)
        try:
            helper = self._asked(calls[1:])
            try:
                first = refine(*calls[0])
            except BaseException:
                if helper is not None:  # its answer is not wanted: no later call may read it
                    self._stop()
                raise
            return [first, *self._answered(helper, calls[1:])]
        finally:
            self._lock.release()

    def stop(self) -> None:
        """Stop the helper, if one runs; a later lone click starts a new one."""
        with self._lock:
            self._stop()

    def forget_in_fork(self) -> None:
        """In a forked child: the helper is the parent's, so the child starts its own."""
        if self.helper is not None:
            self.helper.connection.close()
        self.helper, self._lock = None, threading.Lock()

    def _asked(self, calls: list[tuple]) -> _Helper | None:
        """The helper, ready and asked to cut ``calls``; None if there is no ready helper (one
        is started if there is none and a failure does not forbid it)."""
        try:
            if self.helper is None and time.monotonic() >= self.retry_at:
                self.helper = _Helper()
            if self.helper is None or not self.helper.is_ready():
                return None
            self.helper.ask(calls)
            return self.helper
        except Exception as error:  # the process would not start, or its socket broke
            self._failed(error)
            return None

    def _answered(self, helper: _Helper | None, calls: list[tuple]) -> list[np.ndarray]:
        """The helper's masks for ``calls``, or the same masks cut here."""
        if helper is not None:
            try:
                answer = helper.answer()
            except Exception as error:  # EOFError, OSError, TimeoutError, a wrong number
                self._failed(error)
            else:
                self.failures = 0
                if not isinstance(answer, Exception):
                    self.views_cut += len(answer)
                    return answer
        return _cut_each(calls)

    def _failed(self, error: BaseException) -> None:
        self.failures += 1
        wait = min(MOST_RETRY, RETRY_AFTER * 2 ** (self.failures - 1))
        log.warning("the refinement helper failed (%r); its views are cut here", error)
        self._stop()
        self.retry_at = time.monotonic() + wait

    def _stop(self) -> None:
        if self.helper is not None:
            self.helper.close()
        self.helper = None


SECOND_CORE = SecondCore()
os.register_at_fork(after_in_child=SECOND_CORE.forget_in_fork)


def refine_views(photo, beliefs, clicks=(), box=None, previous=None) -> list[np.ndarray]:
    """``SECOND_CORE.refine_views``: each of ``beliefs`` refined on ``photo``."""
    return SECOND_CORE.refine_views(photo, beliefs, clicks, box, previous)


def serve(descriptor: int) -> None:
    """The helper's loop: say it is ready, then answer each numbered list of calls until the
    server's end closes. Ctrl-C in the server's terminal is the server's to handle."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    keep_freed_memory()  # each cut reuses the memory the one before it freed (segdemo.heap)
    connection = Connection(descriptor)
    try:
        connection.send(READY)
        while True:
            number, calls = connection.recv()
            try:
                answer = _cut_each(calls)
            except Exception as error:  # the server cuts these views again, and reports it
                answer = error
            connection.send((number, answer))
    except (EOFError, OSError):  # the server is gone
        return


if __name__ == "__main__":
    serve(int(sys.argv[1]))
