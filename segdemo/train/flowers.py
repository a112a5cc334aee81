"""Trainers for the flower models: the patch classifier and the two upsampling nets.

Every batch is generated fresh from the training split of the flower generator, indexed by
the step, so the runs are deterministic and never see a validation image.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from segdemo.data.flowers import CLASS_NAMES, make_flowers
from segdemo.evaluate import VAL_FLOWERS, flower_validation
from segdemo.models.patch_classifier import PATCH, STRIDE
from segdemo.tasks.common import batch_to_tensor
from segdemo.train.loop import recipe_trainer

TRAIN_SIZE = (96, 96)


def flower_batch(step: int, batch_size: int, size=TRAIN_SIZE) -> list:
    return [make_flowers(step * batch_size + k, "train", size) for k in range(batch_size)]


def patch_batch(
    step: int, images: int = 8, patches: int = 128
) -> tuple[torch.Tensor, torch.Tensor]:
    """32×32 patches from fresh images, half of them centred on a flower when possible.

    A patch is labelled flower when most of its central 4×4 block (the pixels its output cell
    stands for, see ``patch_classify.CENTRE_OFFSET``) is flower.
    """
    rng = np.random.default_rng([7, step])
    samples = flower_batch(step, images)
    h, w = TRAIN_SIZE
    offset = (PATCH - STRIDE) // 2
    crops, labels = [], []
    for sample in samples:
        centre = sample.mask[offset : h - PATCH + offset + 1, offset : w - PATCH + offset + 1]
        positive = np.argwhere(centre)
        for k in range(patches // images):
            if k % 2 == 0 and len(positive):
                y, x = positive[rng.integers(len(positive))]
            else:
                y, x = rng.integers(0, h - PATCH + 1), rng.integers(0, w - PATCH + 1)
            block = sample.mask[y + offset : y + offset + STRIDE, x + offset : x + offset + STRIDE]
            crops.append(sample.image[y : y + PATCH, x : x + PATCH])
            labels.append(float(block.mean() >= 0.5))
    return batch_to_tensor(crops), torch.tensor(labels).unsqueeze(1)


def mask_batch(step: int, batch_size: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    samples = flower_batch(step, batch_size)
    masks = torch.from_numpy(np.stack([s.mask for s in samples])).float().unsqueeze(1)
    return batch_to_tensor([s.image for s in samples]), masks


def bce_dice(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-pixel cross-entropy plus a soft Dice term, which rewards overlap (IoU) directly."""
    bce = F.binary_cross_entropy_with_logits(logits, targets)
    prob = torch.sigmoid(logits)
    dice = 1 - (2 * (prob * targets).sum() + 1) / (prob.sum() + targets.sum() + 1)
    return bce + dice


RECIPES = {
    # name: (batch function, loss, default steps, learning rate)
    "patch_classifier": (patch_batch, F.binary_cross_entropy_with_logits, 1500, 3e-3),
    "upsample_transposed": (mask_batch, bce_dice, 3000, 3e-3),
    "upsample_bilinear": (mask_batch, bce_dice, 3000, 3e-3),
}

# What the weights file records about the data its model saw.
DATA = {
    "description": "procedural flowers ({}×{}, fresh every step)".format(*TRAIN_SIZE),
    "generator": "segdemo.data.flowers.make_flowers",
    "train_split": "train",
    "validation": f"split 'val', indices 0..{VAL_FLOWERS.count - 1}, {VAL_FLOWERS.size}",
}

train = recipe_trainer(RECIPES, flower_validation, CLASS_NAMES, DATA)
