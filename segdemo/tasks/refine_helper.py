"""The second CPU core for a lone click's refinement: a helper process that cuts its other views.

A lone click asks for several masks (``click_model``'s whole image and close-up, SAM's three),
and each is refined on the photo (``tasks.refine``). PyMaxflow holds the GIL while it cuts, so
two threads would cut one after the other. A helper process, which imports only the
refinement, cuts every view but the first while this process cuts the first: on two cores a
first click's refinement takes about as long as its first view (the whole image's, usually
the slowest) instead of all of them.

The helper starts on first use and stops when this process ends (at the end of its socket).
One refinement uses it at a time; another one meanwhile cuts all its views here. A helper that
fails, or answers later than ``HELPER_WAIT``, is killed and its views are cut here, so the
masks are the same either way; a new one starts at the next use, but not within
``RESTART_AFTER`` of a failure.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

from segdemo.tasks.refine import refine

HELPER_WAIT = 5.0  # seconds: a view takes well under one, so a later answer means trouble
RESTART_AFTER = 60.0  # seconds after a failure before a new helper is started
PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # where ``python -m segdemo...`` works
USE_HELPER = True  # False: every view is cut here, one after the other (the benchmark compares)

log = logging.getLogger(__name__)


class _Helper:
    """A child process that answers lists of ``refine`` calls over a socket."""

    def __init__(self):
        ours, theirs = socket.socketpair()
        with theirs:
            self.process = subprocess.Popen(
                [sys.executable, "-m", __name__, str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                cwd=PACKAGE_ROOT,
                stdin=subprocess.DEVNULL,
            )
        self.connection = Connection(ours.detach())

    def ask(self, calls: list[tuple]) -> None:
        self.connection.send(calls)

    def answer(self) -> list[np.ndarray]:
        """The masks for the calls asked; raises if the helper failed or is late."""
        if not self.connection.poll(HELPER_WAIT):
            raise TimeoutError(f"no answer within {HELPER_WAIT} s")
        answer = self.connection.recv()
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def close(self) -> None:
        self.connection.close()
        self.process.kill()
        self.process.wait()


_helper: _Helper | None = None
_failed_at = -RESTART_AFTER
_in_use = threading.Lock()


def refine_views(photo, beliefs, clicks=(), box=None, previous=None) -> list[np.ndarray]:
    """``tasks.refine.refine(photo, belief, clicks, box, previous)`` for each of ``beliefs``
    (``HxW float32`` each): the first here while the helper cuts the others."""
    calls = [(photo, belief, clicks, box, previous) for belief in beliefs]
    if len(calls) < 2 or not USE_HELPER or not _in_use.acquire(blocking=False):
        return [refine(*call) for call in calls]
    try:
        helper = _asked(calls[1:])
        try:
            first = refine(*calls[0])
        finally:  # the helper's answer is read even so, or the next call would get it
            others = _answer(helper, calls[1:])
        return [first, *others]
    finally:
        _in_use.release()


def _asked(calls: list[tuple]) -> _Helper | None:
    """The helper, started if need be, with ``calls`` sent to it; None if there is none."""
    global _helper
    if _helper is None and time.monotonic() - _failed_at < RESTART_AFTER:
        return None
    try:
        _helper = _helper or _Helper()
        _helper.ask(calls)
    except OSError as error:
        _failed(error)
    return _helper


def _answer(helper: _Helper | None, calls: list[tuple]) -> list[np.ndarray]:
    """The helper's masks for ``calls``, or the same masks cut here if there is no helper or
    it failed."""
    if helper is not None:
        try:
            return helper.answer()
        except Exception as error:  # EOFError, OSError, TimeoutError, the helper's own
            _failed(error)
    return [refine(*call) for call in calls]


def _failed(error: BaseException) -> None:
    global _failed_at
    log.warning("the refinement helper failed (%r); its views are cut here", error)
    stop()
    _failed_at = time.monotonic()


def stop() -> None:
    """Stop the helper if one runs; the next use starts a new one."""
    global _helper
    if _helper is not None:
        _helper.close()
    _helper = None


def serve(descriptor: int) -> None:
    """The helper's loop: answer each list of calls until the parent's end closes."""
    connection = Connection(descriptor)
    while True:
        try:
            calls = connection.recv()
        except EOFError:
            return
        try:
            answer = [refine(*call) for call in calls]
        except Exception as error:  # sent back: the parent cuts these views itself
            answer = error
        connection.send(answer)


if __name__ == "__main__":
    serve(int(sys.argv[1]))
