"""One small interface for every promptable model, whichever way it lets the clicks in.

- Late fusion (SAM, ``sam_tiny``): ``prepare`` embeds the image once (the heavy encoder);
  ``predict`` runs only the prompt encoder and mask decoder. Feedback is the chosen mask's
  low-resolution logits, SAM's mask prompt.
- Early fusion (``click_net``): ``prepare`` only normalises the image; ``predict`` runs the
  whole network on a zoom-in crop with the clicks and the previous mask as input channels.
  Feedback is the previous full-size probability map.

Everything above ``tasks/`` (the tab, ``/prompt_segment``, evaluation, benchmark, the image
cache) talks to a ``Prompter`` only. Coordinates here are the working image's pixels, points
as ``(x, y)``; masks are ``CxHxW bool`` at the working size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True)
class Prompts:
    """``points`` ``Nx2 float64`` (x, y), ``labels`` ``N int64`` (1 positive, 0 negative),
    ``box`` ``(x0, y0, x1, y1)`` or None; all in working pixels."""

    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    box: np.ndarray | None = None

    @property
    def empty(self) -> bool:
        return len(self.points) == 0 and self.box is None


@dataclass(frozen=True)
class Prediction:
    """``masks`` ``CxHxW bool``; ``scores`` ``C float32`` (the model's estimate of each mask's
    IoU); ``feedback`` one opaque value per mask, handed back with the next prompt when that
    mask is the chosen one."""

    masks: np.ndarray
    scores: np.ndarray
    feedback: tuple[Any, ...]

    @property
    def best(self) -> int:
        return int(np.argmax(self.scores))


@dataclass(frozen=True)
class PreparedState:
    """What a prompter keeps per image (read-only once made), and how long making it took."""

    value: Any
    seconds: float


class Prompter(Protocol):
    """A promptable model: per image ``prepare``, per prompt ``predict``."""

    design: str  # "late fusion" or "early fusion", for the tab's explanation
    multimask: bool  # whether a single click can give several candidate masks

    def prepare(self, pixels: np.ndarray) -> PreparedState:
        """``HxWx3 uint8`` RGB working image -> its per-image state."""

    def predict(
        self, image: PreparedState, prompts: Prompts, feedback: Any | None, multimask: bool
    ) -> Prediction:
        """Masks for ``prompts`` given the previous chosen mask's ``feedback`` (None at first)."""
