"""Segmentation as classification: slide the patch classifier over an image in one pass."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from segdemo.models.patch_classifier import PATCH, STRIDE, PatchClassifier
from segdemo.registry import load_model
from segdemo.tasks.common import run_on_pixels, sigmoid

# Output cell (i, j) classifies the window whose top-left pixel is (4i, 4j); its label came
# from the window's central 4×4 block, which starts 14 pixels in.
CENTRE_OFFSET = (PATCH - STRIDE) // 2


@dataclass(frozen=True)
class PatchSegmentation:
    probability_map: np.ndarray  # h'×w' float32 in [0, 1]: one value per 32×32 window
    probability: np.ndarray  # H×W float32 in [0, 1]: the map placed back on the image
    shape_note: str


@torch.no_grad()
def classify_segment(pixels: np.ndarray, model: PatchClassifier | None = None) -> PatchSegmentation:
    """``HxWx3 uint8`` (H, W >= 32) -> the classifier's low-resolution and full-size maps."""
    model = model if model is not None else load_model("patch_classifier")
    logits = run_on_pixels(model.to_fully_convolutional(), pixels)
    probability_map = sigmoid(logits).astype(np.float32)
    h, w = pixels.shape[:2]
    return PatchSegmentation(
        probability_map, place_on_image(probability_map, (h, w)), shape_note((h, w), logits.shape)
    )


def place_on_image(probability_map: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Upsample an ``h'×w'`` window map ×4 (bilinear) so each value sits on its window's centre."""
    h, w = size
    cells = torch.from_numpy(np.ascontiguousarray(probability_map))[None, None]
    up = torch.nn.functional.interpolate(cells, scale_factor=STRIDE, mode="bilinear")[0, 0].numpy()
    full = np.pad(up, ((CENTRE_OFFSET, max(0, h)), (CENTRE_OFFSET, max(0, w))), mode="edge")
    return full[:h, :w].astype(np.float32)


def shape_note(image_size: tuple[int, int], map_size: tuple[int, int]) -> str:
    (h, w), (mh, mw) = image_size, map_size
    return (
        f"{h}×{w} input → {mh}×{mw} output: two 2×2 poolings divide each side by {STRIDE}, and "
        f"the unpadded 3×3 convolutions and the 5×5 convolution that replaced the dense layer "
        f"trim the borders (a 32×32 window is needed for every output value)."
    )
