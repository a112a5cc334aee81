"""Trainer for ``maskrcnn``: torchvision's Mask R-CNN from scratch on fresh street scenes.

Every step renders new scenes from the generator's ``train`` split, indexed by the step, so a
run is deterministic, resumable and never sees a validation scene. The targets follow
torchvision's detection contract: per image ``boxes`` ``Nx4 float32`` ``(x0, y0, x1, y1)``
(x1, y1 exclusive), ``labels`` ``N int64`` (1 person, 2 purse) and ``masks`` ``NxHxW uint8``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn

from segdemo.data.scenes import Scene, make_scene
from segdemo.evaluate import VAL_INSTANCES, instance_validation
from segdemo.models.maskrcnn import SCENE_CLASSES
from segdemo.registry import build_model
from segdemo.tasks.common import to_tensor
from segdemo.tasks.instances import scene_truth
from segdemo.train.loop import Run, fit
from segdemo.weights import save_weights

TRAIN_SIZE = (240, 320)


@dataclass(frozen=True)
class Recipe:
    steps: int
    lr: float
    warmup: int
    batch_size: int


RECIPES = {"maskrcnn": Recipe(steps=4400, lr=2e-3, warmup=200, batch_size=4)}


def scene_targets(scene: Scene) -> dict[str, torch.Tensor]:
    """A scene's instances as a torchvision detection target (see the module docstring)."""
    masks, labels = scene_truth(scene)
    boxes = np.zeros((len(masks), 4), np.float32)
    for k, mask in enumerate(masks):
        ys, xs = np.nonzero(mask)
        boxes[k] = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
    return {
        "boxes": torch.from_numpy(boxes),
        "labels": torch.from_numpy(labels),
        "masks": torch.from_numpy(masks.astype(np.uint8)),
    }


def scene_batch(step: int, batch_size: int, size=TRAIN_SIZE) -> tuple[tuple[list, list], None]:
    """``((images, targets), None)`` for ``fit``: images ``3xHxW float32`` in [0, 1]."""
    scenes = [make_scene(step * batch_size + k, "train", size) for k in range(batch_size)]
    images = [to_tensor(s.image)[0] for s in scenes]
    return (images, [scene_targets(s) for s in scenes]), None


class DetectionLosses(nn.Module):
    """Adapts a torchvision detector to ``fit``: ``(images, targets)`` in, its loss dict out."""

    def __init__(self, detector: nn.Module):
        super().__init__()
        self.detector = detector

    def forward(self, batch: tuple[list, list]) -> dict[str, torch.Tensor]:
        images, targets = batch
        return self.detector(images, targets)


def total_loss(losses: dict[str, torch.Tensor], _unused=None) -> torch.Tensor:
    """Mask R-CNN's multi-task loss: RPN objectness + RPN boxes + class + box + mask."""
    return sum(losses.values())


def train(name: str, run: Run) -> dict:
    """Train ``maskrcnn`` from scratch (or resume), validate it with COCOeval, write weights."""
    recipe = RECIPES[name]
    settings = run.settings(recipe.steps, recipe.lr, checkpoint_every=100)
    # A short run (--steps) warms up for a tenth of its steps at most.
    settings = replace(settings, warmup=min(recipe.warmup, max(1, settings.steps // 10)))
    # Deterministic mode would also fill every new tensor with NaN (a debugging aid that does
    # not change results); torchvision's detection code allocates thousands per step.
    torch.utils.deterministic.fill_uninitialized_memory = False
    torch.manual_seed(run.seed)
    model = build_model(name)

    def batch(step: int):
        return scene_batch(step, recipe.batch_size)

    cpu_began = time.process_time()
    timing = fit(name, DetectionLosses(model), batch, total_loss, settings)
    # CPU seconds of all threads: unlike wall time, not inflated by other jobs on the machine.
    timing["train_cpu_seconds"] = round(time.process_time() - cpu_began, 1)
    metrics = instance_validation(name, model)
    metrics.update(timing, steps=settings.steps)
    h, w = VAL_INSTANCES.size
    path = save_weights(
        run.weights_path(name),
        model.cpu(),
        config=model.config_dict(),
        classes=list(SCENE_CLASSES),
        train_command=run.command(name),
        data={
            "description": "procedural street scenes ({}×{}, fresh every step), person and "
            "purse instances".format(*TRAIN_SIZE),
            "generator": "segdemo.data.scenes.make_scene",
            "train_split": "train",
            "images_seen": settings.steps * recipe.batch_size,
            "validation": f"split 'val', indices {VAL_INSTANCES.start}.."
            f"{VAL_INSTANCES.start + VAL_INSTANCES.count - 1}, {h}×{w}, pycocotools COCOeval",
            "seed": run.seed,
        },
        metrics=metrics,
    )
    print(f"wrote {path}: {metrics}")
    return metrics
