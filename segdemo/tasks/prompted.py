"""Prompted segmentation for any prompter: the rules every caller shares, and how model calls
of all users share the machine.

- ``prompter_for`` gives a registered model's prompter; the registry's spec says which kind.
- ``prepare`` and ``propose`` are the only ways to the model: each takes the model turn and
  runs on the model's own thread (``torch_threads``, like the models' loading), and ``propose``
  applies the rules of a prompted mask: a lone click asks for several masks where
  the model can give them (as SAM's interactive use does); given the photo, each proposal is
  refined on it (``tasks.refine``) and the mask shown goes back to the model; and every
  clicked disc keeps its label (``prompts.settle_clicks``).
- ``segment_everything`` prompts a grid of single points; ``protocol_predictor`` adapts a
  prompter to the click protocol of ``segdemo.clicks``.

Coordinates are the working image's pixels; masks are at the working size.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import numpy as np

from segdemo.clicks import Predict, iou
from segdemo.prompts import Click, PromptError, Prompts, reaching, settle_clicks
from segdemo.registry import get_spec, load_model
from segdemo.tasks.click_model import ClickPrompter
from segdemo.tasks.promptable import ImageState, Prediction, Prompter
from segdemo.tasks.refine import edge_contrast
from segdemo.tasks.refine_helper import refine_views
from segdemo.tasks.sam_prompter import EVERYTHING_MIN_IOU, SamPrompter
from segdemo.torch_threads import on_model_thread

T = TypeVar("T")

PROMPTERS: dict[str, Callable[[Any], Prompter]] = {"sam": SamPrompter, "click": ClickPrompter}

# Two CPU cores, and torch already spreads one model call over both: more calls at once only
# slow each one down, so every user's model calls (embeddings, clicks, grid prompts) take turns.
MODEL_TURN = threading.BoundedSemaphore(1)
TURN_WAIT = 5.0  # seconds a call waits for its turn before it is refused


class ServerBusy(PromptError):
    """A call waited too long for its turn; the message says to try again."""


@contextmanager
def waited(lock, seconds: float, refusal: str) -> Iterator[None]:
    """Hold ``lock``, waiting at most ``seconds``; then refuse with ``ServerBusy(refusal)``."""
    acquired = lock.acquire(timeout=seconds) if seconds > 0 else lock.acquire(blocking=False)
    if not acquired:
        raise ServerBusy(refusal)
    try:
        yield
    finally:
        lock.release()


def model_turn(wait: float | None = None):
    """The model's turn (a context manager): at most ``wait`` seconds (``TURN_WAIT`` by
    default; 0: only if free now), then ``ServerBusy``."""
    seconds = TURN_WAIT if wait is None else wait
    return waited(MODEL_TURN, seconds, "The server is busy with other users' clicks: click again.")


def in_model_turn(work: Callable[[], T], wait: float | None = None) -> T:
    """``work()`` in the model's turn (``model_turn(wait)``), on the model's own thread."""
    with model_turn(wait):
        return on_model_thread(work)


def prompter_for(model_name: str) -> Prompter:
    """The prompter of a registered prompted model (the model is loaded once and shared; a
    prompter is a stateless wrapper around it)."""
    model = on_model_thread(lambda: load_model(model_name, task="prompted"))
    return PROMPTERS[get_spec(model_name).prompter](model)


def prepare(prompter: Prompter, pixels: np.ndarray) -> ImageState:
    """``prompter.prepare`` in the model's turn."""
    return in_model_turn(lambda: prompter.prepare(pixels))


def propose(
    prompter: Prompter,
    image: ImageState,
    prompts: Prompts,
    feedback: Any | None = None,
    multimask: bool = True,
    wait: float | None = None,
    photo: np.ndarray | None = None,
    previous: np.ndarray | None = None,
    on_network: Callable[[np.ndarray], None] | None = None,
) -> Prediction:
    """Masks for ``prompts`` (``CxHxW bool``, clicked discs settled), in the model's turn.

    ``feedback``: the previous chosen mask's (``Prediction.feedback[k]``), None at first.
    ``multimask``: whether a lone click may get several masks. ``photo``: the working image
    (``HxWx3 uint8``) to refine each mask on, or None for the network's own masks;
    ``previous``: the mask shown before these prompts (``HxW bool``), or None.
    ``on_network``: called, when there is a photo, with the network's own mask (the one
    shown without the refinement) before the refinement starts. Raises PromptError when
    there is no prompt at all, ``ServerBusy`` when the turn does not come within ``wait``.
    """
    if prompts.empty:
        raise PromptError("Add a point or a box first: the model needs at least one prompt.")
    several = multimask and prompts.lone_click and prompter.multimask
    drafted = []  # True once the draft is out

    def draft(own: np.ndarray) -> None:
        drafted.append(True)
        on_network(settle_clicks(own[None], prompts.clicks)[0])

    wants_draft = photo is not None and on_network is not None

    def work() -> Prediction:
        prediction = prompter.predict(
            image, prompts, feedback, several, draft if wants_draft else None
        )
        if photo is not None:
            if wants_draft and not drafted:  # the prompter did not hand it over early
                draft(prediction.masks[prediction.best])
            prediction = refined(prompter, prediction, photo, prompts, previous)
        return prediction

    prediction = in_model_turn(work, wait)
    return replace(prediction, masks=settle_clicks(prediction.masks, prompts.clicks))


def refined(
    prompter: Prompter,
    prediction: Prediction,
    photo: np.ndarray,
    prompts: Prompts,
    previous: np.ndarray | None = None,
) -> Prediction:
    """Each of ``prediction``'s masks refined on ``photo`` (``tasks.refine``), the model's
    probabilities as its soft prior, and the feedback that hands the refined mask back.
    Several masks are refined at once on the two cores (``refine_helper``) and ranked by how
    well their outlines follow the photo's edges (``edge_contrast``)."""
    beliefs = prediction.probabilities
    if beliefs is None:
        beliefs = prediction.masks.astype(np.float32)
    masks = np.stack(refine_views(photo, beliefs, prompts.clicks, prompts.box, previous))
    feedback = tuple(map(prompter.shown, prediction.feedback, masks))
    scores = prediction.scores
    if len(masks) > 1:
        scores = edge_contrast(photo, masks)
    return replace(prediction, masks=masks, scores=scores, feedback=feedback)


@dataclass(frozen=True)
class EverythingResult:
    """The masks of "segment everything", largest first, at the working size."""

    masks: list[np.ndarray]  # each HxW bool
    scores: list[float]  # predicted IoU of each
    seconds: float
    best_candidate: float  # highest predicted IoU of any mask decoded, kept or not
    points: int  # point prompts tried


CLICK_GRID = 8  # a model without a generator of its own runs once per point: 8×8 clicks
GRID_MIN_AREA = 0.002  # masks smaller than this share of the image are dropped
GRID_DUPLICATE_IOU = 0.7  # a mask overlapping a better one this much is the same object


def segment_everything(
    prompter: Prompter,
    image: ImageState,
    pixels: np.ndarray,
    points_per_side: int = 16,
    progress: Callable[[float], None] | None = None,
    refine_on_photo: bool = True,
) -> EverythingResult:
    """Prompt the model with a grid of single points and keep the confident, distinct masks.

    A prompter with a generator of its own (``everything``, SAM's automatic mask generator,
    which also asks for stable masks) uses it; others click a grid (``grid_candidates``).
    With ``refine_on_photo`` every mask is refined on the photo (``pixels``, the working
    image) before masks of the same object are merged, so the kept masks are distinct as
    shown. ``progress(fraction)`` is called as the grid is worked through.
    """
    began = time.perf_counter()
    photo = pixels if refine_on_photo else None
    generator = getattr(prompter, "everything", None)
    if generator is not None:
        side = points_per_side
        masks, scores, best = generator(image, pixels, side, model_turn, progress)
        if photo is not None:
            masks = [_refined_alone(prompter, photo, mask) for mask in masks]
    else:
        side = min(points_per_side, CLICK_GRID)
        size = pixels.shape[:2]
        masks, scores, best = grid_candidates(prompter, image, size, side, progress, photo)
    kept = distinct(masks, scores, pixels.shape[:2])
    kept.sort(key=lambda pair: -pair[1].sum())  # largest first
    return EverythingResult(
        masks=[mask for _, mask in kept],
        scores=[score for score, _ in kept],
        seconds=time.perf_counter() - began,
        best_candidate=best,
        points=side**2,
    )


def _refined_alone(prompter: Prompter, photo: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A generated mask (no click of its own) refined on the photo, in a model turn of its
    own so other users' clicks go between them."""
    one = Prediction(mask[None], np.ones(1, np.float32), (None,))
    return in_model_turn(lambda: refined(prompter, one, photo, Prompts()).masks[0])


def grid_candidates(
    prompter: Prompter,
    image: ImageState,
    size: tuple[int, int],
    side: int = CLICK_GRID,
    progress: Callable[[float], None] | None = None,
    photo: np.ndarray | None = None,
) -> tuple[list[np.ndarray], list[float], float]:
    """One positive click at each point of a ``side × side`` grid, each a mask of its own
    (refined on ``photo`` when given). Each click takes its own model turn, so other users'
    clicks go between them.

    Returns ``(masks HxW bool, estimated IoUs, best estimated IoU)``.
    """
    h, w = size
    masks, scores = [], []
    for k, (x, y) in enumerate(_grid(side, w, h)):
        prompts = Prompts((Click(x, y, True),))
        prediction = propose(prompter, image, prompts, multimask=False, photo=photo)
        masks.append(prediction.masks[prediction.best])
        scores.append(float(prediction.scores[prediction.best]))
        if progress is not None:
            progress((k + 1) / side**2)
    return masks, scores, max(scores)


def distinct(
    masks: list[np.ndarray], scores: list[float], size: tuple[int, int]
) -> list[tuple[float, np.ndarray]]:
    """``(score, mask)`` of the masks worth showing: estimated IoU at least
    ``EVERYTHING_MIN_IOU``, not tiny, and of masks of the same object (IoU at least
    ``GRID_DUPLICATE_IOU``) only the best-scored one."""
    kept: list[tuple[float, np.ndarray]] = []
    for score, mask in sorted(zip(scores, masks, strict=True), key=lambda c: -c[0]):
        if score < EVERYTHING_MIN_IOU or mask.sum() < GRID_MIN_AREA * size[0] * size[1]:
            continue
        if all(iou(mask, other) < GRID_DUPLICATE_IOU for _, other in kept):
            kept.append((score, mask))
    return kept


def _grid(side: int, w: int, h: int) -> np.ndarray:
    """``side²`` points ``(x, y)`` at the centres of a regular grid over the image."""
    offsets = (np.arange(side) + 0.5) / side
    xs, ys = np.meshgrid(offsets * w, offsets * h)
    return np.stack([xs.ravel(), ys.ravel()], 1)


def protocol_predictor(
    prompter: Prompter, image: ImageState, photo: np.ndarray | None = None
) -> Predict:
    """Adapt a prompter with its image prepared to ``clicks.click_curve``'s ``predict``: the
    app's rules (``propose``, refined on ``photo`` when given, as the page does), the
    highest-scored mask kept, its feedback handed back, each click's disc fixed by the mask
    shown when it came (``prompts.reaching``)."""
    shown: list[np.ndarray | None] = [None]  # the mask before this click, as the page has it
    settled: list[Click] = []  # the clicks so far, their discs fixed

    def predict(clicks: list[Click], feedback):
        settled.extend(reaching(click, shown[0]) for click in clicks[len(settled) :])
        prompts = Prompts(tuple(settled))
        prediction = propose(prompter, image, prompts, feedback, photo=photo, previous=shown[0])
        best = prediction.best
        shown[0] = prediction.masks[best]
        return prediction.masks[best], prediction.feedback[best]

    return predict
