"""The classical yardsticks: what the clicks and the photo give without anything learned.

``ClickDiscsPrompter`` proposes soft discs around the clicks for the refinement's graph cut
(``tasks.refine``) to decide, the classical-only pipeline. ``RandomWalkerPrompter`` is
scikit-image's random walker (Grady 2006) seeded by the clicks:

A random walker labels each pixel by the probability that a walk from it, moving more easily
between similar neighbours, reaches a positive seed before a negative one. It knows nothing
but colour differences between neighbours, so it is the baseline a learned model must beat.

Seeds: a disk around each click (positive 1, negative 2) and, since one positive click alone
leaves nothing to compare against, the image border as background wherever no positive click
lies near it. It runs on the image downscaled to ``WORKING_SIDE`` on its long side (the solver
is far slower than a network at full size) and its probability map is upsampled back.
"""

from __future__ import annotations

import time

import numpy as np
from PIL import Image
from skimage.segmentation import random_walker

from segdemo.prompts import Prompts, disc
from segdemo.tasks.click_model import self_estimated_iou
from segdemo.tasks.promptable import ImageState, Prediction

WORKING_SIDE = 192
SEED_RADIUS = 3  # pixels at the working side
BETA = 130  # scikit-image's default edge sensitivity


class RandomWalkerPrompter:
    """``Prompter`` for the random walker (no box support: a box is treated as its clicks)."""

    design = "classical"
    multimask = False

    def prepare(self, pixels: np.ndarray) -> ImageState:
        began = time.perf_counter()
        h, w = pixels.shape[:2]
        scale = min(1.0, WORKING_SIDE / max(h, w))
        small = Image.fromarray(pixels).resize(
            (max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR
        )
        value = (np.asarray(small, np.float64) / 255.0, (h, w))
        return ImageState(value, time.perf_counter() - began)

    def predict(self, image: ImageState, prompts: Prompts, feedback, multimask=False, early=None):
        small, (h, w) = image.value
        sh, sw = small.shape[:2]
        seeds = np.zeros((sh, sw), np.int32)
        seeds[0, :] = seeds[-1, :] = seeds[:, 0] = seeds[:, -1] = 2
        rows, cols = np.ogrid[:sh, :sw]
        order = np.argsort(prompts.labels, kind="stable")[::-1]  # negatives drawn last win
        for (x, y), label in zip(prompts.points[order], prompts.labels[order], strict=True):
            sx, sy = (x + 0.5) * sw / w - 0.5, (y + 0.5) * sh / h - 0.5
            near = (cols - sx) ** 2 + (rows - sy) ** 2
            if label == 1:  # the border near a positive click is not background there
                border = seeds == 2
                border[1:-1, 1:-1] = False
                seeds[border & (near <= (0.1 * max(sh, sw)) ** 2)] = 0
            seeds[near <= SEED_RADIUS**2] = 1 if label == 1 else 2
        if not (seeds == 1).any():  # nothing to grow from
            empty = np.zeros((1, h, w), bool)
            return Prediction(empty, np.ones(1, np.float32), (None,))
        probability = random_walker(
            small, seeds, beta=BETA, mode="bf", channel_axis=-1, return_full_prob=True
        )[0]
        full = np.asarray(
            Image.fromarray(probability.astype(np.float32)).resize((w, h), Image.BILINEAR)
        )
        mask = full > 0.5
        score = np.array([self_estimated_iou(full, mask)], np.float32)
        return Prediction(mask[None], score, (None,), full[None])

    def shown(self, feedback, mask: np.ndarray):
        return feedback


# The graph cut's classical prior: what "the object is around my positive clicks" means with
# nothing learned. A disc of this share of the image's long side around each positive click
# leans to the object, everything else to the background; the cut does the rest.
DISC_SHARE = 0.15
DISC_LEAN = 0.7  # probability of the object inside a disc (1 - this outside)


class ClickDiscsPrompter:
    """``Prompter`` with no model: its proposal is a soft disc around each positive click (and
    the box, when given), for the refinement on the photo to cut. It is what the photo gives
    without learning, the yardstick for the learned pipelines."""

    design = "classical"
    multimask = False

    def prepare(self, pixels: np.ndarray) -> ImageState:
        return ImageState(pixels.shape[:2], 0.0)

    def predict(self, image: ImageState, prompts: Prompts, feedback, multimask=False, early=None):
        shape = image.value
        probability = np.full(shape, 1 - DISC_LEAN, np.float32)
        radius = DISC_SHARE * max(shape)
        for click in prompts.clicks:
            found = disc(shape, click.x, click.y, radius) if click.positive else None
            if found is not None:
                (rows, cols), inside = found
                probability[rows, cols][inside] = DISC_LEAN
        if prompts.box is not None:
            probability[prompts.box.covers(shape)] = DISC_LEAN
        mask = probability > 0.5
        score = np.array([self_estimated_iou(probability, mask)], np.float32)
        return Prediction(mask[None], score, (None,), probability[None])

    def shown(self, feedback, mask: np.ndarray):
        return feedback
