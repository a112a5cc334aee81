"""Trainer for ``click_net``: RITM's iterative recipe on procedural images, from scratch.

Every step draws fresh images — dead-leaves composites (a share of their fills are patches of
real photos without masks, ``data.photo_textures``), flowers and street scenes — and two
target objects in each, sometimes one part of a multi-part object. Each sample is a square
view, resized to the training size: either the whole image (what the first click sees) or a
crop around the target widened 1.2–2.6× (what the zoom-in sees after it).

Then the simulated user of RITM (Sofiiuk et al. 2022, §3.2): a first positive click inside the
object and, as RITM's multi-point sampler does, a random number of further clicks drawn from
the truth alone (positives inside the object, negatives around and away from it), so that the
model meets the many-click states of a long session without playing them all; then 0–3 more
clicks, each in the current error region (``clicks.sample_click``), with the model's own
prediction fed back as the previous-mask channel. These rounds run without gradients. The
loss (binary cross-entropy plus Dice) is taken on the final round only, so a step costs one
backward pass however many clicks it played. Nearly a third of the samples stop at the first
click on an empty mask, the state every session starts in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import nn

from segdemo.clicks import distance_to_boundary, sample_click
from segdemo.data.photo_textures import SOURCE as PHOTO_SOURCE
from segdemo.models.click_net import ClickNet
from segdemo.prompts import Click
from segdemo.tasks.click_model import ClickPrompter, click_maps
from segdemo.tasks.common import batch_to_tensor
from segdemo.train.interactive import (
    SOURCES,
    Interactive,
    candidates,
    mask_losses,
    pick_targets,
    train_interactive,
)
from segdemo.train.loop import Run
from segdemo.weights import config_dict


@dataclass(frozen=True)
class Recipe:
    steps: int = 1700
    lr: float = 2e-3
    warmup: int = 100
    weight_decay: float = 1e-4
    images_per_step: int = 4
    objects_per_image: int = 2
    size: int = 224  # training views are this square (inference runs at the working size)
    source_size: int = 320  # generated images, cropped and resized to ``size``
    source_odds: tuple[float, float, float] = (0.7, 0.15, 0.15)  # composites, flowers, scenes
    photos: float = 0.3  # share of the composites' part fills that are photo patches
    full_view: float = 0.45  # share of views that show the whole image
    first_only: float = 0.3  # share of samples trained on the first click alone
    expand: tuple[float, float] = (1.2, 2.6)  # zoom-in views: box around the target × this
    extra_clicks: int = 3  # clicks played without gradient before the trained one (0..this)
    scattered_clicks: float = 3.0  # mean number of clicks drawn from the truth alone
    part_target: float = 0.25  # how often a multi-part object's target is one of its parts
    min_area: float = 0.002  # smallest object, as a share of the image


RECIPE = Recipe()


def _view(rng: np.random.Generator, target: np.ndarray, recipe: Recipe) -> tuple[slice, slice]:
    """A square window of the image: the whole of it, or a crop around ``target``."""
    h, w = target.shape
    if rng.uniform() < recipe.full_view:
        return slice(0, h), slice(0, w)
    ys, xs = np.nonzero(target)
    side = max(np.ptp(ys), np.ptp(xs), 16) * rng.uniform(*recipe.expand)
    side = int(min(side, h, w))
    cy = (ys.min() + ys.max()) / 2 + rng.normal(0, 0.1) * side
    cx = (xs.min() + xs.max()) / 2 + rng.normal(0, 0.1) * side
    top = int(np.clip(cy - side / 2, 0, h - side))
    left = int(np.clip(cx - side / 2, 0, w - side))
    return slice(top, top + side), slice(left, left + side)


def _resize(array: np.ndarray, size: int, resample) -> np.ndarray:
    return np.asarray(Image.fromarray(array).resize((size, size), resample))


@dataclass
class Batch:
    """``images`` ``Bx3xSxS float32`` in [0, 1], ``targets`` ``BxSxS bool`` numpy."""

    images: torch.Tensor
    targets: np.ndarray
    extra_clicks: int
    first_only: np.ndarray  # B bool: samples that see only their first click, no mask
    seed: int


def make_batch(step: int, recipe: Recipe = RECIPE) -> Batch:
    """The data of step ``step``: a pure function of the step, so resuming changes nothing."""
    rng = np.random.default_rng([21, step])
    images, targets, tries = [], [], 0
    while len(images) < recipe.images_per_step * recipe.objects_per_image:
        source = SOURCES[rng.choice(3, p=recipe.source_odds)]
        image, objects = candidates(
            rng, source, step * 64 + tries, recipe.source_size, recipe.photos
        )
        tries += 1
        for target in pick_targets(rng, objects, recipe.objects_per_image, recipe):
            window = _view(rng, target, recipe)
            mask = _resize(target[window].astype(np.uint8) * 255, recipe.size, Image.BILINEAR)
            if mask.max() < 128:
                continue
            images.append(_resize(image[window], recipe.size, Image.BILINEAR))
            targets.append(mask >= 128)
    count = recipe.images_per_step * recipe.objects_per_image
    return Batch(
        images=batch_to_tensor(images[:count]),
        targets=np.stack(targets[:count]),
        extra_clicks=int(rng.integers(0, recipe.extra_clicks + 1)),
        first_only=rng.uniform(size=count) < recipe.first_only,
        seed=step,
    )


def scattered_clicks(rng: np.random.Generator, truth: np.ndarray, mean: float) -> list[Click]:
    """A random number (geometric, ``mean`` on average) of clicks drawn from the truth alone:
    each positive, at an object pixel at least 2 px from its edge, or negative, at a
    background pixel either within a band around the object or anywhere."""
    count = int(rng.geometric(1 / (1 + mean))) - 1
    if count == 0:
        return []
    inside = np.flatnonzero(distance_to_boundary(truth) >= 2)
    gap = distance_to_boundary(~truth)
    near = np.flatnonzero((gap >= 3) & (gap <= 0.15 * max(truth.shape)))
    far = np.flatnonzero(~truth)
    clicks = []
    for _ in range(min(count, 24)):
        positive = rng.uniform() < 0.5
        pool = inside if positive else (near if rng.uniform() < 0.6 else far)
        if len(pool) == 0:
            continue
        y, x = divmod(int(pool[rng.integers(len(pool))]), truth.shape[1])
        clicks.append(Click(x, y, positive))
    return clicks


class IterativeTrainer(nn.Module):
    """Wraps a ``ClickNet``; ``forward(batch)`` plays the simulated user, returns the loss."""

    def __init__(self, net: ClickNet, scattered: float = RECIPE.scattered_clicks):
        super().__init__()
        self.net, self.scattered = net, scattered  # mean number of scattered clicks

    def forward(self, batch: Batch) -> torch.Tensor:
        net, rng = self.net, np.random.default_rng([22, batch.seed])
        truth, device = batch.targets, net.mean.device
        rgb = net.normalise(batch.images.to(device))
        # The first click alone, on an empty mask, is the state every session starts in and
        # the hardest one (nothing says how far the object reaches): a share of the samples
        # trains on it alone, the others go on to more clicks.
        first_only = batch.first_only
        clicks = [
            [
                sample_click(rng, t, None),
                *([] if alone else scattered_clicks(rng, t, self.scattered)),
            ]
            for t, alone in zip(truth, first_only, strict=True)
        ]
        previous = torch.zeros(len(truth), 1, *truth.shape[-2:], device=device)
        keep = torch.from_numpy(~first_only).float()[:, None, None, None].to(device)
        radius = net.config.click_radius
        for _ in range(batch.extra_clicks):
            with torch.no_grad():
                maps = click_maps(clicks, truth.shape[-2:], radius).to(device)
                logits = net(torch.cat([rgb, maps, previous], 1))
                previous = torch.sigmoid(logits) * keep
            predicted = (logits[:, 0] > 0).cpu().numpy()
            for k in np.flatnonzero(~first_only):
                click = sample_click(rng, truth[k], predicted[k])
                clicks[k] += [click] if click is not None else []
        maps = click_maps(clicks, truth.shape[-2:], radius).to(device)
        logits = net(torch.cat([rgb, maps, previous], 1))
        loss, _ = mask_losses(logits, torch.from_numpy(truth).float().to(device))
        return loss.mean()


def train(name: str, run: Run) -> dict:
    """Train ``click_net`` from scratch (or resume), validate it, and write its weights file."""
    parts = Interactive(
        trainer=IterativeTrainer,
        batch=make_batch,
        prompter=ClickPrompter,
        shipped=lambda net: net,
        config=config_dict,
    )
    data = {
        "description": "procedural composites (a share of fills are patches of photos "
        "without masks), flowers and street scenes with simulated clicks (fresh every step)",
        "photo_textures": PHOTO_SOURCE,
        "size": RECIPE.size,
    }
    return train_interactive(name, run, RECIPE, parts, data)
