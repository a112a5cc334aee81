"""Segmentation metrics on numpy masks."""

from __future__ import annotations

import numpy as np


def iou(pred: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union of two boolean masks; 1.0 when both are empty."""
    pred, truth = np.asarray(pred, bool), np.asarray(truth, bool)
    union = np.logical_or(pred, truth).sum()
    return 1.0 if union == 0 else float(np.logical_and(pred, truth).sum() / union)


class PooledIoU:
    """Foreground IoU over a whole dataset: total intersection / total union."""

    def __init__(self) -> None:
        self.intersection = 0
        self.union = 0

    def add(self, pred: np.ndarray, truth: np.ndarray) -> None:
        pred, truth = np.asarray(pred, bool), np.asarray(truth, bool)
        self.intersection += int(np.logical_and(pred, truth).sum())
        self.union += int(np.logical_or(pred, truth).sum())

    @property
    def value(self) -> float:
        return 1.0 if self.union == 0 else self.intersection / self.union
