"""The refinement helper: a lone click's other views are cut in a second process, with the
same masks as cut here, and a helper that fails, stalls or dies costs only its speed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from segdemo.prompts import Box, Click
from segdemo.tasks import refine_helper
from segdemo.tasks.refine import refine
from segdemo.tasks.refine_helper import SecondCore

CLICKS = (Click(70.0, 60.0, True), Click(20.0, 20.0, False))


def views(seed: int = 0, count: int = 3):
    """A noisy photo of two ellipses and ``count`` rough proposals of different sizes."""
    rng = np.random.default_rng(seed)
    rows, cols = np.ogrid[:120, :160]
    big = ((cols - 70) / 45.0) ** 2 + ((rows - 60) / 30.0) ** 2 <= 1
    small = ((cols - 70) / 12.0) ** 2 + ((rows - 60) / 9.0) ** 2 <= 1
    image = np.select([small[..., None], big[..., None]], [[40, 40, 200], [200, 40, 40]], 0)
    image = image + [40, 160, 60] * ~big[..., None] + rng.normal(0, 12, image.shape)
    beliefs = []
    for k in range(count):
        blob = np.zeros(big.shape, np.float32)
        half = 8 + 18 * k
        blob[max(0, 60 - half) : 60 + half, max(0, 70 - half) : 70 + half] = 0.8
        beliefs.append(blob)
    return np.clip(image, 0, 255).astype(np.uint8), beliefs


def expected(image, beliefs, box=None):
    return [refine(image, belief, CLICKS, box) for belief in beliefs]


def assert_same(masks, reference):
    assert len(masks) == len(reference)
    for mask, want in zip(masks, reference, strict=True):
        assert mask.dtype == bool and np.array_equal(mask, want)


def wait_until(condition, seconds: float = 10.0) -> None:
    began = time.monotonic()
    while not condition():
        assert time.monotonic() - began < seconds, "timed out"
        time.sleep(0.02)


@pytest.fixture
def core():
    """A second core of its own, its helper started and ready; stopped afterwards."""
    core = SecondCore()
    image, beliefs = views()
    assert_same(core.refine_views(image, beliefs, CLICKS), expected(image, beliefs))
    assert core.views_cut == 0  # the first lone click starts the helper and cuts here
    wait_until(lambda: core.helper.is_ready())
    yield core
    core.stop()


def test_the_helper_cuts_the_other_views_exactly_as_here(core):
    image, beliefs = views(seed=1)
    box = Box(10.0, 5.0, 150.0, 115.0)
    masks = core.refine_views(image, beliefs, CLICKS, box)
    assert core.views_cut == 2  # views 2 and 3 were cut by the helper
    assert_same(masks, expected(image, beliefs, box))
    assert len({int(m.sum()) for m in masks}) > 1  # not one view's answer for all


def test_the_helper_imports_only_the_refinement(core):
    pid = core.helper.process.pid
    assert "torch" not in Path(f"/proc/{pid}/maps").read_text()
    status = Path(f"/proc/{pid}/status").read_text()
    (rss_kb,) = [int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS")]
    assert rss_kb < 200 * 1024


def test_a_lone_view_is_cut_here():
    core = SecondCore()
    image, beliefs = views(count=1)
    assert_same(core.refine_views(image, beliefs, CLICKS), expected(image, beliefs))
    assert core.helper is None


def test_a_dead_helper_costs_only_speed(core, caplog):
    image, beliefs = views(seed=2)
    core.helper.process.kill()
    core.helper.process.wait()
    assert_same(core.refine_views(image, beliefs, CLICKS), expected(image, beliefs))
    assert "refinement helper failed" in caplog.text and core.helper is None
    # Until RETRY_AFTER has passed no new helper starts; the views are cut here.
    assert_same(core.refine_views(image, beliefs, CLICKS), expected(image, beliefs))
    assert core.helper is None and core.views_cut == 0


def test_a_new_helper_starts_after_the_wait(core, monkeypatch):
    monkeypatch.setattr(refine_helper, "RETRY_AFTER", 0.0)
    image, beliefs = views(seed=3)
    first = core.helper.process.pid
    core.helper.process.kill()
    core.helper.process.wait()
    core.refine_views(image, beliefs, CLICKS)  # fails over to here; no wait before a new one
    assert_same(core.refine_views(image, beliefs, CLICKS), expected(image, beliefs))
    wait_until(lambda: core.helper.is_ready())
    assert core.helper.process.pid != first
    assert_same(core.refine_views(image, beliefs, CLICKS), expected(image, beliefs))
    assert core.views_cut == 2


def test_a_stalled_helper_is_killed_and_its_views_cut_here(core, monkeypatch):
    monkeypatch.setattr(refine_helper, "HELPER_WAIT", 0.2)
    image, beliefs = views(seed=4)
    stalled = core.helper.process
    stalled.send_signal(signal.SIGSTOP)
    began = time.monotonic()
    assert_same(core.refine_views(image, beliefs, CLICKS), expected(image, beliefs))
    assert time.monotonic() - began < 2.0
    assert stalled.poll() is not None and core.helper is None


def test_an_answer_to_another_request_is_never_taken(core, caplog):
    image, beliefs = views(seed=5)
    other_image, other_beliefs = views(seed=6)
    core.helper.ask([(other_image, other_beliefs[1], CLICKS, None, None)])  # never read
    assert_same(core.refine_views(image, beliefs, CLICKS), expected(image, beliefs))
    assert "answer to request" in caplog.text


def test_an_error_in_a_views_cut_is_the_callers_and_the_helper_stays(core):
    image, beliefs = views()
    beliefs[1] = None  # no belief at all fails in either process
    with pytest.raises(Exception) as here:
        refine(image, beliefs[1], CLICKS)
    helper = core.helper
    with pytest.raises(here.type):
        core.refine_views(image, beliefs, CLICKS)
    image, beliefs = views(seed=7)
    assert_same(core.refine_views(image, beliefs, CLICKS), expected(image, beliefs))
    assert core.helper is helper and core.views_cut == 2


def test_an_error_in_the_first_cut_leaves_no_answer_behind(core, caplog):
    image, beliefs = views()
    beliefs[0] = None
    with pytest.raises(Exception) as here:
        refine(image, beliefs[0], CLICKS)
    with pytest.raises(here.type):
        core.refine_views(image, beliefs, CLICKS)
    image, beliefs = views(seed=8)
    assert_same(core.refine_views(image, beliefs, CLICKS), expected(image, beliefs))
    assert "refinement helper failed" not in caplog.text  # no answer of the other request


def test_a_helper_that_cannot_start_costs_only_speed(monkeypatch, caplog):
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")
    core = SecondCore()
    image, beliefs = views()
    assert_same(core.refine_views(image, beliefs, CLICKS), expected(image, beliefs))
    assert "refinement helper failed" in caplog.text and core.helper is None


def test_concurrent_refinements_each_get_their_own_masks(core):
    cases = [views(seed) for seed in range(4)]
    results: dict[int, list] = {}

    def run(k):
        image, beliefs = cases[k]
        results[k] = core.refine_views(image, beliefs, CLICKS)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for k, (image, beliefs) in enumerate(cases):
        assert_same(results[k], expected(image, beliefs))
    assert core.views_cut >= 2  # at least one of them used the helper


def process_state(pid: int) -> str:
    """The process's state letter from /proc, or "gone"."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "gone"


def test_the_helper_ends_when_the_server_is_killed():
    server = textwrap.dedent(
        """
        import time
        import numpy as np
        from segdemo.tasks.refine_helper import SecondCore
        core = SecondCore()
        image = np.zeros((40, 40, 3), np.uint8)
        core.refine_views(image, [np.zeros((40, 40), np.float32)] * 2)
        while not core.helper.is_ready():
            time.sleep(0.02)
        print(core.helper.process.pid, flush=True)
        time.sleep(60)
        """
    )
    root = Path(refine_helper.__file__).resolve().parents[2]
    process = subprocess.Popen(
        [sys.executable, "-c", server], stdout=subprocess.PIPE, text=True, cwd=root
    )
    try:
        helper = int(process.stdout.readline())
        assert process_state(helper) not in ("gone", "Z")
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        wait_until(lambda: process_state(helper) in ("gone", "Z"), 5.0)
    finally:
        process.kill()
        process.wait()
