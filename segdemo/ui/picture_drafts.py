"""A first click's draft: the network's own mask, shown while the photo refines it.

A first click with the refinement on is the slowest to answer: the cut runs on both of its
views. So the page sends, beside the click, a ``draft`` call that waits here. The click's
``operate`` call, in its worker thread, publishes the network's mask the moment the network
has answered (``publish``), before the refinement starts, and ``finish`` once the click is
answered. The waiting call (``wait``) waits on the server's event loop, so a page waiting for
its draft holds no thread.

Each token has one slot, for its latest drafted click. A slot's mask is dropped when it is
taken or when its click is answered. A small marker of an answered click stays, so a draft
call arriving after its click needs no wait. ``MAX_SLOTS`` bounds how many of these are kept.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

DRAFT_WAIT = 2.0  # seconds a draft call waits at most; its click is answered well before
MAX_SLOTS = 1000  # tokens with a slot (each a few dozen bytes once its click is answered)


@dataclass
class _Slot:
    click: int  # the page's number for the click
    mask: str | None = None  # the draft, a PNG data URL, until taken or the click is answered
    answered: bool = False
    wake: Callable[[], None] | None = None  # wakes the draft call waiting, from any thread


class Drafts:
    def __init__(self, max_slots: int = MAX_SLOTS):
        self._lock = threading.Lock()
        self._slots: OrderedDict[str, _Slot] = OrderedDict()
        self.max_slots = max_slots

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
            slot = self._slot(token, click)
            slot.answered, slot.mask = True, None
            wake = slot.wake
        if wake is not None:
            wake()

    async def wait(self, token: str, click: int, seconds: float = DRAFT_WAIT) -> str | None:
        """The draft of ``click``, once it is published; None once the click is answered
        without one, after ``seconds``, or if another call already waits for it."""
        loop, ready = asyncio.get_running_loop(), asyncio.Event()
        with self._lock:
            slot = self._slot(token, click)
            waits = slot.mask is None and not slot.answered and slot.wake is None
            if waits:
                slot.wake = lambda: loop.call_soon_threadsafe(ready.set)
        if waits:
            try:
                await asyncio.wait_for(ready.wait(), seconds)
            except TimeoutError:
                pass
        with self._lock:
            mask, slot.mask = slot.mask, None
            if waits:
                slot.wake = None
        return mask

    def _slot(self, token: str, click: int) -> _Slot:
        """``token``'s slot for ``click`` (under the lock); a newer click replaces an older
        one's, and wakes a call still waiting for that one."""
        slot = self._slots.get(token)
        if slot is None or slot.click != click:
            if slot is not None and slot.wake is not None:
                slot.wake()
            slot = self._slots[token] = _Slot(click)
            while len(self._slots) > self.max_slots:
                _, dropped = self._slots.popitem(last=False)
                if dropped.wake is not None:
                    dropped.wake()
        self._slots.move_to_end(token)
        return slot

    def __len__(self) -> int:
        return len(self._slots)


DRAFTS = Drafts()
