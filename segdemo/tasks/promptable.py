"""One small interface for every promptable model, whichever way it lets the clicks in.

- Late fusion (SAM, ``sam_tiny``; ``tasks.sam_prompter``): ``prepare`` embeds the image once
  (the heavy encoder); ``predict`` runs only the prompt encoder and mask decoder. Feedback is
  the chosen mask's low-resolution logits, SAM's mask prompt.
- Early fusion (``click_net``; ``tasks.click_model``): ``prepare`` only normalises the image;
  ``predict`` runs the whole network on a zoom-in crop with the clicks and the previous mask as
  input channels. Feedback is the previous full-size probability map.

The prompt session, evaluation, the benchmark and "segment everything" reach a prompter through
``tasks.prompted`` (``prompter_for``, ``prepare``, ``propose``), which applies the rules every
caller shares, the refinement on the photo (``tasks.refine``) among them. Coordinates are
the working image's pixels (``segdemo.prompts``); masks are ``CxHxW bool`` at the working
size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from segdemo.prompts import Prompts


@dataclass(frozen=True)
class Prediction:
    """``masks`` ``CxHxW bool``; ``scores`` ``C float32`` (the model's estimate of each mask's
    IoU); ``feedback`` one opaque value per mask, handed back with the next prompt when that
    mask is the chosen one; ``probabilities`` ``CxHxW float32`` in [0, 1], the model's belief
    behind each mask where it has one (the refinement's soft prior)."""

    masks: np.ndarray
    scores: np.ndarray
    feedback: tuple[Any, ...]
    probabilities: np.ndarray | None = None

    @property
    def best(self) -> int:
        return int(np.argmax(self.scores))


@dataclass(frozen=True)
class ImageState:
    """What a prompter keeps per image (read-only once made), and how long making it took."""

    value: Any
    seconds: float


class Prompter(Protocol):
    """A promptable model: per image ``prepare``, per prompt ``predict``."""

    design: str  # "late fusion", "early fusion" or "classical", for the tab's explanation
    multimask: bool  # whether a single click can give several candidate masks

    def prepare(self, pixels: np.ndarray) -> ImageState:
        """``HxWx3 uint8`` RGB working image -> its per-image state."""

    def predict(
        self,
        image: ImageState,
        prompts: Prompts,
        feedback: Any | None,
        multimask: bool,
        early: Callable[[np.ndarray], None] | None = None,
    ) -> Prediction:
        """Masks for ``prompts`` given the previous chosen mask's ``feedback`` (None at first).
        ``early``: a prompter that knows the mask it will rank first (``HxW bool``) before it
        has computed the others may hand it over at once (the page's draft); one that does
        not leaves that to its caller."""

    def shown(self, feedback: Any, mask: np.ndarray) -> Any:
        """The feedback to hand back when ``mask`` (``HxW bool``, refined on the photo) is
        shown in place of the model's own mask, whose feedback is ``feedback``."""
