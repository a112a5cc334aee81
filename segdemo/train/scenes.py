"""Trainers for the semantic UNets on procedural street scenes.

Every step renders fresh scenes from the generator's ``train`` split (indexed by the step, so
runs are deterministic and resumable and never see a validation scene) at a random size
around the validation size, and cuts two crops from each: crops keep the cost of a step low
(rendering a scene costs about as much as a training pass over two crops), and the random
scene size shows the nets objects a little larger and smaller than in validation. One crop of
each scene is centred on a purse (or a person when there is no purse), the rarest classes;
the other is anywhere.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from segdemo.data.scenes import CLASS_NAMES, PERSON, PURSE, make_scene
from segdemo.evaluate import VAL_SCENES, scene_validation
from segdemo.tasks.common import batch_to_tensor
from segdemo.train.loop import recipe_trainer

CROP = (128, 160)  # (height, width) of a training crop; multiples of the UNet's stride 16
SCENE_HEIGHTS = (192, 320)  # scenes are rendered at a random height in this range, 4:3
SCENES_PER_STEP = 4  # two crops from each: a batch of 8
# Cross-entropy weight per class (CLASS_NAMES order), roughly the square root of the median
# class frequency over the class's own: the purse covers 0.2% of the pixels, and unweighted it
# never wins the arg-max even where the net has found it.
CLASS_WEIGHTS = (1.0, 2.0, 10.0, 2.0, 1.0, 1.0)


def _crop_origin(rng: np.random.Generator, labels: np.ndarray, focus: bool) -> tuple[int, int]:
    """Top-left corner of a CROP-sized window; with ``focus``, centred on a purse pixel (or a
    person pixel when the scene has no purse)."""
    h, w = labels.shape
    ch, cw = CROP
    if focus:
        targets = np.argwhere(labels == PURSE)
        targets = targets if len(targets) else np.argwhere(labels == PERSON)
        if len(targets):
            y, x = targets[rng.integers(len(targets))]
            return int(np.clip(y - ch // 2, 0, h - ch)), int(np.clip(x - cw // 2, 0, w - cw))
    return int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))


def scene_batch(step: int, scenes: int = SCENES_PER_STEP) -> tuple[torch.Tensor, torch.Tensor]:
    """``Bx3xHxW`` float images in [0, 1] and ``BxHxW`` int64 class indices, where
    ``B = 2 * scenes`` and ``(H, W) = CROP``."""
    rng = np.random.default_rng([11, step])
    images, labels = [], []
    for k in range(scenes):
        height = int(rng.integers(SCENE_HEIGHTS[0], SCENE_HEIGHTS[1] + 1))
        scene = make_scene(step * scenes + k, "train", (height, height * 4 // 3))
        for focus in (True, False):
            y, x = _crop_origin(rng, scene.labels, focus)
            window = (slice(y, y + CROP[0]), slice(x, x + CROP[1]))
            image, label = scene.image[window], scene.labels[window]
            if rng.random() < 0.5:  # streets look the same in a mirror
                image, label = image[:, ::-1], label[:, ::-1]
            images.append(np.ascontiguousarray(image))
            labels.append(np.ascontiguousarray(label))
    return batch_to_tensor(images), torch.from_numpy(np.stack(labels).astype(np.int64))


def cross_entropy_dice(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Class-weighted cross-entropy at every pixel plus a soft Dice term per class.

    Cross-entropy alone is dominated by the big classes (sidewalk, building, sky); the weights
    and the Dice term, which weighs every class present in the batch equally, make the purse
    count as much as the sidewalk, as it does in mIoU.
    """
    weight = torch.tensor(CLASS_WEIGHTS, dtype=logits.dtype, device=logits.device)
    ce = F.cross_entropy(logits, targets, weight=weight)
    prob = logits.softmax(1)
    truth = F.one_hot(targets, logits.shape[1]).permute(0, 3, 1, 2).to(prob.dtype)
    overlap = (prob * truth).sum((0, 2, 3))
    total = prob.sum((0, 2, 3)) + truth.sum((0, 2, 3))
    present = truth.sum((0, 2, 3)) > 0
    dice = 1 - (2 * overlap + 1) / (total + 1)
    return ce + dice[present].mean()


RECIPES = {
    # name: (batch function, loss, default steps, learning rate)
    "unet": (scene_batch, cross_entropy_dice, 3000, 3e-3),
    "unet_noskip": (scene_batch, cross_entropy_dice, 3000, 3e-3),
}

# What the weights file records about the data its model saw.
DATA = {
    "description": "procedural street scenes, {}×{} crops of scenes {}..{} px high "
    "(4:3), {} fresh scenes every step".format(*CROP, *SCENE_HEIGHTS, SCENES_PER_STEP),
    "generator": "segdemo.data.scenes.make_scene",
    "train_split": "train",
    "validation": f"split 'val', indices {VAL_SCENES.start}.."
    f"{VAL_SCENES.start + VAL_SCENES.count - 1}, {VAL_SCENES.size}",
}

train = recipe_trainer(RECIPES, scene_validation, CLASS_NAMES, DATA)
