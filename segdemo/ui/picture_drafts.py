"""A first click's draft: the network's own mask, shown while the photo refines it.

A first click with the refinement on is the slowest to answer: each of its proposals gets a
graph cut. So the page sends, beside the click, a ``draft`` call that waits here. The click's
``operate`` call, in its worker thread, publishes the network's mask the moment the network
knows it (``publish``; for ``click_net`` after its first view), before the refinement starts,
and ``finish`` once the click is answered. The waiting call (``wait``) waits on the server's
event loop, so a page waiting for its draft holds no thread.

Each token has one slot, for its latest drafted click: a newer click's replaces it and wakes
a call still waiting for the older one, so a page holds at most one waiting call. A slot's
mask is dropped when it is taken or when its click is answered; a small marker of an answered
click stays, so a draft call arriving after its click needs no wait. Slots are made only for
pages with a photo (the caller checks), and a slot unused for ``STALE_SECONDS`` is dropped
(a draft is worth something for a fraction of a second), so one visitor cannot push another
page's slot out; ``MAX_SLOTS`` bounds them all the same.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

DRAFT_WAIT = 2.0  # seconds a draft call waits at most; its click is answered well before
STALE_SECONDS = 10.0  # a slot unused this long is dropped
MAX_SLOTS = 1000  # slots kept at most (each a few dozen bytes once its click is answered)


@dataclass
class _Slot:
    click: int  # the page's number for the click
    mask: str | None = None  # the draft, a PNG data URL, until taken or the click is answered
    answered: bool = False
    wake: Callable[[], None] | None = None  # wakes the draft call waiting, from any thread
    used: float = field(default_factory=time.monotonic)


class Drafts:
    def __init__(self, max_slots: int = MAX_SLOTS, stale_seconds: float = STALE_SECONDS):
        self._lock = threading.Lock()
        self._slots: OrderedDict[str, _Slot] = OrderedDict()  # least recently used first
        self.max_slots, self.stale_seconds = max_slots, stale_seconds

    def publish(self, token: str, click: int, mask: str) -> None:
        """The network's mask for ``click`` of ``token``'s page (a PNG data URL)."""
        with self._lock:
            slot = self._slot(token, click)
            slot.mask = mask
            wake = slot.wake
        if wake is not None:
            wake()

    def finish(self, token: str, click: int) -> None:
        """``click`` is answered: its draft is no longer worth showing."""
        with self._lock:
            slot = self._slots.get(token)
            if slot is None or slot.click != click:
                return
            slot.answered, slot.mask = True, None
            wake = slot.wake
        if wake is not None:
            wake()

    async def wait(self, token: str, click: int, seconds: float = DRAFT_WAIT) -> str | None:
        """The draft of ``click``, once it is published; None once the click is answered
        without one, after ``seconds``, for a click older than the page's latest, or if
        another call already waits for it."""
        loop, ready = asyncio.get_running_loop(), asyncio.Event()
        with self._lock:
            latest = self._slots.get(token)
            if latest is not None and latest.click > click:
                return None
            slot = self._slot(token, click)
            waits = slot.mask is None and not slot.answered and slot.wake is None
            if waits:
                slot.wake = lambda: loop.call_soon_threadsafe(ready.set)
        try:
            if waits:
                await asyncio.wait_for(ready.wait(), seconds)
        except asyncio.TimeoutError:
            pass
        finally:
            with self._lock:
                mask, slot.mask = slot.mask, None
                if waits:
                    slot.wake = None
        return mask

    def is_waiting(self, token: str) -> bool:
        """Whether a draft call of ``token``'s page is waiting."""
        with self._lock:
            slot = self._slots.get(token)
            return slot is not None and slot.wake is not None

    def _slot(self, token: str, click: int) -> _Slot:
        """``token``'s slot for ``click`` (under the lock), made if need be; a newer click's
        replaces an older one's, and wakes a call still waiting for that one."""
        now = time.monotonic()
        slot = self._slots.get(token)
        if slot is None or slot.click != click:
            if slot is not None:
                self._drop(token)
            slot = self._slots[token] = _Slot(click)
        slot.used = now
        self._slots.move_to_end(token)
        oldest = next(iter(self._slots.values()))
        while len(self._slots) > self.max_slots or now - oldest.used > self.stale_seconds:
            self._drop(next(iter(self._slots)))
            oldest = next(iter(self._slots.values()))
        return slot

    def _drop(self, token: str) -> None:
        dropped = self._slots.pop(token)
        if dropped.wake is not None:
            dropped.wake()

    def __len__(self) -> int:
        return len(self._slots)


DRAFTS = Drafts()
