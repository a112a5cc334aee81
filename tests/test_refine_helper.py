"""The refinement helper: a lone click's other views are cut in a second process, with the
same masks as cut here, and a helper that fails or dies costs nothing but its speed."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from segdemo.prompts import Box, Click
from segdemo.tasks import refine_helper
from segdemo.tasks.refine import refine
from segdemo.tasks.refine_helper import refine_views


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


CLICKS = (Click(70.0, 60.0, True), Click(20.0, 20.0, False))


@pytest.fixture
def fresh_helper():
    """No helper and no failure remembered before the test, none left after it."""
    refine_helper.stop()
    refine_helper._failed_at = -refine_helper.RESTART_AFTER
    yield
    refine_helper.stop()
    refine_helper._failed_at = -refine_helper.RESTART_AFTER


def expected(image, beliefs, box=None):
    return [refine(image, belief, CLICKS, box) for belief in beliefs]


def assert_same(masks, reference):
    assert len(masks) == len(reference)
    for mask, want in zip(masks, reference, strict=True):
        assert mask.dtype == bool and np.array_equal(mask, want)


def test_the_helper_cuts_the_other_views_exactly_as_here(fresh_helper):
    image, beliefs = views()
    box = Box(10.0, 5.0, 150.0, 115.0)
    masks = refine_views(image, beliefs, CLICKS, box)
    assert refine_helper._helper is not None  # the other views went to a helper process
    assert refine_helper._helper.process.poll() is None
    assert_same(masks, expected(image, beliefs, box))
    assert len({int(m.sum()) for m in masks}) > 1  # the views differ: each got its own answer


def test_a_lone_view_is_cut_here(fresh_helper):
    image, beliefs = views(count=1)
    assert_same(refine_views(image, beliefs, CLICKS), expected(image, beliefs))
    assert refine_helper._helper is None


def test_a_dead_helper_costs_only_speed(fresh_helper, caplog):
    image, beliefs = views(seed=1)
    refine_views(image, beliefs, CLICKS)
    helper = refine_helper._helper
    helper.process.kill()
    helper.process.wait()
    assert_same(refine_views(image, beliefs, CLICKS), expected(image, beliefs))
    assert "refinement helper failed" in caplog.text
    # Within a minute of the failure no new helper starts; the views are cut here.
    assert refine_helper._helper is None
    assert_same(refine_views(image, beliefs, CLICKS), expected(image, beliefs))
    assert refine_helper._helper is None


def test_a_late_helper_is_killed_and_its_views_cut_here(fresh_helper, monkeypatch):
    image, beliefs = views(seed=2)
    refine_views(image, beliefs, CLICKS)
    late = refine_helper._helper
    monkeypatch.setattr(refine_helper, "HELPER_WAIT", 0.0)  # every answer is now too late
    assert_same(refine_views(image, beliefs, CLICKS), expected(image, beliefs))
    assert late.process.wait(timeout=5) is not None and refine_helper._helper is None


def test_an_error_in_the_helper_is_the_same_error_here(fresh_helper):
    image, beliefs = views()
    beliefs[1] = None  # no belief at all fails in either process
    with pytest.raises(Exception) as here:
        refine(image, beliefs[1], CLICKS)
    with pytest.raises(here.type):
        refine_views(image, beliefs, CLICKS)
    # The helper's answer was read: the next call gets its own masks, not the old error.
    image, beliefs = views(seed=3)
    assert_same(refine_views(image, beliefs, CLICKS), expected(image, beliefs))


def test_concurrent_refinements_each_get_their_own_masks(fresh_helper):
    cases = [views(seed) for seed in range(4)]
    results: dict[int, list] = {}

    def run(k):
        image, beliefs = cases[k]
        results[k] = refine_views(image, beliefs, CLICKS)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for k, (image, beliefs) in enumerate(cases):
        assert_same(results[k], expected(image, beliefs))


def test_the_helper_stops_when_its_parent_is_gone(fresh_helper):
    image, beliefs = views()
    refine_views(image, beliefs, CLICKS)
    helper = refine_helper._helper
    helper.connection.close()  # what this process's end does to its socket
    began = time.monotonic()
    while helper.process.poll() is None and time.monotonic() - began < 5:
        time.sleep(0.05)
    assert helper.process.returncode == 0
