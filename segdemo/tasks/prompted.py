"""Prompted segmentation with SAM-style models: one embedding per image, a mask per click.

The expensive step, the image embedding, runs once per (session, model, image) and is kept in
a small bounded cache; every click then costs only the prompt encoder and the mask decoder.
The models themselves are shared read-only by all users. ``SamPredictor`` keeps the current
image's features on the instance, so one predictor is never shared between requests: each
request wraps the cached, read-only tensors in a fresh, cheap predictor.

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

import numpy as np
import torch
from segment_anything import SamAutomaticMaskGenerator, SamPredictor
from segment_anything.modeling import Sam

from segdemo.clicks import Click, Predict
from segdemo.imaging import PreparedImage
from segdemo.registry import load_model


class PromptError(ValueError):
    """The prompts cannot be used (none given, malformed, outside the image); says why."""


@dataclass(frozen=True)
class Embedding:
    """A cached image embedding: what ``SamPredictor.set_image`` computes, and nothing else.

    features: ``1x256xGxG float32`` (G = img_size / 16), never written to after creation.
    input_size: ``(h, w)`` of the resized image inside the model's square input.
    original_size: ``(h, w)`` of the image that was embedded (the working-size image).
    """

    features: torch.Tensor
    input_size: tuple[int, int]
    original_size: tuple[int, int]
    seconds: float


class EmbeddingCache:
    """A thread-safe LRU cache of embeddings keyed by ``(session, model, image digest)``.

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


@torch.no_grad()
def compute_embedding(model: Sam, pixels: np.ndarray) -> Embedding:
    """Embed an ``HxWx3 uint8`` RGB image (resized so its long side is ``img_size``)."""
    began = time.perf_counter()
    predictor = SamPredictor(model)
    predictor.set_image(pixels)
    return Embedding(
        predictor.features,
        tuple(predictor.input_size),
        tuple(predictor.original_size),
        time.perf_counter() - began,
    )


def predictor_for(model: Sam, embedding: Embedding) -> SamPredictor:
    """A fresh ``SamPredictor`` around a cached embedding, as if ``set_image`` had just run."""
    predictor = SamPredictor(model)
    predictor.features = embedding.features
    predictor.input_size = embedding.input_size
    predictor.original_size = embedding.original_size
    predictor.is_image_set = True
    return predictor


def embed(
    prepared: PreparedImage, model_name: str, session: Hashable, cache: EmbeddingCache = CACHE
) -> Embedding:
    """The embedding of ``prepared`` for ``model_name``, computed once per session and image."""
    key = (session, model_name, prepared.digest)
    cached = cache.get(key)
    if cached is None:
        cached = compute_embedding(load_model(model_name, task="prompted"), prepared.pixels)
        cache.put(key, cached)
    return cached


@dataclass(frozen=True)
class PromptResult:
    """Masks for one set of prompts.

    masks: ``CxHxW bool`` at the original image size (C = 3 for multimask, else 1).
    working_masks: ``CxhxW bool`` at the working size, for drawing on the working image.
    scores: ``C float32``, the model's predicted IoU of each mask.
    low_res_logits: ``Cx(S/4)x(S/4) float32``, to feed back as the next click's mask prompt.
    best: index of the highest-scoring mask.
    embed_seconds: time spent embedding (0 when the cached embedding was used).
    predict_seconds: time spent on prompts, decoding and resizing the masks.
    """

    masks: np.ndarray
    working_masks: np.ndarray
    scores: np.ndarray
    low_res_logits: np.ndarray
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


def _prompt_arrays(prepared: PreparedImage, points, box):
    """Original-pixel points ``Nx3`` (x, y, label) and box (x0, y0, x1, y1) -> working pixels."""
    coords = labels = box_working = None
    points = np.asarray(points if points is not None else [], np.float64).reshape(-1, 3)
    if len(points):
        coords = prepared.to_working(points[:, :2])
        labels = points[:, 2].astype(np.int64)
    if box is not None and len(box):
        corners = prepared.to_working(np.asarray(box, np.float64).reshape(2, 2))
        x0, x1 = sorted(corners[:, 0])
        y0, y1 = sorted(corners[:, 1])
        box_working = np.array([x0, y0, x1, y1])
    return coords, labels, box_working


def segment(
    prepared: PreparedImage,
    points,
    box,
    model_name: str,
    multimask: bool,
    session: Hashable,
    mask_input: np.ndarray | None = None,
    cache: EmbeddingCache = CACHE,
) -> PromptResult:
    """Masks for ``points`` (``[[x, y, label], ...]``, label 1 positive / 0 negative) and/or a
    ``box`` ``[x0, y0, x1, y1]``, both in original pixels. ``mask_input``: the previous low-res
    logits (``(S/4)x(S/4)``) of the chosen mask, as SAM's interactive loop feeds them back.
    Raises PromptError when there is no prompt at all.
    """
    coords, labels, box_working = _prompt_arrays(prepared, points, box)
    if coords is None and box_working is None:
        raise PromptError("Add a point or a box first: the model needs at least one prompt.")
    cached = cache.get((session, model_name, prepared.digest))
    embedding = embed(prepared, model_name, session, cache)
    began = time.perf_counter()
    predictor = predictor_for(load_model(model_name, task="prompted"), embedding)
    working, scores, logits = predictor.predict(
        coords,
        labels,
        box_working,
        None if mask_input is None else np.asarray(mask_input, np.float32)[None],
        multimask_output=multimask,
    )
    working = respect_clicks(working, coords, labels)
    masks = np.stack([prepared.mask_to_original(m) for m in working])
    return PromptResult(
        masks=masks,
        working_masks=working,
        scores=scores.astype(np.float32),
        low_res_logits=logits.astype(np.float32),
        best=int(np.argmax(scores)),
        embed_seconds=0.0 if cached is not None else embedding.seconds,
        predict_seconds=time.perf_counter() - began,
    )


@dataclass(frozen=True)
class EverythingResult:
    """Masks of ``SamAutomaticMaskGenerator``, largest first, at the working size."""

    masks: list[np.ndarray]  # each HxW bool
    scores: list[float]  # predicted IoU of each
    seconds: float
    best_candidate: float  # highest predicted IoU of any mask decoded, kept or not


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
    """Prompt the model with a grid of points and keep the confident, stable, distinct masks.

    ``progress(fraction)`` is called after each batch of points. The image's cached embedding
    is reused: the generator's own ``set_image`` is replaced on its private predictor, which
    is valid because it runs on the whole image (no crops).
    """
    began = time.perf_counter()
    model = load_model(model_name, task="prompted")
    embedding = embed(prepared, model_name, session, cache)
    batch = 16  # masks of a batch are decoded at the working size: keep memory small
    generator = SamAutomaticMaskGenerator(
        model,
        points_per_side=points_per_side,
        points_per_batch=batch,
        pred_iou_thresh=EVERYTHING_MIN_IOU,
        stability_score_thresh=EVERYTHING_MIN_STABILITY,
        crop_n_layers=0,
    )
    cached = predictor_for(model, embedding)
    predictor = generator.predictor

    def set_image(image: np.ndarray, image_format: str = "RGB") -> None:
        predictor.features = cached.features
        predictor.input_size, predictor.original_size = cached.input_size, cached.original_size
        predictor.is_image_set = True

    predictor.set_image = set_image
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
    records.sort(key=lambda r: r["area"], reverse=True)
    return EverythingResult(
        masks=[r["segmentation"] for r in records],
        scores=[float(r["predicted_iou"]) for r in records],
        seconds=time.perf_counter() - began,
        best_candidate=best[0],
    )


def protocol_predictor(predictor: SamPredictor) -> Predict:
    """Adapt a predictor with its image set to ``clicks.click_curve``'s ``predict``.

    The first click asks for three masks and keeps the one with the highest predicted IoU;
    later clicks ask for one mask and get the previous low-res logits as the mask prompt —
    SAM's interactive use. Clicked pixels keep their label (``respect_clicks``), as in the app.
    """

    def predict(clicks: list[Click], logits: np.ndarray | None):
        coords = np.array([[c.x, c.y] for c in clicks], np.float64)
        labels = np.array([c.label for c in clicks], np.int64)
        masks, scores, low_res = predictor.predict(
            coords,
            labels,
            mask_input=None if logits is None else logits[None],
            multimask_output=len(clicks) == 1,
        )
        best = int(np.argmax(scores))
        return respect_clicks(masks[best], coords, labels), low_res[best]

    return predict
