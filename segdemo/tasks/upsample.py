"""Transposed convolution vs bilinear upsampling: predictions, checkerboard score, shape arithmetic.

The checkerboard score is the share of a logit map's spectral energy (mean removed) that lies
at the frequencies of a pattern repeating every ``period`` pixels in both directions: the
``period²-1`` non-zero multiples of ``1/period`` cycles per pixel. The decoders upsample by 2
twice, so ``period = 4`` catches artifacts from both stages. For a map with no periodic
structure the share is about ``(period²-1) / (H·W)``, which rounds to zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from segdemo.models.upsampling import DOWNSAMPLING
from segdemo.registry import load_model
from segdemo.tasks.common import run_on_pixels, sigmoid

UPSAMPLING_MODELS = ("upsample_transposed", "upsample_bilinear")


@dataclass(frozen=True)
class UpsampleResult:
    logits: np.ndarray  # HxW float32
    probability: np.ndarray  # HxW float32 in [0, 1]
    checkerboard: float  # share of non-DC spectral energy at the stride's frequencies, 0..1

    @property
    def mask(self) -> np.ndarray:
        return self.probability >= 0.5


@torch.no_grad()
def predict(name: str, pixels: np.ndarray, model: torch.nn.Module | None = None) -> UpsampleResult:
    """Run one upsampling net (the shipped ``name``, or ``model``) on ``HxWx3 uint8`` pixels."""
    logits = run_on_pixels(model if model is not None else load_model(name), pixels)
    return UpsampleResult(logits, sigmoid(logits).astype(np.float32), checkerboard_score(logits))


def upsample_compare(pixels: np.ndarray) -> dict[str, UpsampleResult]:
    """Both upsampling nets on the same image, keyed by model name."""
    return {name: predict(name, pixels) for name in UPSAMPLING_MODELS}


def _periodic_energy(logits: np.ndarray, period: int) -> tuple[float, float]:
    """(energy at the ``period``-periodic frequencies, all non-DC energy) of a mean-removed map."""
    h, w = (s - s % period for s in logits.shape)
    if h == 0 or w == 0:
        return 0.0, 0.0
    x = np.clip(logits[:h, :w].astype(np.float64), -20, 20)  # saturated logits swamp the rest
    power = np.abs(np.fft.fft2(x - x.mean())) ** 2
    periodic = power[:: h // period, :: w // period].sum() - power[0, 0]
    return float(periodic), float(power.sum() - power[0, 0])


def checkerboard_score(logits: np.ndarray, period: int = DOWNSAMPLING) -> float:
    """Share (0..1) of the map's non-DC energy at frequencies that repeat every ``period`` px."""
    periodic, total = _periodic_energy(logits, period)
    return periodic / total if total > 0 else 0.0


def worst_checkerboard_window(logits: np.ndarray, side: int = 32) -> tuple[int, int]:
    """Top-left ``(y, x)`` of the ``side×side`` window with the most periodic energy.

    Absolute energy, not its share: the pattern is easiest to see where it is strongest,
    typically along object boundaries, where the decoder's output changes fastest.
    """
    h, w = logits.shape
    if h <= side or w <= side:
        return 0, 0
    best, best_at = -1.0, (0, 0)
    for y in range(0, h - side + 1, side // 2):
        for x in range(0, w - side + 1, side // 2):
            periodic, _ = _periodic_energy(logits[y : y + side, x : x + side], DOWNSAMPLING)
            if periodic > best:
                best, best_at = periodic, (y, x)
    return best_at


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """``output = conv(input, kernel, stride)``: ``⌊(n + 2p - k) / s⌋ + 1``."""
    return (size + 2 * padding - kernel) // stride + 1


def conv_transpose_output_size(
    size: int, kernel: int, stride: int, padding: int, output_padding: int = 0
) -> int:
    """``input = conv_trans(output, kernel, stride)``: ``(n - 1)·s - 2p + k + output_padding``."""
    return (size - 1) * stride - 2 * padding + kernel + output_padding


@dataclass(frozen=True)
class ConvMatrixExample:
    """A convolution written as a matrix, and its transpose as the transposed convolution."""

    image: np.ndarray  # n×n input
    kernel: np.ndarray  # k×k
    matrix: np.ndarray  # (m·m)×(n·n): row r holds the kernel placed at output position r
    output: np.ndarray  # m×m: conv(image) == (matrix @ image.ravel()).reshape(m, m)
    transposed: np.ndarray  # n×n: matrix.T @ output.ravel()
    torch_transposed: np.ndarray  # n×n: F.conv_transpose2d(output, kernel, stride)


def conv_matrix_example(size: int = 4, kernel_size: int = 3, stride: int = 1) -> ConvMatrixExample:
    """The lecture's worked example: transposed convolution is multiplication by Cᵀ."""
    image = np.arange(1, size * size + 1, dtype=np.float64).reshape(size, size)
    kernel = np.array([[1, 0, -1], [2, 1, 0], [0, 1, 2]], dtype=np.float64)[
        :kernel_size, :kernel_size
    ]
    out = conv_output_size(size, kernel_size, stride, 0)
    matrix = np.zeros((out * out, size * size))
    for i in range(out):
        for j in range(out):
            placed = np.zeros((size, size))
            y, x = i * stride, j * stride
            placed[y : y + kernel_size, x : x + kernel_size] = kernel
            matrix[i * out + j] = placed.ravel()
    output = (matrix @ image.ravel()).reshape(out, out)
    transposed = (matrix.T @ output.ravel()).reshape(size, size)
    extra = size - conv_transpose_output_size(out, kernel_size, stride, 0)
    reference = F.conv_transpose2d(
        torch.from_numpy(output)[None, None],
        torch.from_numpy(kernel)[None, None],
        stride=stride,
        output_padding=extra,
    )[0, 0].numpy()
    return ConvMatrixExample(image, kernel, matrix, output, transposed, reference)
