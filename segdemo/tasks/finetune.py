"""Train on your own photo: fine-tune copies of the flower models on a user's brush strokes.

The lecture trains its nets on patches of the flower photo itself. Here the user marks some
foreground and some background on any photo, and copies of the shipped models learn from just
those pixels for a few seconds:

- ``patch_classifier`` on 32×32 patches whose central 4×4 block (the pixels its output cell
  stands for) lies on a stroke, labelled by the stroke;
- the upsampling nets on crops around the strokes, with the loss on the marked pixels only.

The copies are returned to the caller (the UI keeps them in that user's session); the shared,
shipped models are never touched. Batch norm keeps the shipped statistics (eval mode): a few
dozen patches of one photo are too few to re-estimate them.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from segdemo.models.patch_classifier import PATCH, PatchClassifier
from segdemo.registry import load_model
from segdemo.tasks.common import batch_to_tensor
from segdemo.tasks.patch_classify import CENTRE_OFFSET, classify_segment
from segdemo.tasks.upsample import UPSAMPLING_MODELS, predict

FLOWER_MODELS = ("patch_classifier", *UPSAMPLING_MODELS)
TIME_BUDGET = 20.0  # seconds for all the models of one request, on 2 CPU cores
CROP = 96  # side of the upsampling nets' training crops (their training size)
BATCH = 8  # crops per step for the upsampling nets; patches per step are 8× that
LEARNING_RATE = 1e-3


class LabelError(ValueError):
    """The strokes cannot be used to train (none, or only one kind); says what to do."""


@dataclass
class TunedModels:
    """The fine-tuned copies, keyed by model name, with the steps and seconds each took."""

    models: dict[str, torch.nn.Module]
    steps: dict[str, int]
    seconds: dict[str, float]
    losses: dict[str, tuple[float, float]]  # (first step, last step)


def strokes_from_colours(layer: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``HxWx4`` RGBA brush layer -> (foreground, background) ``HxW bool``: green strokes are
    foreground, red strokes background; unpainted (transparent) pixels are neither."""
    layer = np.asarray(layer)
    painted = layer[..., 3] > 0 if layer.shape[-1] == 4 else layer[..., :3].max(-1) > 0
    red, green = layer[..., 0].astype(int), layer[..., 1].astype(int)
    return painted & (green > red), painted & (red > green)


def labels_from_mask(mask: np.ndarray, margin: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """A binary mask (e.g. from the prompted-masks tab) -> (foreground, background) labels.

    The ``margin`` pixels on both sides of its boundary stay unlabelled: a mask drawn by a
    model or a hand is least sure there.
    """
    mask = np.asarray(mask) > 0
    foreground = ndimage.binary_erosion(mask, iterations=margin)
    background = ~ndimage.binary_dilation(mask, iterations=margin)
    return foreground, background


def grid_strokes(mask: np.ndarray, margin: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Strokes a user might paint, taken from a true mask: a grid of 1-pixel lines (every 16
    rows, every 24 columns), kept ``margin`` pixels from the mask's edges. For tests and the
    benchmark, where the truth is known."""
    lines = np.zeros_like(mask, dtype=bool)
    lines[::16] = True
    lines[:, ::24] = True
    inside = ndimage.binary_erosion(mask, iterations=margin)
    outside = ndimage.binary_erosion(~mask, iterations=margin)
    return inside & lines, outside & lines


def check_labels(foreground: np.ndarray, background: np.ndarray, size: tuple[int, int]) -> None:
    if foreground.shape != size or background.shape != size:
        raise LabelError(
            f"The strokes are {foreground.shape[1]}×{foreground.shape[0]} pixels but the image is "
            f"{size[1]}×{size[0]}: draw them on this image."
        )
    if not foreground.any() or not background.any():
        missing = "foreground (green)" if not foreground.any() else "background (red)"
        raise LabelError(f"Mark some {missing} pixels too: training needs both kinds.")


def _patch_batch(rng, padded: np.ndarray, points: np.ndarray, labels: np.ndarray, count: int):
    """``count`` 32×32 patches whose central 4×4 block covers a labelled pixel."""
    pick = rng.integers(len(points), size=count)
    crops = []
    for y, x in points[pick]:  # ``padded`` is the image padded by PATCH on every side
        top, left = (
            y + PATCH - CENTRE_OFFSET - rng.integers(4),
            x + PATCH - CENTRE_OFFSET - rng.integers(4),
        )
        crops.append(padded[top : top + PATCH, left : left + PATCH])
    return batch_to_tensor(crops), torch.from_numpy(labels[pick]).float()[:, None]


def _crop_batch(rng, image: np.ndarray, target: np.ndarray, weight: np.ndarray, points):
    """``BATCH`` crops (``CROP``² or the image, if smaller) centred near labelled pixels."""
    h, w = image.shape[:2]
    ch, cw = min(CROP, h), min(CROP, w)
    images, targets, weights = [], [], []
    for y, x in points[rng.integers(len(points), size=BATCH)]:
        top = int(np.clip(y - ch // 2 + rng.integers(-16, 17), 0, h - ch))
        left = int(np.clip(x - cw // 2 + rng.integers(-16, 17), 0, w - cw))
        window = (slice(top, top + ch), slice(left, left + cw))
        images.append(image[window])
        targets.append(target[window])
        weights.append(weight[window])
    as_tensor = lambda arrays: torch.from_numpy(np.stack(arrays)).float()[:, None]  # noqa: E731
    return batch_to_tensor(images), as_tensor(targets), as_tensor(weights)


def _balanced(foreground: np.ndarray, background: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labelled pixel coordinates, half foreground and half background, and their labels."""
    fg, bg = np.argwhere(foreground), np.argwhere(background)
    n = max(len(fg), len(bg))
    fg, bg = np.resize(fg, (n, 2)), np.resize(bg, (n, 2))  # repeat the smaller set
    return np.concatenate([fg, bg]), np.concatenate([np.ones(n), np.zeros(n)])


def finetune(
    pixels: np.ndarray,
    foreground: np.ndarray,
    background: np.ndarray,
    names: tuple[str, ...] = FLOWER_MODELS,
    steps: int = 60,
    time_budget: float = TIME_BUDGET,
    progress: Callable[[float, str], None] | None = None,
    seed: int = 0,
) -> TunedModels:
    """Fine-tune a copy of each model in ``names`` on the labelled pixels of ``pixels``.

    ``pixels`` ``HxWx3 uint8``; ``foreground``/``background`` ``HxW bool`` (unlabelled pixels
    are neither). Each model gets ``steps`` steps or an equal share of ``time_budget`` seconds,
    whichever ends first.
    """
    check_labels(foreground, background, pixels.shape[:2])
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    points, labels = _balanced(foreground, background)
    padded = np.pad(pixels, ((PATCH, PATCH), (PATCH, PATCH), (0, 0)), mode="reflect")
    target = foreground.astype(np.float32)
    weight = (foreground | background).astype(np.float32)
    tuned = TunedModels({}, {}, {}, {})
    for k, name in enumerate(names):
        model = copy.deepcopy(load_model(name)).eval().requires_grad_(True)
        device = next(model.parameters()).device
        optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
        began, first, done = time.perf_counter(), None, 0
        deadline = began + time_budget / len(names)
        while done < steps and time.perf_counter() < deadline:
            if isinstance(model, PatchClassifier):
                inputs, truth = _patch_batch(rng, padded, points, labels, 8 * BATCH)
                inputs, truth = inputs.to(device), truth.to(device)
                loss = F.binary_cross_entropy_with_logits(model(inputs), truth)
            else:
                inputs, truth, mask = _crop_batch(rng, pixels, target, weight, points)
                inputs, truth, mask = inputs.to(device), truth.to(device), mask.to(device)
                per_pixel = F.binary_cross_entropy_with_logits(
                    model(inputs), truth, reduction="none"
                )
                loss = (per_pixel * mask).sum() / mask.sum().clamp(min=1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            first = loss.item() if first is None else first
            done += 1
            if progress is not None:
                progress((k + done / steps) / len(names), f"fine-tuning {name}")
        model.requires_grad_(False)
        tuned.models[name] = model
        tuned.steps[name] = done
        tuned.seconds[name] = round(time.perf_counter() - began, 2)
        tuned.losses[name] = (round(first or 0.0, 4), round(loss.item(), 4) if done else 0.0)
    return tuned


def probability(name: str, pixels: np.ndarray, model: torch.nn.Module | None = None) -> np.ndarray:
    """``HxW float32`` foreground probability from a flower model (shipped when ``model`` is
    None), at the image's full size."""
    if name == "patch_classifier":
        return classify_segment(pixels, model).probability
    return predict(name, pixels, model).probability
