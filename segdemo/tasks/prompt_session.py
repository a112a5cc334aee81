"""One user's prompts on one image, and the transitions a user makes: click, undo, clear,
choose a mask, change model.

The prompts, in the original image's pixels, are the truth; each carries the mask step the
model returned for it. A transition returns a new ``PromptSession`` and leaves the old one as
it was, and it returns only after its model call succeeded: a call that raises leaves the
caller holding the session from before, with prompts and masks in step.

Replaying the prompts (``replay``) gives the same masks as clicking them one by one, because
both fold ``click`` over the prompts, feeding each step's chosen mask back to the next.

A prompt is a JSON object, the form the page and ``/prompt_segment`` send:
``{"kind": "point", "x": 120.0, "y": 80.0, "label": 1}`` or
``{"kind": "box", "box": [x0, y0, x1, y1]}``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from segdemo.imaging import PreparedImage
from segdemo.tasks.prompted import CACHE, EmbeddingCache, PromptError, PromptResult, segment

MAX_PROMPTS = 64  # per image: the masks kept for "undo" stay few


@dataclass(frozen=True)
class Step:
    """The model's answer to the prompts up to one prompt.

    masks: ``CxHxW bool`` at the working size; scores: ``C``; feedback: one value per mask;
    chosen: the mask shown (and fed back next); seconds: the model call's time.
    """

    masks: np.ndarray
    scores: tuple[float, ...]
    feedback: tuple[Any, ...]
    chosen: int
    seconds: float

    @property
    def mask(self) -> np.ndarray:
        return self.masks[self.chosen]

    @classmethod
    def of(cls, result: PromptResult) -> Step:
        return cls(
            result.working_masks,
            tuple(float(s) for s in result.scores),
            result.feedback,
            result.best,
            result.predict_seconds,
        )


@dataclass(frozen=True)
class PromptSession:
    """``prompts`` (JSON-able dicts, original pixels) and one ``Step`` per prompt."""

    model: str
    prompts: tuple[dict, ...] = ()
    steps: tuple[Step, ...] = ()

    @property
    def current(self) -> Step | None:
        return self.steps[-1] if self.steps else None

    def points(self) -> list[list[float]]:
        """``[[x, y, label], ...]`` of every point prompt, original pixels."""
        return [[p["x"], p["y"], p["label"]] for p in self.prompts if p["kind"] == "point"]

    def box(self) -> list[float] | None:
        """The latest box: a new box replaces the one before, as SAM takes one box."""
        boxes = [p["box"] for p in self.prompts if p["kind"] == "box"]
        return boxes[-1] if boxes else None

    def to_json(self) -> str:
        return json.dumps(list(self.prompts))


def point(x: float, y: float, positive: bool) -> dict:
    return {"kind": "point", "x": float(x), "y": float(y), "label": int(positive)}


def box(x0: float, y0: float, x1: float, y1: float) -> dict:
    return {"kind": "box", "box": [min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)]}


def click(
    session: PromptSession,
    prepared: PreparedImage,
    prompt: dict,
    key: Hashable,
    multimask: bool = True,
    cache: EmbeddingCache = CACHE,
) -> PromptSession:
    """``session`` with ``prompt`` added and the model's answer to all prompts so far.

    The current chosen mask's feedback goes back to the model. A lone first point asks for
    several masks where the model can give them (``multimask``), as SAM's interactive use does.
    """
    if len(session.prompts) >= MAX_PROMPTS:
        raise PromptError(f"That is {MAX_PROMPTS} prompts already: clear them and start again.")
    prompts = (*session.prompts, prompt)
    trial = replace(session, prompts=prompts)
    previous = session.current
    result = segment(
        prepared,
        trial.points(),
        trial.box(),
        session.model,
        multimask and len(prompts) == 1 and prompt["kind"] == "point",
        key,
        feedback=None if previous is None else previous.feedback[previous.chosen],
        cache=cache,
    )
    return replace(trial, steps=(*session.steps, Step.of(result)))


def replay(
    prepared: PreparedImage,
    prompts: Iterable[dict],
    model: str,
    key: Hashable,
    multimask: bool = True,
    cache: EmbeddingCache = CACHE,
) -> PromptSession:
    """The session that clicking ``prompts`` one by one with ``model`` would give."""
    session = PromptSession(model)
    for prompt in prompts:
        session = click(session, prepared, prompt, key, multimask, cache)
    return session


def undo(session: PromptSession) -> PromptSession:
    """The session before its last prompt (no model call: each step keeps its own mask)."""
    return replace(session, prompts=session.prompts[:-1], steps=session.steps[:-1])


def clear(session: PromptSession) -> PromptSession:
    return PromptSession(session.model)


def choose(session: PromptSession, index: int) -> PromptSession:
    """Show mask ``index`` of the current step (and feed it back with the next prompt)."""
    current = session.current
    if current is None or not 0 <= index < len(current.masks):
        raise PromptError("There is no such mask to choose: click on the image first.")
    return replace(session, steps=(*session.steps[:-1], replace(current, chosen=int(index))))


def change_model(
    session: PromptSession,
    prepared: PreparedImage,
    model: str,
    key: Hashable,
    cache: EmbeddingCache = CACHE,
) -> PromptSession:
    """The same prompts answered by ``model``: replayed, so that every step (and so every
    undo) shows that model's masks."""
    return replay(prepared, session.prompts, model, key, cache=cache)


def _parse(text: str, what: str):
    text = (text or "").strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise PromptError(f"{what} is not valid JSON ({err.msg}): {text[:60]}") from err


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _checked_point(p, size: tuple[int, int]) -> dict:
    h, w = size
    if not (isinstance(p, list) and len(p) == 3 and all(_is_number(v) for v in p)):
        raise PromptError("points must be a JSON list of [x, y, label], e.g. [[120, 80, 1]]")
    x, y, label = p
    if not (math.isfinite(x) and math.isfinite(y)):
        raise PromptError(f"point ({x}, {y}) has a coordinate that is not a number")
    if label not in (0, 1):
        raise PromptError(f"a point's label is 1 (positive) or 0 (negative), not {label}")
    if not (0 <= x < w and 0 <= y < h):
        raise PromptError(f"point ({x}, {y}) lies outside the {w}×{h} image")
    return point(x, y, label == 1)


def _checked_box(b, size: tuple[int, int]) -> dict:
    h, w = size
    if not (isinstance(b, list) and len(b) == 4 and all(_is_number(v) for v in b)):
        raise PromptError("box must be a JSON list [x0, y0, x1, y1], or empty")
    if not all(math.isfinite(v) for v in b):
        raise PromptError(f"box {b} has a coordinate that is not a number")
    if min(b) < 0 or max(b[0], b[2]) > w or max(b[1], b[3]) > h:
        raise PromptError(f"box {b} reaches outside the {w}×{h} image")
    if b[0] == b[2] or b[1] == b[3]:
        raise PromptError(f"box {b} has no area: give two opposite corners")
    return box(*b)  # corners may come in any order (a box dragged up or to the left)


def _checked_prompt(p, size: tuple[int, int]) -> dict:
    if p.get("kind") == "point":
        return _checked_point([p.get("x"), p.get("y"), p.get("label")], size)
    if p.get("kind") == "box":
        return _checked_box(p.get("box"), size)
    raise PromptError(f'a prompt object has "kind" "point" or "box", not {p.get("kind")!r}')


def parse_prompts(points_json: str, box_json: str, size: tuple[int, int]) -> list[dict]:
    """Validated prompts, in the order they are to be clicked, from the API's two fields.

    ``points_json``: ``[[x, y, label], ...]`` (label 1 positive, 0 negative), or the session's
    own form, a list of prompt objects in click order (``PromptSession.to_json``).
    ``box_json``: ``[x0, y0, x1, y1]`` or empty; a box given here comes first, as a user draws
    a box and then corrects it with clicks. Coordinates are original pixels, ``size`` is
    ``(height, width)``.
    """
    points = _parse(points_json, "points") or []
    if not isinstance(points, list):
        raise PromptError("points must be a JSON list of [x, y, label], e.g. [[120, 80, 1]]")
    prompts = [
        _checked_prompt(p, size) if isinstance(p, dict) else _checked_point(p, size) for p in points
    ]
    given_box = _parse(box_json, "box")
    if given_box is not None:
        prompts.insert(0, _checked_box(given_box, size))
    if not prompts:
        raise PromptError("Give at least one point or a box.")
    return prompts
