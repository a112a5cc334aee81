"""Simulated users: the standard click protocol (NoC) for measuring, a randomised one for training.

The protocol (as in the COCO MVal / RITM evaluations, see ``data/coco_mval/README.md``):

1. The first click is positive, at the object pixel farthest from the object's boundary (the
   maximum of the Euclidean distance transform of the mask, padded so that the image border
   counts as boundary).
2. After each prediction, the false negatives (object, not predicted) and false positives
   (predicted, not object) form two regions. The next click goes to the pixel farthest from
   the boundary of whichever region reaches farther: positive in a false negative, negative in
   a false positive. On a tie the click is negative (positive needs strictly farther, as in
   the RITM code), and within a region the first deepest pixel in row-major order wins.
3. Stop after 20 clicks. NoC@t is the number of clicks needed to reach IoU >= t, or 20 when
   it is never reached.

Masks are ``HxW bool`` arrays; clicks are ``(x, y)`` pixel coordinates with a label
(1 positive, 0 negative), the order ``SamPredictor`` takes.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.ndimage import distance_transform_edt

from segdemo.prompts import Click

MAX_CLICKS = 20


def distance_to_boundary(region: np.ndarray) -> np.ndarray:
    """``HxW float64``: each region pixel's Euclidean distance to the nearest pixel outside it.

    Pixels beyond the image border count as outside. Only the region's bounding box (plus a
    one-pixel frame) is transformed: the frame is all outside, so no nearer outside pixel can
    lie beyond it, and the result is exact.
    """
    region = np.asarray(region, bool)
    out = np.zeros(region.shape)
    rows, cols = np.flatnonzero(region.any(1)), np.flatnonzero(region.any(0))
    if rows.size == 0:
        return out
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    out[box] = distance_transform_edt(np.pad(region[box], 1))[1:-1, 1:-1]
    return out


def deepest_point(region: np.ndarray) -> tuple[int, int, float]:
    """``(x, y, distance)`` of the region pixel farthest from its boundary (first in row-major)."""
    dist = distance_to_boundary(region)
    index = int(np.argmax(dist))  # argmax returns the first maximum in row-major order
    y, x = divmod(index, dist.shape[1])
    return x, y, float(dist[y, x])


def first_click(truth: np.ndarray) -> Click:
    """The protocol's first click: positive, at the deepest point of the object."""
    x, y, _ = deepest_point(truth)
    return Click(x, y, True)


def next_click(truth: np.ndarray, prediction: np.ndarray) -> Click | None:
    """The protocol's next click given the current prediction, or None when it is perfect."""
    truth, prediction = np.asarray(truth, bool), np.asarray(prediction, bool)
    fn_x, fn_y, fn_dist = deepest_point(truth & ~prediction)
    fp_x, fp_y, fp_dist = deepest_point(prediction & ~truth)
    if fn_dist == 0 and fp_dist == 0:
        return None
    if fn_dist > fp_dist:
        return Click(fn_x, fn_y, True)
    return Click(fp_x, fp_y, False)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks (1.0 when both are empty)."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


# predict(clicks so far, the previous mask's feedback or None) -> (HxW bool mask, feedback)
Predict = Callable[[list[Click], "np.ndarray | None"], tuple[np.ndarray, np.ndarray]]


def click_curve(predict: Predict, truth: np.ndarray, max_clicks: int = MAX_CLICKS) -> list[float]:
    """IoU after each of ``max_clicks`` protocol clicks (index 0: after the first click).

    The previous prediction's feedback (SAM's low-resolution logits, the click model's
    probability map) goes back to the model with every click. A perfect prediction keeps its
    IoU for the remaining clicks.
    """
    truth = np.asarray(truth, bool)
    clicks, feedback, ious = [first_click(truth)], None, []
    while True:
        mask, feedback = predict(clicks, feedback)
        ious.append(iou(mask, truth))
        if len(ious) == max_clicks:
            return ious
        click = next_click(truth, mask)
        if click is None:
            return ious + [ious[-1]] * (max_clicks - len(ious))
        clicks.append(click)


def clicks_to_reach(ious: list[float], threshold: float, max_clicks: int = MAX_CLICKS) -> int:
    """NoC: the number of clicks after which IoU first reaches ``threshold`` (else max_clicks)."""
    for k, value in enumerate(ious[:max_clicks], start=1):
        if value >= threshold:
            return k
    return max_clicks


def sample_click(
    rng: np.random.Generator, truth: np.ndarray, prediction: np.ndarray | None
) -> Click | None:
    """A randomised click for training: near the protocol's choice, but not always on it.

    The region (false negatives or false positives) is the protocol's with probability 0.7,
    else drawn in proportion to the regions' areas; the point is drawn uniformly either from
    the region's deep interior (distance >= 0.6 × its maximum) or from the whole region.
    With no prediction the click is the first, positive one. None when nothing is wrong.
    """
    truth = np.asarray(truth, bool)
    regions = [truth] if prediction is None else [truth & ~prediction, prediction & ~truth]
    dists = [distance_to_boundary(r) for r in regions]
    depth = np.array([d.max() for d in dists])
    if depth.max() == 0:
        return None
    if len(regions) == 1:
        pick = 0
    elif rng.uniform() < 0.7:
        pick = int(depth[1] >= depth[0])
    else:
        area = np.array([r.sum() for r in regions], np.float64)
        pick = int(rng.choice(2, p=area / area.sum()))
    dist = dists[pick]
    if depth[pick] == 0:
        pick, dist = 1 - pick, dists[1 - pick]
    floor = 0.6 * dist.max() if rng.uniform() < 0.5 else 0.0
    ys, xs = np.nonzero(dist > floor) if floor else np.nonzero(dist)
    k = rng.integers(len(xs))
    return Click(int(xs[k]), int(ys[k]), pick == 0)
