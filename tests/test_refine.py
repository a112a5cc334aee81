"""The refinement on the photo: clicks are hard labels, a box a hard limit, and the photo's
colours and edges move a rough proposal onto the object."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

import segdemo.tasks.refine as refinement
from segdemo.clicks import iou
from segdemo.prompts import CLICK_RADIUS, Box, Click, Prompts, settle_clicks
from segdemo.tasks.classical import ClickDiscsPrompter
from segdemo.tasks.prompted import propose
from segdemo.tasks.refine import (
    RefineSettings,
    _Cut,
    _links,
    cut_mask,
    edge_contrast,
    refine,
)


def two_tone(h: int = 120, w: int = 160, seed: int = 0):
    """A noisy photo with a red ellipse on a green ground, and the ellipse's mask."""
    rng = np.random.default_rng(seed)
    rows, cols = np.ogrid[:h, :w]
    truth = ((cols - 70) / 40.0) ** 2 + ((rows - 60) / 28.0) ** 2 <= 1
    image = np.where(truth[..., None], [200, 40, 40], [40, 160, 60]).astype(np.float64)
    image += rng.normal(0, 12, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), truth


def test_a_rough_proposal_snaps_to_the_object():
    image, truth = two_tone()
    rough = np.zeros(truth.shape, np.float32)
    rough[35:85, 40:110] = 0.8  # a box-shaped blob over the ellipse, corners spilling over
    refined = refine(image, rough, (Click(70, 60, True),))
    assert iou(rough > 0.5, truth) < 0.85 and iou(refined, truth) > 0.95


@pytest.mark.parametrize("seed", range(6))
def test_clicked_discs_keep_their_label_and_nothing_leaves_the_box(seed):
    rng = np.random.default_rng(seed)
    image, truth = two_tone(seed=seed)
    # Proposals that contradict the clicks: the refinement must still obey every one.
    probability = rng.uniform(0, 1, truth.shape).astype(np.float32)
    clicks = tuple(  # inside the box: a positive click outside it would contradict the box
        Click(float(rng.uniform(25, 125)), float(rng.uniform(20, 95)), bool(rng.integers(2)))
        for _ in range(5)
    )
    box = Box(20.0, 15.0, 130.0, 100.0)
    prompts = Prompts(clicks, box)
    prediction = propose(
        ClickDiscsPrompter(), ClickDiscsPrompter().prepare(image), prompts, photo=image
    )
    mask = prediction.masks[0]
    outside = np.ones(truth.shape, bool)
    outside[15:101, 20:131] = False
    assert not (mask & outside).any()
    assert (settle_clicks(mask, clicks) == mask).all()  # every disc already has its label
    # The cut itself (before the clicks are settled) already keeps each click's centre.
    cut = refine(image, probability, clicks, box)
    assert not (cut & outside).any()
    radius = CLICK_RADIUS * 160
    for click in clicks:
        others = [np.hypot(c.x - click.x, c.y - click.y) for c in clicks if c != click]
        if min(others) > 2 * radius:
            assert cut[int(click.y), int(click.x)] == click.positive


def test_a_negative_click_removes_what_spilled_over():
    image, truth = two_tone()
    spill = truth * np.float32(0.9)
    spill[20:100, 100:150] = 0.8  # a network that spilled onto the ground beside the object
    clicks = (Click(70, 60, True), Click(130, 60, False))
    assert iou(refine(image, spill, clicks), truth) > 0.95


def test_the_previous_mask_holds_when_the_network_loses_the_object():
    image, truth = two_tone()
    lost = np.zeros(truth.shape, np.float32)  # a network that answered a click with nothing
    clicks = (Click(70, 60, True), Click(150, 100, False))
    refined = refine(image, lost, clicks, previous=truth)
    assert iou(refined, truth) > 0.9


def _window_problem(seed: int = 0):
    """A window's cut inputs with an ambiguous proposal: a rough blob over the ellipse."""
    image, truth = two_tone(seed=seed)
    prior = np.full(truth.shape, 0.3, np.float32)
    prior[30:90, 35:115] = 0.7
    labels = np.zeros(truth.shape, np.int8)
    labels[58:63, 68:73] = 1
    labels[5:10, 5:10] = -1
    return image, prior, labels, truth


@pytest.mark.parametrize("star", [False, True])
def test_a_cut_reusing_the_last_flow_equals_a_fresh_one(star):
    image, prior, labels, _ = _window_problem()
    rng = np.random.default_rng(1)
    links = _links(image.astype(np.float32), 20.0, [(70.0, 60.0)] if star else ())
    reused = _Cut(labels, links)
    for _ in range(3):  # unaries as different as successive colour fits, and more
        unary = rng.normal(0, 2, labels.shape) + np.where(prior > 0.5, 1.0, -1.0)
        assert np.array_equal(reused.solve(unary), _Cut(labels, links).solve(unary))


def test_a_cut_that_hardly_moves_is_not_refitted(monkeypatch):
    """A correction starts from the mask shown, which a cut mostly keeps: the colours are
    not fitted again (one solve, not two), and the mask is what a second fit gives. A first
    click starts from the network's rough belief, which the cut moves: that one is refitted."""
    image, prior, labels, truth = _window_problem()
    solves = []
    solve = _Cut.solve
    monkeypatch.setattr(_Cut, "solve", lambda cut, unary: solves.append(1) or solve(cut, unary))

    def solved(start, settings):
        solves.clear()
        return cut_mask(image, prior, labels, start, settings, [(70.0, 60.0)]), len(solves)

    shown = truth.astype(np.float32)
    early, once = solved(shown, RefineSettings())
    full, twice = solved(shown, RefineSettings(settled=0.0))
    assert (once, twice) == (1, 2) and iou(early, full) > 0.99 and iou(early, truth) > 0.95
    assert solved(prior, RefineSettings())[1] == 2


def test_a_first_prompt_is_cut_on_a_smaller_window_with_its_own_weights(monkeypatch):
    """With no mask shown before it, the cut runs at ``first_side`` on its long side, with the
    network and the boundary weighted ``first_network`` and ``first_smooth``; a correction at
    ``side``, ``network`` and ``smooth``. Either way the mask comes back at the photo's size."""
    image, truth = two_tone(240, 320)
    rough = np.zeros(truth.shape, np.float32)
    rough[20:220, 20:300] = 0.8
    cuts = []
    cut = refinement.cut_mask

    def recorded(image, prior, labels, start, settings, centres):
        cuts.append((max(image.shape[:2]), settings.network, settings.smooth))
        return cut(image, prior, labels, start, settings, centres)

    monkeypatch.setattr(refinement, "cut_mask", recorded)
    click = (Click(140, 120, True),)
    first = refine(image, rough, click)
    later = refine(image, rough, click, previous=first)
    s = RefineSettings()
    assert s.first_side < s.side and s.first_network < s.network and s.first_smooth < s.smooth
    assert cuts == [(s.first_side, s.first_network, s.first_smooth), (s.side, s.network, s.smooth)]
    assert first.shape == later.shape == truth.shape


def test_each_pixels_star_step_heads_for_its_nearest_click():
    """The star-convexity links follow, from every pixel, the step that brings it closer to
    its nearest positive click (the first of equally near ones), and none at a click."""
    centres = np.array([[10.0, 12.0], [30.5, 8.0], [10.0, 12.0], [44.0, 25.0]])
    step_y, step_x = refinement._steps_to_centres((30, 50), centres)
    ys, xs = np.mgrid[:30, :50]
    distances = (xs[..., None] - centres[:, 0]) ** 2 + (ys[..., None] - centres[:, 1]) ** 2
    nearest = centres[distances.argmin(-1)]
    before = np.hypot(nearest[..., 0] - xs, nearest[..., 1] - ys)
    after = np.hypot(nearest[..., 0] - xs - step_x, nearest[..., 1] - ys - step_y)
    moved = (step_x != 0) | (step_y != 0)
    closer = (after < before) | (before <= 1)  # a click between pixels: a step may pass it
    assert closer[moved].all() and (before[~moved] < 1).all()
    assert step_x[12, 10] == step_y[12, 10] == 0


def test_star_convexity_keeps_the_object_one_piece_around_the_click():
    image, truth = two_tone()
    # A second red square away from the clicked ellipse, which the network half believes in
    # and the object's colour would take in.
    image[10:30, 130:150] = [200, 40, 40]
    prior = np.where(truth, 0.8, 0.45).astype(np.float32)
    prior[10:30, 130:150] = 0.6
    click = (Click(70, 60, True),)
    loose = refine(image, prior, click, settings=RefineSettings(star=False))
    star = refine(image, prior, click, settings=RefineSettings(star=True))
    pieces = lambda mask: ndimage.label(mask)[1]  # noqa: E731
    assert pieces(loose) > 1 and loose[10:30, 130:150].all()
    assert pieces(star) == 1 and iou(star, truth) > 0.95


def test_edge_contrast_prefers_the_outline_the_photo_shows():
    image, truth = two_tone()
    shrunk = ndimage.binary_erosion(truth, iterations=8)
    shifted = np.roll(truth, 15, axis=1)
    outline, *others = edge_contrast(image, np.stack([truth, shrunk, shifted]))
    assert outline > 2 * max(others)
