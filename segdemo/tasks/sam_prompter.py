"""Prompting a SAM-style model (SAM ViT-B/L/H, ``sam_tiny``): late fusion.

The image is embedded once (``prepare``, the heavy encoder); each prompt runs only SAM's prompt
encoder and mask decoder through ``SamPredictor``. Models are shared read-only by all users,
while ``SamPredictor`` keeps the current image on the instance, so each call wraps the image's
read-only embedding in a fresh, cheap predictor. Coordinates are the working image's pixels.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from segment_anything import SamAutomaticMaskGenerator, SamPredictor
from segment_anything.modeling import Sam

from segdemo.prompts import Prompts
from segdemo.tasks.promptable import ImageState, Prediction

# SamAutomaticMaskGenerator keeps a mask when its predicted IoU and its stability (IoU of the
# mask thresholded a little higher and lower) reach these.
EVERYTHING_MIN_IOU = 0.8
EVERYTHING_MIN_STABILITY = 0.9


@dataclass(frozen=True)
class Embedding:
    """A SAM image embedding: what ``SamPredictor.set_image`` computes, and nothing else.

    features: ``1x256xGxG float32`` (G = img_size / 16), never written to after creation.
    input_size: ``(h, w)`` of the resized image inside the model's square input.
    original_size: ``(h, w)`` of the image that was embedded (the working-size image).
    """

    features: torch.Tensor
    input_size: tuple[int, int]
    original_size: tuple[int, int]


class SamPrompter:
    """``Prompter`` for a ``Sam``. Feedback is a mask's ``(S/4)x(S/4)`` logits."""

    design = "late fusion"
    multimask = True

    def __init__(self, model: Sam):
        self.model = model

    @torch.no_grad()
    def prepare(self, pixels: np.ndarray) -> ImageState:
        began = time.perf_counter()
        predictor = SamPredictor(self.model)
        predictor.set_image(pixels)
        embedding = Embedding(
            predictor.features, tuple(predictor.input_size), tuple(predictor.original_size)
        )
        return ImageState(embedding, time.perf_counter() - began)

    def predictor(self, image: ImageState) -> SamPredictor:
        """A fresh ``SamPredictor`` around an image's embedding, as if ``set_image`` had run."""
        embedding: Embedding = image.value
        predictor = SamPredictor(self.model)
        predictor.features = embedding.features
        predictor.input_size = embedding.input_size
        predictor.original_size = embedding.original_size
        predictor.is_image_set = True
        return predictor

    def predict(
        self, image: ImageState, prompts: Prompts, feedback, multimask: bool, early=None
    ) -> Prediction:
        clicked = bool(prompts.clicks)
        upscaled, scores, logits = self.predictor(image).predict(
            prompts.points if clicked else None,
            prompts.labels if clicked else None,
            None if prompts.box is None else prompts.box.as_array(),
            None if feedback is None else np.asarray(feedback, np.float32)[None],
            multimask_output=multimask,
            return_logits=True,
        )
        return Prediction(
            upscaled > 0,  # what SamPredictor's masks are
            scores.astype(np.float32),
            tuple(logits.astype(np.float32)),
            1 / (1 + np.exp(-np.clip(upscaled, -30, 30))),
        )

    def shown(self, feedback, mask: np.ndarray):
        # SAM's mask prompt is its own low-resolution logits, the input its decoder was
        # trained on; a refined mask goes back as the logits it came from.
        return feedback

    def everything(
        self,
        image: ImageState,
        pixels: np.ndarray,
        points_per_side: int,
        turn: Callable[[], object],
        progress: Callable[[float], None] | None = None,
    ) -> tuple[list[np.ndarray], list[float], float]:
        """``SamAutomaticMaskGenerator`` on the image's embedding (its predictor's
        ``set_image`` made a no-op, valid because it runs on the whole image, without crops).
        Each batch of decodes takes a model turn (``turn()``, a context manager), so other
        users' clicks go between them. Returns ``(masks HxW bool, predicted IoUs, best
        predicted IoU of any mask decoded)``."""
        batch = 16  # masks of a batch are decoded at the working size: keep memory small
        generator = SamAutomaticMaskGenerator(
            self.model,
            points_per_side=points_per_side,
            points_per_batch=batch,
            pred_iou_thresh=EVERYTHING_MIN_IOU,
            stability_score_thresh=EVERYTHING_MIN_STABILITY,
            crop_n_layers=0,
        )
        predictor = generator.predictor = self.predictor(image)
        predictor.set_image = lambda pixels, image_format="RGB": None
        total, done, best = math.ceil(points_per_side**2 / batch), [0], [0.0]
        decode = predictor.predict_torch

        def counted(*args, **kwargs):
            with turn():
                result = decode(*args, **kwargs)  # (masks, predicted IoUs, low-res logits)
            best[0] = max(best[0], float(result[1].max()))
            done[0] += 1
            if progress is not None:
                progress(done[0] / total)
            return result

        predictor.predict_torch = counted
        with torch.no_grad():
            records = generator.generate(pixels)
        return (
            [r["segmentation"] for r in records],
            [float(r["predicted_iou"]) for r in records],
            best[0],
        )
