"""Conversions between numpy images and model tensors."""

from __future__ import annotations

import numpy as np
import torch


def to_tensor(pixels: np.ndarray) -> torch.Tensor:
    """``HxWx3 uint8`` -> ``1x3xHxW float32`` in [0, 1]."""
    array = np.array(pixels, dtype=np.uint8, copy=True)  # torch needs a writable buffer
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)


def batch_to_tensor(images: list[np.ndarray]) -> torch.Tensor:
    """``B`` images of the same ``HxWx3 uint8`` shape -> ``Bx3xHxW float32`` in [0, 1]."""
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(255.0)


@torch.no_grad()
def run_on_pixels(model: torch.nn.Module, pixels: np.ndarray) -> np.ndarray:
    """Apply an image-to-map model to ``HxWx3 uint8`` pixels; returns its ``HxW`` float output."""
    device = next(model.parameters()).device
    return model(to_tensor(pixels).to(device))[0, 0].float().cpu().numpy()


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(logits, -30, 30)))
