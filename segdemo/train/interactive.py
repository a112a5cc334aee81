"""What the trainers of promptable models share: the procedural objects a simulated user
prompts, the mask losses, and the loop that trains, validates with the click protocol and
writes the weights file (``train_interactive``). ``train.sam_tiny`` and ``train.click_net``
bring their own simulated users.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import nn

from segdemo.data.composites import make_composite
from segdemo.data.flowers import make_flowers
from segdemo.data.scenes import make_scene
from segdemo.prompted_eval import procedural_prompted_validation
from segdemo.registry import build_model
from segdemo.train.loop import Run, fit
from segdemo.weights import save_weights

SOURCES = ("composites", "flowers", "scenes")


def _components(mask: np.ndarray) -> list[np.ndarray]:
    labels, count = ndimage.label(mask)
    return [labels == k for k in range(1, count + 1)]


def candidates(rng: np.random.Generator, source: str, index: int, size: int, photos: float = 0.0):
    """One training image of ``source`` and the objects in it (``photos``: the composites'
    share of photo fills, see ``make_composite``).

    Returns ``(image SxSx3 uint8, objects list of (whole SxS bool, parts list of SxS bool))``.
    """
    if source == "composites":
        sample = make_composite(index, "train", (size, size), photos)
        objects = []
        for k in np.unique(sample.objects):
            whole = sample.objects == k
            parts = [sample.parts == p for p in np.unique(sample.parts[whole])]
            objects.append((whole, parts if len(parts) > 1 else []))
        return sample.image, objects
    if source == "flowers":
        sample = make_flowers(index, "train", (size, size))
        flowers = [(m, []) for m in _components(sample.mask)]
        return sample.image, flowers + [(~sample.mask, [])]
    scene = make_scene(index, "train", (size, size))
    objects = [(scene.instances == k, []) for k in scene.instance_classes]
    for cls in (0, 3, 4, 5):  # sky/other, plants, sidewalk, building: each region an object
        objects += [(m, []) for m in _components(scene.labels == cls)]
    if rng.uniform() < 0.5:  # mirror: the generator's layouts are not symmetric
        return scene.image[:, ::-1].copy(), [(w[:, ::-1].copy(), []) for w, _ in objects]
    return scene.image, objects


def pick_targets(rng: np.random.Generator, objects, count: int, recipe) -> list:
    """``count`` target masks, larger objects likelier (weight √area), sometimes a part."""
    size = objects[0][0].size if objects else 1
    usable = [o for o in objects if o[0].sum() >= recipe.min_area * size]
    if not usable:
        return []
    weights = np.sqrt([o[0].sum() for o in usable])
    replace = len(usable) < count
    chosen = rng.choice(len(usable), size=count, replace=replace, p=weights / weights.sum())
    targets = []
    for k in chosen:
        whole, parts = usable[k]
        if parts and rng.uniform() < recipe.part_target:
            part = parts[rng.integers(len(parts))]
            whole = part if part.sum() >= recipe.min_area * size else whole
        targets.append(whole)
    return targets


def object_ids(objects) -> np.ndarray:
    """``SxS int64``: 1 + the index of the object covering each pixel (0 where none does)."""
    ids = np.zeros(objects[0][0].shape, np.int64)
    for k, (whole, _) in enumerate(objects, start=1):
        ids[whole] = k
    return ids


def mask_losses(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-mask loss and actual IoU: ``NxCxSxS`` logits vs ``NxSxS`` targets -> two ``NxC``."""
    t = targets[:, None].expand_as(logits)
    bce = F.binary_cross_entropy_with_logits(logits, t, reduction="none").mean((2, 3))
    prob = torch.sigmoid(logits)
    dice = 1 - (2 * (prob * t).sum((2, 3)) + 1) / (prob.sum((2, 3)) + t.sum((2, 3)) + 1)
    with torch.no_grad():
        hard = logits > 0
        inter = (hard & (t > 0.5)).sum((2, 3)).float()
        union = (hard | (t > 0.5)).sum((2, 3)).float()
        actual = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
    return bce + dice, actual


GENERATORS = [
    "segdemo.data.composites.make_composite",
    "segdemo.data.flowers.make_flowers",
    "segdemo.data.scenes.make_scene",
]


@dataclass(frozen=True)
class Interactive:
    """What differs between the trainers of promptable models: the simulated user (a module
    whose forward plays it on a batch and returns the loss), the data, the prompter that
    validates the result, the copy that is shipped, and the config to rebuild it."""

    trainer: Callable[[nn.Module], nn.Module]
    batch: Callable[[int], object]
    prompter: Callable[[nn.Module], object]
    shipped: Callable[[nn.Module], nn.Module]
    config: Callable[[object], dict]


def train_interactive(name: str, run: Run, recipe, parts: Interactive, data: dict) -> dict:
    """Train a promptable model from scratch (or resume), validate it with the click protocol
    on fresh procedural images, and write its weights file with ``data`` as its data record."""
    settings = run.settings(
        recipe.steps, recipe.lr, weight_decay=recipe.weight_decay, warmup=recipe.warmup
    )
    torch.manual_seed(run.seed)
    model = build_model(name)
    began = time.perf_counter()
    timing = fit(
        name,
        parts.trainer(model),
        lambda step: (parts.batch(step), None),
        _loss_is_output,
        settings,
    )
    model.eval()
    metrics = procedural_prompted_validation(parts.prompter(model))
    metrics.update(timing, steps=settings.steps, wall_seconds=round(time.perf_counter() - began))
    path = save_weights(
        run.weights_path(name),
        parts.shipped(model.cpu()),
        config=parts.config(model.config),
        classes=["object"],
        train_command=run.command(name),
        data={"generators": GENERATORS, "train_split": "train", **data, "seed": run.seed},
        metrics=metrics,
    )
    print(f"wrote {path}: {metrics}")
    return metrics


def _loss_is_output(loss: torch.Tensor, _targets) -> torch.Tensor:
    return loss  # the trainer's forward already played the rounds and summed their losses


