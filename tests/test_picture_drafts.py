"""A first click's draft: the network's own mask, handed from the click being answered to the
page's draft call that waits for it (``segdemo.ui.picture_drafts``). Over HTTP:
``tests/test_prompt_picture.py``."""

from __future__ import annotations

import asyncio
import threading
import time

from segdemo.ui.picture_drafts import Drafts


def waited(drafts: Drafts, token: str, click: int, seconds: float = 2.0) -> tuple:
    """What ``wait`` gives, and after how many seconds."""
    began = time.perf_counter()
    mask = asyncio.run(drafts.wait(token, click, seconds))
    return mask, time.perf_counter() - began


def later(seconds: float, action) -> threading.Thread:
    thread = threading.Timer(seconds, action)
    thread.start()
    return thread


def test_a_draft_published_before_the_call_is_taken_at_once_and_only_once():
    drafts = Drafts()
    drafts.publish("page", 1, "mask-1")
    assert waited(drafts, "page", 1)[0] == "mask-1"
    assert waited(drafts, "page", 1, seconds=0.3)[0] is None  # nothing to hand over twice


def test_a_waiting_call_wakes_when_the_draft_comes_from_another_thread():
    drafts = Drafts()
    later(0.2, lambda: drafts.publish("page", 7, "mask-7"))
    mask, seconds = waited(drafts, "page", 7)
    assert mask == "mask-7" and 0.15 < seconds < 1.0


def test_a_click_answered_without_a_draft_ends_the_wait():
    drafts = Drafts()
    later(0.2, lambda: drafts.finish("page", 3))
    mask, seconds = waited(drafts, "page", 3)
    assert mask is None and seconds < 1.0
    # A call arriving after its click was answered does not wait at all, and the draft of an
    # answered click is dropped even if it was never taken.
    drafts.publish("page", 4, "mask-4")
    drafts.finish("page", 4)
    mask, seconds = waited(drafts, "page", 4)
    assert mask is None and seconds < 0.1


def test_a_draft_never_comes_for_another_click_and_the_wait_is_bounded():
    drafts = Drafts()
    drafts.publish("page", 1, "mask-1")
    drafts.publish("other page", 2, "mask-2")
    mask, seconds = waited(drafts, "page", 2, seconds=0.3)
    assert mask is None and seconds >= 0.3
    # A newer click's draft replaces an older one's, and wakes a call still waiting for it.
    later(0.2, lambda: drafts.publish("page", 3, "mask-3"))
    mask, seconds = waited(drafts, "page", 2)
    assert mask is None and seconds < 1.0
    assert waited(drafts, "page", 3)[0] == "mask-3"


def test_a_call_for_an_older_click_ends_at_once_and_leaves_the_newer_one():
    drafts = Drafts()
    drafts.publish("page", 5, "mask-5")
    mask, seconds = waited(drafts, "page", 4)
    assert mask is None and seconds < 0.1
    assert waited(drafts, "page", 5)[0] == "mask-5"


def test_finishing_a_click_makes_no_slot():
    """Only a published draft or a waiting call makes a slot (both need a page with a
    photo): a click answered without either leaves nothing behind."""
    drafts = Drafts()
    drafts.finish("page", 1)
    assert len(drafts) == 0


def test_slots_left_unused_are_dropped():
    drafts = Drafts(stale_seconds=0.2)
    drafts.publish("old page", 1, "mask")
    time.sleep(0.3)
    drafts.publish("new page", 1, "mask")
    assert len(drafts) == 1
    assert waited(drafts, "old page", 1, seconds=0.1)[0] is None


def test_the_slots_kept_are_bounded():
    drafts = Drafts(max_slots=3)
    for k in range(10):
        drafts.publish(f"page {k}", k, "mask")
    assert len(drafts) == 3
    assert waited(drafts, "page 9", 9)[0] == "mask"
    assert waited(drafts, "page 0", 0, seconds=0.1)[0] is None


def test_a_page_holds_one_waiting_draft_call_at_most():
    """A hostile page asking for the drafts of many clicks at once: each newer call wakes the
    one before, so only the last waits, and none longer than its bound."""
    drafts = Drafts()

    async def timed(click: int) -> float:
        began = time.perf_counter()
        assert await drafts.wait("page", click, 0.5) is None
        return time.perf_counter() - began

    async def flood() -> list[float]:
        return await asyncio.gather(*(timed(k) for k in range(50)))

    seconds = asyncio.run(flood())
    assert max(seconds[:-1]) < 0.1 and 0.5 <= seconds[-1] < 1.0
    assert len(drafts) == 1
