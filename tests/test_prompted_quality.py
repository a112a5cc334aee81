"""The shipped sam_tiny on fresh procedural images, under the standard click protocol.

The images come from the generators' validation split at indices the weights' own metadata
was not measured on (it used 0..15), so they are new to the model and to its selection.
"""

from __future__ import annotations

import numpy as np
import pytest

from segdemo.prompted_eval import noc_curves, procedural_samples
from segdemo.registry import load_model

# Measured for the shipped weights on these 16 objects: mean IoU 0.36 after one click, 0.72
# after twenty. A model that answers every click with a disc of the average object size,
# centred on the click, scores 0.32 after one click: the shipped sam_tiny has learned to grow
# its mask with corrections, and only begun to follow an object's boundary from one click.
# The floors below hold what it does; the xfail test states what it should do and turns red
# by itself once it does. The decoder alone dipped slightly after some clicks (-0.003 at the
# thirteenth, 0.67 after twenty); with the clicked pixels kept (``respect_clicks``) every click
# raises the mean.
DISC_BASELINE = 0.32


@pytest.fixture(scope="module")
def curves():
    samples = list(procedural_samples(count=8, start=200))
    return noc_curves(load_model("sam_tiny"), samples)


def test_one_click_overlaps_the_object(curves):
    # At least as well as the disc does; the xfail below asks for clearly better.
    assert curves.ious[:, 0].mean() >= DISC_BASELINE, curves.summary()


def test_corrections_raise_the_iou(curves):
    mean = curves.ious.mean(0)
    assert mean[-1] >= mean[0] + 0.25, np.round(mean, 3)
    assert mean[9] >= mean[0] + 0.2, np.round(mean, 3)


@pytest.mark.xfail(strict=True, reason="one click scores 0.36, barely above a disc (0.32)")
def test_one_click_beats_a_disc_of_the_average_size(curves):
    assert curves.ious[:, 0].mean() >= DISC_BASELINE + 0.15, curves.summary()


def test_more_clicks_never_make_the_mean_iou_worse(curves):
    mean = curves.ious.mean(0)
    assert np.all(np.diff(mean) >= 0), np.round(mean, 3)
