"""The app's default prompted pipeline on real photos it never trained on (COCO MVal).

The default pipeline runs on all 160 objects (a few minutes): its figures there are asserted
against the aims it reaches, and its mean IoU must never fall from one click to the next.
So does the classical cut, since the default's lead over it (about 0.6 clicks) is smaller
than what 20 objects can tell apart. The comparison with the network alone runs on a fixed
subset: 20 of the objects, none of those the refinement's weights were chosen on
(``prompted_eval.TUNING_EVERY``), with floors measured on it less a margin.
``python -m segdemo.evaluate click_net --data ../shared/data/coco_mval`` gives the whole table.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from segdemo.prompted_eval import (
    TUNING_EVERY,
    NocResult,
    first_click_masks,
    folder_samples,
    lead,
    mean_and_error,
    noc_curves,
)
from segdemo.tasks.classical import ClickDiscsPrompter
from segdemo.tasks.prompted import prompter_for

MVAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "coco_mval"
SUBSET = slice(1, None, 8)  # objects 1, 9, 17, ... of the sorted folder: never a tuning object

# Measured on this subset: mIoU@1 0.505, NoC@85 8.05, NoC@90 9.95 (the network alone: 0.303,
# 14.7, 17.9; the classical cut from the clicks alone: 0.463, 7.6, 9.8), the mean IoU
# falling at most 0.004 from one click to the next. 20 objects move more than 160 do: one
# object that the network loses at a correction (a handbag, 0.88 to 0.57 at its third click)
# moves this mean by 0.016, so the drop's tolerance here is wider than the 0.005 asked of the
# whole set (which never falls).
MIOU_1_FLOOR = 0.40
NOC85_CEILING = 8.5
NOC90_CEILING = 10.5
DROP_TOLERANCE = 0.015

# On all 160 objects: mIoU@1 0.508, NoC@85 6.62, NoC@90 8.89, the mean IoU falling at most
# 0.0002.
# The aims (README) are asserted as they are.
ALL_OBJECTS = 160
ALL_MIOU_1_AIM = 0.5
ALL_NOC85_AIM = 7.5
ALL_NOC90_AIM = 10.0
ALL_DROP_TOLERANCE = 0.005

pytestmark = pytest.mark.skipif(not MVAL.is_dir(), reason=f"no COCO MVal at {MVAL}")


def subset():
    every = itertools.islice(folder_samples(MVAL), SUBSET.start, SUBSET.stop, SUBSET.step)
    samples = list(every)
    assert all(k % TUNING_EVERY for k in range(160)[SUBSET])
    return samples


@pytest.fixture(scope="module")
def every_object():
    """The default pipeline on all the objects."""
    return noc_curves(prompter_for("click_net"), folder_samples(MVAL), refine_on_photo=True)


@pytest.fixture(scope="module")
def classical_everywhere():
    """The same graph cut from the clicks alone, on all the objects."""
    return noc_curves(ClickDiscsPrompter(), folder_samples(MVAL), refine_on_photo=True)


@pytest.fixture(scope="module")
def pipelines(every_object):
    samples = subset()
    default = NocResult(
        every_object.names[SUBSET],
        every_object.ious[SUBSET],
        every_object.embed_ms,
        every_object.click_ms,
    )
    assert default.names == [name for name, _, _ in samples]
    return {"default": default, "network alone": noc_curves(prompter_for("click_net"), samples)}


@pytest.mark.slow
def test_on_every_object_the_default_reaches_the_aims_and_clicks_never_lower_its_iou(
    every_object,
):
    figures = every_object.summary()
    assert figures["objects"] == ALL_OBJECTS, figures
    assert figures["noc85"] <= ALL_NOC85_AIM and figures["noc90"] <= ALL_NOC90_AIM, figures
    assert figures["miou_1click"] >= ALL_MIOU_1_AIM, figures
    mean = every_object.ious.mean(0)
    assert np.diff(mean).min() >= -ALL_DROP_TOLERANCE, np.round(mean, 3)


def test_the_subset_is_twenty_real_photos(pipelines):
    assert len(pipelines["default"].names) == 20


def test_the_default_pipeline_reaches_its_measured_floors(pipelines):
    result = pipelines["default"]
    figures = result.summary()
    assert figures["miou_1click"] >= MIOU_1_FLOOR, figures
    assert figures["noc85"] <= NOC85_CEILING and figures["noc90"] <= NOC90_CEILING, figures


def test_the_photo_makes_the_network_follow_the_object(pipelines):
    default, alone = pipelines["default"], pipelines["network alone"]
    assert default.noc(0.85) <= alone.noc(0.85) - 5, (default.summary(), alone.summary())
    assert default.ious[:, 0].mean() >= alone.ious[:, 0].mean() + 0.05


def test_clicks_never_lower_the_default_pipelines_mean_iou(pipelines):
    mean = pipelines["default"].ious.mean(0)
    assert np.diff(mean).min() >= -DROP_TOLERANCE, np.round(mean, 3)


@pytest.mark.slow
def test_the_default_is_not_behind_the_classical_cut(every_object, classical_everywhere):
    """The learned pipeline is the default because it is the best measured, if narrowly: on
    all 160 objects 0.62 ± 0.20 clicks ahead of the graph cut from the clicks alone at
    NoC@90, short of the 1.5 the network would need to earn its place (README, "What this
    shows"). On 20 of them the lead is within the noise (7.6 and 9.8 clicks for the classical
    cut on the subset above, against the default's 8.05 and 9.95)."""
    default, classical = every_object, classical_everywhere
    for threshold in (0.85, 0.90):
        assert default.noc(threshold) <= classical.noc(threshold), (
            default.summary(),
            classical.summary(),
        )


@pytest.mark.slow
def test_the_lead_over_the_classical_cut_is_measured_object_by_object(
    every_object, classical_everywhere
):
    """The lead is the difference of the means, and pairing the objects makes its error
    smaller than the two pipelines' errors combined: an object hard for one is hard for
    both."""
    default, classical = every_object, classical_everywhere
    saved, error = lead(default, classical)["noc90"]
    assert saved == pytest.approx(classical.noc(0.90) - default.noc(0.90))
    unpaired = np.hypot(
        mean_and_error(default.noc_each(0.90))[1], mean_and_error(classical.noc_each(0.90))[1]
    )
    assert 0 < error < unpaired, (error, unpaired)


def test_the_photos_edges_choose_the_first_clicks_view():
    """A lone click's two refined masks, the whole image's view and the close-up: the one
    shown beats either view kept always, and is the better of the two on most objects. On
    this subset: 0.456 and 0.310 for the views, 0.505 shown, the better one shown on 65% of
    the objects (on all 160: 0.422, 0.310, 0.508 and 78%; the better of the two every time
    would give 0.588)."""
    figures = first_click_masks(prompter_for("click_net"), subset()).summary()
    assert figures["objects"] == 20 and len(figures["miou_each"]) == 2, figures
    assert figures["miou_shown"] > max(figures["miou_each"]), figures
    assert figures["best_shown"] >= 0.5, figures
