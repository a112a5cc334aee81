"""Prompted segmentation: per image something kept, per prompt a mask — for any prompter.

Two kinds of model sit behind one interface (``tasks.promptable``): SAM-style models embed the
image once and decode each prompt (``SamPrompter``, through ``SamPredictor``); the early-fusion
``click_net`` runs its whole network at every click on a zoom-in crop (``ClickPrompter``). What a
prompter keeps per image (an embedding, or the normalised image) is computed once per (session,
model, image) and held in a small bounded cache. Models are shared read-only by all users;
``SamPredictor`` keeps the current image on the instance, so each request wraps the cached,
read-only tensors in a fresh, cheap predictor.

Coordinates: points are ``(x, y, label)`` and boxes ``(x0, y0, x1, y1)`` in the ORIGINAL
image's pixels (the upload's, after EXIF orientation); masks come back at the original size.
Internally the model sees the working-size image of ``imaging.prepare_image``.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from segment_anything import SamAutomaticMaskGenerator, SamPredictor
from segment_anything.modeling import Sam

from segdemo.clicks import Click, Predict, iou
from segdemo.imaging import PreparedImage
from segdemo.models.click_net import ClickNet
from segdemo.registry import load_model
from segdemo.tasks.click_model import ClickPrompter
from segdemo.tasks.promptable import Prediction, PreparedState, Prompter, Prompts


class PromptError(ValueError):
    """The prompts cannot be used (none given, malformed, outside the image); says why."""


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
    """``Prompter`` for a ``Sam``: late fusion. Feedback is a mask's ``(S/4)x(S/4)`` logits."""

    design = "late fusion"
    multimask = True

    def __init__(self, model: Sam):
        self.model = model

    @torch.no_grad()
    def prepare(self, pixels: np.ndarray) -> PreparedState:
        began = time.perf_counter()
        predictor = SamPredictor(self.model)
        predictor.set_image(pixels)
        embedding = Embedding(
            predictor.features, tuple(predictor.input_size), tuple(predictor.original_size)
        )
        return PreparedState(embedding, time.perf_counter() - began)

    def predictor(self, image: PreparedState) -> SamPredictor:
        """A fresh ``SamPredictor`` around a cached embedding, as if ``set_image`` had run."""
        embedding: Embedding = image.value
        predictor = SamPredictor(self.model)
        predictor.features = embedding.features
        predictor.input_size = embedding.input_size
        predictor.original_size = embedding.original_size
        predictor.is_image_set = True
        return predictor

    def predict(
        self, image: PreparedState, prompts: Prompts, feedback, multimask: bool
    ) -> Prediction:
        masks, scores, logits = self.predictor(image).predict(
            prompts.points if len(prompts.points) else None,
            prompts.labels if len(prompts.points) else None,
            prompts.box,
            None if feedback is None else np.asarray(feedback, np.float32)[None],
            multimask_output=multimask,
        )
        return Prediction(masks, scores.astype(np.float32), tuple(logits.astype(np.float32)))


def prompter_for(model_name: str) -> Prompter:
    """The prompter of a registered prompted model (loaded once, shared; the prompter is a
    stateless wrapper, cheap to make per request)."""
    model = load_model(model_name, task="prompted")
    return ClickPrompter(model) if isinstance(model, ClickNet) else SamPrompter(model)


class EmbeddingCache:
    """A thread-safe LRU cache of per-image states (a SAM embedding, or the click model's
    normalised image) keyed by ``(session, model, image digest)``.

    Bounded in total (``max_entries``) and per session (``per_session``), so neither many
    users nor one user uploading many images can grow it. A session only ever reads its own
    keys: the session id is part of every key.
    """

    def __init__(self, max_entries: int = 8, per_session: int = 2):
        self.max_entries, self.per_session = max_entries, per_session
        self._entries: OrderedDict[tuple, Embedding] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple) -> Embedding | None:
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def put(self, key: tuple, value: Embedding) -> None:
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            mine = [k for k in self._entries if k[0] == key[0]]
            for old in mine[: max(0, len(mine) - self.per_session)]:
                del self._entries[old]
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def keys(self) -> list[tuple]:
        with self._lock:
            return list(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


CACHE = EmbeddingCache()  # the only module-level per-user state: keyed by session, bounded


def embed(
    prepared: PreparedImage, model_name: str, session: Hashable, cache: EmbeddingCache = CACHE
) -> PreparedState:
    """What ``model_name`` keeps for ``prepared``, computed once per session and image."""
    key = (session, model_name, prepared.digest)
    cached = cache.get(key)
    if cached is None:
        cached = prompter_for(model_name).prepare(prepared.pixels)
        cache.put(key, cached)
    return cached


@dataclass(frozen=True)
class PromptResult:
    """Masks for one set of prompts.

    masks: ``CxHxW bool`` at the original image size (C = 3 for SAM's multimask, else 1).
    working_masks: ``CxhxW bool`` at the working size, for drawing on the working image.
    scores: ``C float32``, the model's own estimate of each mask's IoU.
    feedback: per mask, what goes back to the model with the next prompt (opaque).
    best: index of the highest-scoring mask.
    embed_seconds: time spent preparing the image (0 when the cached state was used).
    predict_seconds: time spent on the prompts, the model and resizing the masks.
    """

    masks: np.ndarray
    working_masks: np.ndarray
    scores: np.ndarray
    feedback: tuple[Any, ...]
    best: int
    embed_seconds: float
    predict_seconds: float


# A click settles the pixels under it, whatever the decoder returns: a disc of this radius
# (a share of the image's long side) around a positive click is in the mask, one around a
# negative click is out. That is how a user reads a click, and the promise f-BRS (Sofiiuk et
# al., 2020) keeps by optimisation; a weak decoder otherwise answers "remove this" by moving
# the mask elsewhere. Later clicks win where discs overlap. The low-resolution logits fed back
# with the next click stay the decoder's own.
CLICK_RADIUS = 0.015


def respect_clicks(masks: np.ndarray, coords, labels) -> np.ndarray:
    """``...xHxW bool`` masks with each click's disc set to its label (``coords`` ``Nx2``
    (x, y) in the masks' pixels, ``labels`` ``N``, 1 positive / 0 negative; None: no clicks)."""
    if coords is None or not len(coords):
        return masks
    h, w = masks.shape[-2:]
    radius = CLICK_RADIUS * max(h, w)
    settled = masks.copy()
    for (x, y), label in zip(coords, labels, strict=True):
        # Only the disc's bounding square is touched: a click costs microseconds, not a pass
        # over the whole image.
        top, left = max(0, int(y - radius)), max(0, int(x - radius))
        bottom, right = min(h, int(y + radius) + 1), min(w, int(x + radius) + 1)
        rows, cols = np.ogrid[top:bottom, left:right]
        disc = (cols - x) ** 2 + (rows - y) ** 2 <= radius**2
        window = settled[..., top:bottom, left:right]
        window[..., disc] = bool(label)
    return settled


def working_prompts(prepared: PreparedImage, points, box) -> Prompts:
    """Original-pixel points ``Nx3`` (x, y, label) and box (x0, y0, x1, y1) -> working pixels."""
    points = np.asarray(points if points is not None else [], np.float64).reshape(-1, 3)
    coords = prepared.to_working(points[:, :2]) if len(points) else np.zeros((0, 2))
    box_working = None
    if box is not None and len(box):
        corners = prepared.to_working(np.asarray(box, np.float64).reshape(2, 2))
        x0, x1 = sorted(corners[:, 0])
        y0, y1 = sorted(corners[:, 1])
        box_working = np.array([x0, y0, x1, y1])
    return Prompts(coords, points[:, 2].astype(np.int64), box_working)


def segment(
    prepared: PreparedImage,
    points,
    box,
    model_name: str,
    multimask: bool,
    session: Hashable,
    feedback: Any | None = None,
    cache: EmbeddingCache = CACHE,
) -> PromptResult:
    """Masks for ``points`` (``[[x, y, label], ...]``, label 1 positive / 0 negative) and/or a
    ``box`` ``[x0, y0, x1, y1]``, both in original pixels. ``feedback``: the previous chosen
    mask's feedback value (``PromptResult.feedback[best]``), as the interactive loop hands it
    back. Clicked spots keep their label (``respect_clicks``). Raises PromptError when there
    is no prompt at all.
    """
    prompts = working_prompts(prepared, points, box)
    if prompts.empty:
        raise PromptError("Add a point or a box first: the model needs at least one prompt.")
    cached = cache.get((session, model_name, prepared.digest))
    image = embed(prepared, model_name, session, cache)
    began = time.perf_counter()
    prediction = prompter_for(model_name).predict(image, prompts, feedback, multimask)
    working = respect_clicks(prediction.masks, prompts.points, prompts.labels)
    masks = np.stack([prepared.mask_to_original(m) for m in working])
    return PromptResult(
        masks=masks,
        working_masks=working,
        scores=prediction.scores,
        feedback=prediction.feedback,
        best=prediction.best,
        embed_seconds=0.0 if cached is not None else image.seconds,
        predict_seconds=time.perf_counter() - began,
    )


@dataclass(frozen=True)
class EverythingResult:
    """The masks of "segment everything", largest first, at the working size."""

    masks: list[np.ndarray]  # each HxW bool
    scores: list[float]  # predicted IoU of each
    seconds: float
    best_candidate: float  # highest predicted IoU of any mask decoded, kept or not
    points: int  # point prompts tried


# SamAutomaticMaskGenerator keeps a mask when its predicted IoU and its stability (IoU of the
# mask thresholded a little higher and lower) reach these.
EVERYTHING_MIN_IOU = 0.8
EVERYTHING_MIN_STABILITY = 0.9


def segment_everything(
    prepared: PreparedImage,
    model_name: str,
    session: Hashable,
    points_per_side: int = 16,
    progress: Callable[[float], None] | None = None,
    cache: EmbeddingCache = CACHE,
) -> EverythingResult:
    """Prompt the model with a grid of single points and keep the confident, distinct masks.

    SAM models go through ``SamAutomaticMaskGenerator`` (which also asks for stable masks);
    other prompters through ``grid_everything``. ``progress(fraction)`` is called as the grid
    is worked through. The image's cached state is reused.
    """
    began = time.perf_counter()
    prompter = prompter_for(model_name)
    image = embed(prepared, model_name, session, cache)
    side = (
        points_per_side if isinstance(prompter, SamPrompter) else min(points_per_side, CLICK_GRID)
    )
    if isinstance(prompter, SamPrompter):
        masks, scores, best = _sam_everything(prompter, image, prepared, side, progress)
    else:
        masks, scores, best = grid_everything(prompter, image, prepared.size, side, progress)
    order = np.argsort([-m.sum() for m in masks], kind="stable")  # largest first
    return EverythingResult(
        masks=[masks[k] for k in order],
        scores=[scores[k] for k in order],
        seconds=time.perf_counter() - began,
        best_candidate=best,
        points=side**2,
    )


def _sam_everything(prompter: SamPrompter, image, prepared, points_per_side, progress):
    """``SamAutomaticMaskGenerator`` on the cached embedding (its predictor's ``set_image``
    made a no-op, valid because it runs on the whole image, without crops)."""
    batch = 16  # masks of a batch are decoded at the working size: keep memory small
    generator = SamAutomaticMaskGenerator(
        prompter.model,
        points_per_side=points_per_side,
        points_per_batch=batch,
        pred_iou_thresh=EVERYTHING_MIN_IOU,
        stability_score_thresh=EVERYTHING_MIN_STABILITY,
        crop_n_layers=0,
    )
    # The generator's predictor becomes one around the cached embedding, whose image is set.
    predictor = generator.predictor = prompter.predictor(image)
    predictor.set_image = lambda pixels, image_format="RGB": None
    total, done, best = math.ceil(points_per_side**2 / batch), [0], [0.0]
    decode = predictor.predict_torch

    def counted(*args, **kwargs):
        result = decode(*args, **kwargs)  # (masks, predicted IoUs, low-res logits)
        best[0] = max(best[0], float(result[1].max()))
        done[0] += 1
        if progress is not None:
            progress(done[0] / total)
        return result

    predictor.predict_torch = counted
    with torch.no_grad():
        records = generator.generate(prepared.pixels)
    return (
        [r["segmentation"] for r in records],
        [float(r["predicted_iou"]) for r in records],
        best[0],
    )


CLICK_GRID = 8  # an early-fusion model runs once per grid point: 8×8 single clicks
GRID_MIN_AREA = 0.002  # masks smaller than this share of the image are dropped
GRID_DUPLICATE_IOU = 0.7  # a mask overlapping a better one this much is the same object


def grid_everything(
    prompter: Prompter,
    image: PreparedState,
    size: tuple[int, int],
    side: int = CLICK_GRID,
    progress: Callable[[float], None] | None = None,
) -> tuple[list[np.ndarray], list[float], float]:
    """One positive click at each point of a ``side × side`` grid, each a mask of its own;
    masks whose estimated IoU reaches ``EVERYTHING_MIN_IOU`` are kept, and of masks that are
    the same object (IoU ≥ ``GRID_DUPLICATE_IOU``) only the best-scored one.

    Returns ``(masks HxW bool, scores, best estimated IoU of any candidate)``.
    """
    h, w = size
    candidates = []
    for k, (x, y) in enumerate(_grid(side, w, h)):
        prompts = Prompts(np.array([[x, y]]), np.array([1]))
        prediction = prompter.predict(image, prompts, None, False)
        mask = respect_clicks(prediction.masks, prompts.points, prompts.labels)[prediction.best]
        candidates.append((float(prediction.scores[prediction.best]), mask))
        if progress is not None:
            progress((k + 1) / side**2)
    best = max(score for score, _ in candidates)
    kept: list[tuple[float, np.ndarray]] = []
    for score, mask in sorted(candidates, key=lambda c: -c[0]):
        if score < EVERYTHING_MIN_IOU or mask.sum() < GRID_MIN_AREA * h * w:
            continue
        if all(iou(mask, other) < GRID_DUPLICATE_IOU for _, other in kept):
            kept.append((score, mask))
    return [m for _, m in kept], [s for s, _ in kept], best


def _grid(side: int, w: int, h: int) -> np.ndarray:
    """``side²`` points ``(x, y)`` at the centres of a regular grid over the image."""
    offsets = (np.arange(side) + 0.5) / side
    xs, ys = np.meshgrid(offsets * w, offsets * h)
    return np.stack([xs.ravel(), ys.ravel()], 1)


def protocol_predictor(prompter: Prompter, image: PreparedState) -> Predict:
    """Adapt a prompter with its image prepared to ``clicks.click_curve``'s ``predict``.

    As in the app: a first single click asks for several masks (when the model gives them)
    and keeps the highest-scored; every later click gets the previous mask's feedback (SAM's
    low-res logits, the click model's probability map). Clicked pixels keep their label.
    """

    def predict(clicks: list[Click], feedback):
        prompts = Prompts(
            np.array([[c.x, c.y] for c in clicks], np.float64),
            np.array([c.label for c in clicks], np.int64),
        )
        prediction = prompter.predict(image, prompts, feedback, len(clicks) == 1)
        best = prediction.best
        mask = respect_clicks(prediction.masks[best], prompts.points, prompts.labels)
        return mask, prediction.feedback[best]

    return predict
