"""The prompt vocabulary: a click, a box, the prompts a model is given, and their one validator.

Every part of the prompted path speaks it: the page and ``/prompt_segment`` (through
``checked`` and ``parse_prompts``), the prompt session, the prompters, the click protocol and
the trainers. Coordinates are ``(x, y)`` pixels of whichever image the prompts are given on;
a pixel's centre is at ``+0.5``.

The rule, the same for the page and the API: a point lies on the image, ``0 <= x < width`` and
``0 <= y < height`` (the page keeps its pointer positions inside the picture); a box lies
within ``[0, width] x [0, height]`` and is at least ``MIN_BOX_SIDE`` pixels wide and tall.
Labels are 1 (positive) or 0 (negative), nothing else.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

MIN_BOX_SIDE = 2.0
# A click settles the pixels under it, whatever the model returns: a disc around a positive
# click is in the mask, one around a negative click out. That is how a user reads a click, and
# the promise f-BRS (Sofiiuk et al., 2020) keeps by optimisation; a weak model otherwise
# answers "remove this" by moving the mask. The disc's radius is this share of the image's long
# side, but no more than the click's distance to the edge of the mask shown when it was made
# (``reaching``): a correction next to that edge claims the sliver it lies in, not the far side
# of a thin object's outline, where a fixed disc would spill and no later click could mend it.
CLICK_RADIUS = 0.025
LEAST_RADIUS = 1.5  # pixels: the disc of a click right on the shown mask's edge


class PromptError(ValueError):
    """The prompts cannot be used (none given, malformed, outside the image); says why."""


@dataclass(frozen=True)
class Click:
    """A point prompt: ``(x, y)`` and whether it marks the object (positive) or not."""

    x: float
    y: float
    positive: bool
    # The settled disc's radius in pixels (None: ``CLICK_RADIUS`` of the long side). It is
    # fixed by the mask shown when the click is made (``reaching``), not part of what the
    # user clicked: the same point and label are the same click, as the JSON says.
    radius: float | None = field(default=None, compare=False)

    @property
    def label(self) -> int:
        return int(self.positive)

    def disc_radius(self, shape: tuple[int, int]) -> float:
        """The radius of the disc this click settles on an image of ``shape``, in pixels."""
        return CLICK_RADIUS * max(shape) if self.radius is None else self.radius


@dataclass(frozen=True)
class Box:
    """A box prompt, corners ordered: ``x0 <= x1``, ``y0 <= y1``."""

    x0: float
    y0: float
    x1: float
    y1: float

    @classmethod
    def spanning(cls, xa: float, ya: float, xb: float, yb: float) -> Box:
        """The box with opposite corners ``(xa, ya)`` and ``(xb, yb)``, in any order."""
        return cls(min(xa, xb), min(ya, yb), max(xa, xb), max(ya, yb))

    def as_array(self) -> np.ndarray:
        return np.array([self.x0, self.y0, self.x1, self.y1])

    def covers(self, shape: tuple[int, int]) -> np.ndarray:
        """``HxW bool``: the pixels of an image of ``shape`` that the box touches, the one rule
        of what "nothing outside the box" leaves in."""
        inside = np.zeros(shape, bool)
        rows = slice(max(0, int(self.y0)), int(np.ceil(self.y1)) + 1)
        inside[rows, max(0, int(self.x0)) : int(np.ceil(self.x1)) + 1] = True
        return inside


Prompt = Click | Box


def mapped(prompt: Prompt, transform: Callable[[np.ndarray], np.ndarray]) -> Prompt:
    """``prompt`` with its points passed through ``transform`` (``Nx2`` (x, y) -> ``Nx2``),
    e.g. ``PreparedImage.to_working``: the one way prompts change frame.

    Coordinates are rounded to a millionth of a pixel, so that a round trip (working ->
    original -> working, as the JSON box and ``/prompt_segment`` make it) gives back the very
    values the page sent: a box edge at 199.99999999999997 instead of 200 covers another row
    of pixels, and the mask refined on the photo can follow that row."""
    if isinstance(prompt, Click):
        ((x, y),) = np.round(transform(np.array([[prompt.x, prompt.y]], np.float64)), 6)
        return Click(float(x), float(y), prompt.positive)  # the radius belongs to its frame
    (xa, ya), (xb, yb) = np.round(transform(prompt.as_array().reshape(2, 2)), 6)
    return Box.spanning(float(xa), float(ya), float(xb), float(yb))


@dataclass(frozen=True)
class Prompts:
    """What a prompter is given: every click so far, in order, and the latest box (a new box
    replaces the one before, as SAM takes one box)."""

    clicks: tuple[Click, ...] = ()
    box: Box | None = None

    @classmethod
    def of(cls, prompts: Iterable[Prompt]) -> Prompts:
        prompts = list(prompts)
        boxes = [p for p in prompts if isinstance(p, Box)]
        clicks = tuple(p for p in prompts if isinstance(p, Click))
        return cls(clicks, boxes[-1] if boxes else None)

    @property
    def empty(self) -> bool:
        return not self.clicks and self.box is None

    @property
    def lone_click(self) -> bool:
        """A single click and nothing else: the prompt for which SAM offers several masks."""
        return len(self.clicks) == 1 and self.box is None

    @property
    def points(self) -> np.ndarray:
        """``Nx2 float64`` (x, y)."""
        return np.array([[c.x, c.y] for c in self.clicks], np.float64).reshape(-1, 2)

    @property
    def labels(self) -> np.ndarray:
        """``N int64``, 1 positive, 0 negative."""
        return np.array([c.label for c in self.clicks], np.int64)


def disc(shape: tuple[int, int], x: float, y: float, radius: float):
    """The pixels of an ``HxW`` image within ``radius`` of ``(x, y)``: ``(rows, cols)`` slices
    of the disc's bounding square and the ``bool`` disc inside it, or None when the disc misses
    the image. Only the square is touched, so a click costs microseconds, not a pass over the
    image."""
    h, w = shape
    top, left = max(0, int(y - radius)), max(0, int(x - radius))
    bottom, right = min(h, int(y + radius) + 2), min(w, int(x + radius) + 2)
    if top >= bottom or left >= right:
        return None
    rows, cols = np.ogrid[top:bottom, left:right]
    return (slice(top, bottom), slice(left, right)), (cols - x) ** 2 + (rows - y) ** 2 <= radius**2


def reaching(click: Click, shown: np.ndarray | None) -> Click:
    """``click`` with the radius of the disc it settles fixed by ``shown`` (``HxW bool``), the
    mask on screen when it was made (None: none yet): ``CLICK_RADIUS`` of the long side, but
    no farther than the nearest pixel that ``shown`` labels otherwise than the one clicked,
    and at least ``LEAST_RADIUS``."""
    full = Click(click.x, click.y, click.positive)
    if shown is None:
        return full
    radius = full.disc_radius(shown.shape)
    found = disc(shown.shape, click.x, click.y, radius)
    if found is not None:
        (rows, cols), inside = found
        h, w = shown.shape
        clicked = shown[min(int(click.y), h - 1), min(int(click.x), w - 1)]
        other = inside & (shown[rows, cols] != clicked)
        if other.any():
            ys, xs = np.nonzero(other)
            nearest = np.hypot(xs + cols.start - click.x, ys + rows.start - click.y).min()
            radius = max(LEAST_RADIUS, min(radius, float(nearest)))
    return Click(click.x, click.y, click.positive, radius)


def settle_clicks(masks: np.ndarray, clicks: Iterable[Click]) -> np.ndarray:
    """``...xHxW bool`` masks with each click's disc (``Click.disc_radius``) set to its label;
    later clicks win where discs overlap."""
    settled = masks.copy()
    for click in clicks:
        found = disc(masks.shape[-2:], click.x, click.y, click.disc_radius(masks.shape[-2:]))
        if found is not None:
            (rows, cols), inside = found
            settled[..., rows, cols][..., inside] = click.positive
    return settled


# The validator: JSON values (the page's and the API's) -> prompts, or a PromptError that says
# what is wrong. ``size`` is ``(height, width)`` of the image the coordinates are given on.


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _finite(value) -> bool:
    """A number a coordinate can be: JSON's integers are unbounded (10**400 has no float)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _shown(value) -> str:
    """A number as a message quotes it: a 400-digit integer is not repeated back whole."""
    text = repr(value)
    return text if len(text) <= 24 else f"{text[:12]}…({len(text)} digits)"


def checked_click(value, size: tuple[int, int]) -> Click:
    """``[x, y, label]`` -> a ``Click`` on an image of ``size``."""
    h, w = size
    if not (isinstance(value, list) and len(value) == 3 and all(_is_number(v) for v in value)):
        raise PromptError("points must be a JSON list of [x, y, label], e.g. [[120, 80, 1]]")
    x, y, label = value
    if not (_finite(x) and _finite(y)):
        raise PromptError(
            f"point ({_shown(x)}, {_shown(y)}) has a coordinate that is not a number "
            "(or is too large to be one)"
        )
    if label not in (0, 1):
        raise PromptError(f"a point's label is 1 (positive) or 0 (negative), not {_shown(label)}")
    if not (0 <= x < w and 0 <= y < h):
        raise PromptError(f"point ({_shown(x)}, {_shown(y)}) lies outside the {w}×{h} image")
    return Click(float(x), float(y), label == 1)


def checked_box(value, size: tuple[int, int]) -> Box:
    """``[x0, y0, x1, y1]`` (opposite corners, in any order) -> a ``Box`` on ``size``."""
    h, w = size
    if not (isinstance(value, list) and len(value) == 4 and all(_is_number(v) for v in value)):
        raise PromptError("box must be a JSON list [x0, y0, x1, y1], or empty")
    shown = "[" + ", ".join(_shown(v) for v in value) + "]"
    if not all(_finite(v) for v in value):
        raise PromptError(f"box {shown} has a coordinate that is not a number")
    if min(value) < 0 or max(value[0], value[2]) > w or max(value[1], value[3]) > h:
        raise PromptError(f"box {shown} reaches outside the {w}×{h} image")
    box = Box.spanning(*(float(v) for v in value))
    if min(box.x1 - box.x0, box.y1 - box.y0) < MIN_BOX_SIDE:
        raise PromptError(
            f"box {shown} has no area to speak of: it is too small, under {MIN_BOX_SIDE:g} "
            "pixels wide or tall; drag across the object"
        )
    return box


def checked(value, size: tuple[int, int]) -> Prompt:
    """A prompt object ``{"kind": "point", "x", "y", "label"}`` or ``{"kind": "box", "box"}``,
    or a bare ``[x, y, label]``, as a checked prompt."""
    if isinstance(value, list):
        return checked_click(value, size)
    kind = value.get("kind") if isinstance(value, dict) else None
    if kind == "point":
        return checked_click([value.get("x"), value.get("y"), value.get("label")], size)
    if kind == "box":
        return checked_box(value.get("box"), size)
    raise PromptError(f'a prompt is a point or a box: "kind" "point" or "box", not {kind!r}')


def to_json(prompt: Prompt) -> dict:
    """The prompt object that ``checked`` reads back."""
    if isinstance(prompt, Click):
        return {"kind": "point", "x": prompt.x, "y": prompt.y, "label": prompt.label}
    return {"kind": "box", "box": [prompt.x0, prompt.y0, prompt.x1, prompt.y1]}


def _parsed(text: str, what: str):
    text = (text or "").strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except (json.JSONDecodeError, ValueError, RecursionError) as err:  # deep nesting: recursion
        raise PromptError(f"{what} is not valid JSON: {text[:60]}") from err


def parse_prompts(points_json: str, box_json: str, size: tuple[int, int]) -> list[Prompt]:
    """Checked prompts, in the order they are to be clicked, from the API's two fields.

    ``points_json``: ``[[x, y, label], ...]`` (label 1 positive, 0 negative), or a list of
    prompt objects in click order (what the tab's JSON box shows). ``box_json``:
    ``[x0, y0, x1, y1]`` or empty; a box given there comes first, as a user draws a box and
    then corrects it with clicks.
    """
    points = _parsed(points_json, "points") or []
    if not isinstance(points, list):
        raise PromptError("points must be a JSON list of [x, y, label], e.g. [[120, 80, 1]]")
    prompts = [checked(p, size) for p in points]
    given_box = _parsed(box_json, "box")
    if given_box is not None:
        prompts.insert(0, checked_box(given_box, size))
    if not prompts:
        raise PromptError("Give at least one point or a box.")
    return prompts
