"""The shipped prompted models on fresh procedural images, under the standard click protocol.

The images come from the generators' validation split at indices the weights' own metadata
was not measured on (it used 0..15), so they are new to the models and to their selection.
"""

from __future__ import annotations

import numpy as np
import pytest

from segdemo.prompted_eval import noc_curves, procedural_samples
from segdemo.tasks.prompted import prompter_for

# A model that answers every click with a disc of the average object size, centred on the
# click, scores 0.32 after one click on these objects. Measured for the shipped weights:
# sam_tiny 0.36 after one click and 0.75 after twenty, rising with every click; click_net
# 0.28 after one click (under the disc), 0.24 after two (its first zoom-in loses what the
# whole-image view had), then rising to 0.72 after twenty. Both learned to follow
# corrections; neither follows an object's boundary from one click. The floors hold what
# they do; the xfail tests state what they should do and turn red by themselves once they do.
DISC_BASELINE = 0.32
ONE_CLICK_FLOOR = {"click_net": 0.27, "sam_tiny": DISC_BASELINE}
TWENTY_CLICK_GAIN = {"click_net": 0.35, "sam_tiny": 0.25}


@pytest.fixture(scope="module", params=["click_net", "sam_tiny"])
def curves(request):
    samples = list(procedural_samples(count=8, start=200))
    return request.param, noc_curves(prompter_for(request.param), samples)


def test_one_click_overlaps_the_object(curves):
    name, result = curves
    assert result.ious[:, 0].mean() >= ONE_CLICK_FLOOR[name], result.summary()


def test_corrections_raise_the_iou(curves):
    name, result = curves
    mean = result.ious.mean(0)
    assert mean[-1] >= min(0.95, mean[0] + TWENTY_CLICK_GAIN[name]), np.round(mean, 3)


@pytest.mark.xfail(strict=True, reason="one click: sam_tiny 0.36, click_net 0.28; a disc 0.32")
def test_one_click_beats_a_disc_of_the_average_size(curves):
    _, result = curves
    assert result.ious[:, 0].mean() >= DISC_BASELINE + 0.15, result.summary()


def test_more_clicks_never_make_the_mean_iou_worse(curves, request):
    name, result = curves
    if name == "click_net":
        reason = "click_net's second click (its first zoom-in) lowers the mean: 0.28 -> 0.24"
        request.node.add_marker(pytest.mark.xfail(strict=True, reason=reason))
    mean = result.ious.mean(0)
    assert np.all(np.diff(mean) >= 0), np.round(mean, 3)


# The refinement on the photo (the app's default) against each network alone, on the same
# fresh procedural objects: the photo's colours and edges must not cost what the network knew.
@pytest.fixture(scope="module")
def refined_curves(curves):
    name, _ = curves
    samples = list(procedural_samples(count=8, start=200))
    return noc_curves(prompter_for(name), samples, refine_on_photo=True)


def test_refinement_keeps_or_raises_the_mean_iou_on_procedural_images(curves, refined_curves):
    _, alone = curves
    assert refined_curves.ious.mean() >= alone.ious.mean(), (
        refined_curves.summary(),
        alone.summary(),
    )


def test_with_the_refinement_the_second_click_no_longer_lowers_the_mean(refined_curves):
    # The network alone loses at its first zoom-in (click_net: 0.28 -> 0.24); refined, the
    # colours are fitted to the mask already shown first: measured 0.41 -> 0.52 for click_net,
    # 0.57 -> 0.71 for sam_tiny.
    mean = refined_curves.ious.mean(0)
    assert mean[1] >= mean[0] + 0.05, np.round(mean, 3)
