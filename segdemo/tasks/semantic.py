"""Semantic segmentation with the UNets: label maps, one-hot slices and per-class IoU.

A semantic model gives ``C`` scores (logits) at every pixel; the label map is their arg-max,
one class index per pixel. The one-hot encoding turns a label map into ``C`` binary slices,
slice ``c`` being 1 exactly where the label is ``c``: the target that the per-pixel
cross-entropy compares the softmax of the scores against during training.

Quality is measured per class as IoU, pooled over all pixels seen (total intersection over
total union), and averaged over classes (mIoU). Boundary quality is the same mIoU counted only
on pixels within ``BOUNDARY_RADIUS`` pixels of a true class boundary, where a coarse decoder
goes wrong first.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from segdemo.data.scenes import CLASS_NAMES
from segdemo.registry import load_model
from segdemo.tasks.common import to_tensor

SEMANTIC_MODELS = ("unet", "unet_noskip")
BOUNDARY_RADIUS = 3  # pixels: the band around true class boundaries that boundary mIoU scores

# One RGB colour per class of CLASS_NAMES; far apart in hue and lightness so that neighbouring
# classes stay distinct on the colour map and for colour-blind viewers.
PALETTE = np.array(
    [
        (200, 200, 200),  # sky/other: light grey, the "nothing in particular" class
        (220, 20, 60),  # person: crimson
        (255, 200, 0),  # purse: gold
        (40, 150, 60),  # plants/grass: green
        (240, 60, 230),  # sidewalk: magenta
        (50, 80, 170),  # building: dark blue
    ],
    dtype=np.uint8,
)


def hex_colours() -> dict[str, str]:
    """Class name -> ``#rrggbb`` (for legends)."""
    return {
        name: "#{:02x}{:02x}{:02x}".format(*rgb)
        for name, rgb in zip(CLASS_NAMES, PALETTE, strict=True)
    }


@dataclass(frozen=True)
class SemanticResult:
    logits: np.ndarray  # CxHxW float32 class scores
    labels: np.ndarray  # HxW uint8 class indices, the arg-max of the logits
    seconds: float  # wall time of the forward pass


@torch.no_grad()
def predict_logits(model: torch.nn.Module, pixels: np.ndarray) -> np.ndarray:
    """``HxWx3 uint8`` pixels -> ``CxHxW float32`` logits of a semantic model."""
    device = next(model.parameters()).device
    return model(to_tensor(pixels).to(device))[0].float().cpu().numpy()


def segment(pixels: np.ndarray, model: torch.nn.Module | str = "unet") -> SemanticResult:
    """Label every pixel of an ``HxWx3 uint8`` image with a semantic model (or its name)."""
    model = load_model(model) if isinstance(model, str) else model
    began = time.perf_counter()
    logits = predict_logits(model, pixels)
    seconds = time.perf_counter() - began
    return SemanticResult(logits, logits.argmax(0).astype(np.uint8), seconds)


def unet_compare(pixels: np.ndarray) -> dict[str, SemanticResult]:
    """Both UNets (with and without skip connections) on the same image, keyed by name."""
    return {name: segment(pixels, name) for name in SEMANTIC_MODELS}


def one_hot(labels: np.ndarray, classes: int = len(CLASS_NAMES)) -> np.ndarray:
    """``HxW`` class indices -> ``CxHxW uint8`` slices; slice ``c`` is 1 where labels == c."""
    return (np.asarray(labels)[None] == np.arange(classes)[:, None, None]).astype(np.uint8)


def pixel_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``-log softmax(logits)[true class]`` at every pixel: ``HxW float32``, >= 0.

    The training loss is the mean of this map; it is large where the model is confidently
    wrong and near zero where it is confidently right.
    """
    log_prob = F.log_softmax(torch.from_numpy(logits).float(), dim=0)
    target = torch.from_numpy(np.asarray(labels, np.int64))[None]
    return (-log_prob.gather(0, target)[0]).numpy()


def boundary_band(labels: np.ndarray, radius: int = BOUNDARY_RADIUS) -> np.ndarray:
    """``HxW bool``: pixels within ``radius`` (in the max-norm) of a change of class."""
    labels = np.asarray(labels)
    edge = np.zeros(labels.shape, bool)
    # Mark both pixels of every differing horizontal or vertical pair.
    dy, dx = labels[1:] != labels[:-1], labels[:, 1:] != labels[:, :-1]
    edge[1:] |= dy
    edge[:-1] |= dy
    edge[:, 1:] |= dx
    edge[:, :-1] |= dx
    if radius <= 0:
        return edge
    grown = F.max_pool2d(
        torch.from_numpy(edge)[None, None].float(), 2 * radius + 1, stride=1, padding=radius
    )
    return grown[0, 0].numpy() > 0


class ConfusionMatrix:
    """Counts of (true class, predicted class) over every pixel added; IoU per class from it."""

    def __init__(self, classes: int = len(CLASS_NAMES)) -> None:
        self.classes = classes
        self.counts = np.zeros((classes, classes), np.int64)

    def add(self, pred: np.ndarray, truth: np.ndarray, where: np.ndarray | None = None) -> None:
        """Count ``HxW`` predicted vs true class indices, optionally only where ``where``."""
        pred, truth = np.asarray(pred, np.int64), np.asarray(truth, np.int64)
        if where is not None:
            pred, truth = pred[where], truth[where]
        index = truth.ravel() * self.classes + pred.ravel()
        self.counts += np.bincount(index, minlength=self.classes**2).reshape(self.counts.shape)

    @property
    def iou(self) -> np.ndarray:
        """Per-class IoU (``C`` floats); NaN for a class neither predicted nor present."""
        hits = np.diag(self.counts).astype(np.float64)
        union = self.counts.sum(0) + self.counts.sum(1) - hits
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, hits / union, np.nan)

    @property
    def mean_iou(self) -> float:
        """Mean over the classes that occur (in the truth or the prediction)."""
        values = self.iou
        return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


@dataclass(frozen=True)
class ImageScore:
    """One prediction against its ground truth."""

    iou: dict[str, float | None]  # class name -> IoU, None where the class is nowhere
    miou: float
    boundary_miou: float


def score(pred: np.ndarray, truth: np.ndarray) -> ImageScore:
    """Per-class IoU, mIoU and boundary mIoU of one ``HxW`` label map against the truth."""
    whole, band = ConfusionMatrix(), ConfusionMatrix()
    whole.add(pred, truth)
    band.add(pred, truth, boundary_band(truth))
    per_class = {
        name: None if np.isnan(v) else round(float(v), 4)
        for name, v in zip(CLASS_NAMES, whole.iou, strict=True)
    }
    return ImageScore(per_class, round(whole.mean_iou, 4), round(band.mean_iou, 4))
