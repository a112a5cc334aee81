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
# click, scores 0.32 after one click on these objects. The shipped sam_tiny scores 0.36: it
# has learned to grow its mask with corrections (0.72 after twenty clicks), and only begun to
# follow an object's boundary from one click. click_net, which sees the clicks beside the
# pixels from its first layer, follows the boundary from the first click.
DISC_BASELINE = 0.32
ONE_CLICK_FLOOR = {"click_net": DISC_BASELINE + 0.15, "sam_tiny": DISC_BASELINE}
TWENTY_CLICK_GAIN = {"click_net": 0.2, "sam_tiny": 0.25}


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


@pytest.mark.xfail(strict=True, reason="sam_tiny: one click scores 0.36, barely above a disc")
def test_sam_tiny_one_click_beats_a_disc_of_the_average_size():
    samples = list(procedural_samples(count=8, start=200))
    result = noc_curves(prompter_for("sam_tiny"), samples)
    assert result.ious[:, 0].mean() >= DISC_BASELINE + 0.15, result.summary()


def test_more_clicks_never_make_the_mean_iou_worse(curves):
    _, result = curves
    mean = result.ious.mean(0)
    assert np.all(np.diff(mean) >= 0), np.round(mean, 3)
