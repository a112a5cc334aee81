"""Procedural street scenes with exact semantic and instance labels.

A scene is painted back to front (sky, buildings, ground, then standing objects sorted by
where their feet touch the ground). Every primitive writes its colour, its class and its
instance id through one boolean mask, so the label maps match the picture exactly: the canvas
and its shapes are in ``scene_canvas``, the scenery in ``scene_street``, the people and their
purses in ``scene_people``; this module lays a scene out and renders it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from segdemo.data import scene_people as people
from segdemo.data import scene_street as street
from segdemo.data.scene_canvas import CLASS_NAMES, PERSON, PURSE, Canvas, rgb

# The class ids live with the canvas that paints them; the generator's users import them here.
__all__ = [
    "CLASS_NAMES",
    "INSTANCE_CLASSES",
    "LECTURE_GRID",
    "PERSON",
    "PURSE",
    "SPLIT_TAGS",
    "Scene",
    "make_scene",
]

INSTANCE_CLASSES = (1, 2)
SPLIT_TAGS = {"train": 1, "val": 2, "example": 3}

# The lecture's toy example: a person holding a purse on a sidewalk, a building behind, plants
# on both sides. Classes 1..5 only, as on the slide.
LECTURE_GRID = np.array(
    [
        [5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5],
        [5, 5, 5, 5, 5, 5, 5, 5, 5, 1, 1, 5, 5, 5, 5, 5, 5, 5, 5],
        [5, 5, 5, 5, 5, 5, 5, 5, 5, 1, 1, 5, 5, 5, 5, 5, 5, 5, 5],
        [3, 3, 5, 5, 5, 5, 5, 5, 1, 1, 1, 1, 5, 5, 5, 5, 5, 3, 3],
        [3, 3, 3, 5, 5, 5, 5, 1, 1, 1, 1, 1, 1, 5, 5, 5, 3, 3, 3],
        [3, 3, 3, 5, 5, 5, 5, 1, 1, 1, 1, 1, 1, 5, 5, 5, 3, 3, 3],
        [3, 3, 3, 3, 5, 5, 5, 1, 1, 1, 1, 1, 2, 5, 5, 3, 3, 3, 3],
        [3, 3, 3, 3, 3, 5, 5, 1, 1, 1, 1, 1, 2, 2, 5, 3, 3, 3, 3],
        [4, 4, 4, 4, 4, 4, 4, 4, 1, 1, 1, 1, 2, 2, 4, 4, 4, 4, 4],
        [4, 4, 4, 4, 4, 4, 4, 4, 1, 4, 4, 1, 4, 4, 4, 4, 4, 4, 4],
        [4, 4, 4, 4, 4, 4, 4, 4, 1, 4, 4, 1, 4, 4, 4, 4, 4, 4, 4],
        [4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4],
    ],
    dtype=np.uint8,
)


@dataclass(frozen=True)
class Scene:
    """One rendered scene.

    image: (H, W, 3) uint8 RGB.
    labels: (H, W) uint8 class ids in 0..5 (see CLASS_NAMES).
    instances: (H, W) int32; 0 where labels is not person/purse, else an instance id 1..N.
    instance_classes: instance id -> class id (1 person or 2 purse), ids exactly 1..N.
    """

    image: np.ndarray
    labels: np.ndarray
    instances: np.ndarray
    instance_classes: dict[int, int]


def _finish(cv: Canvas, rng: np.random.Generator, mood: int) -> np.ndarray:
    """Global light: a directional falloff, contrast/brightness/colour cast and sensor noise."""
    h, w = cv.h, cv.w
    angle, strength = rng.uniform(0, 2 * np.pi), rng.uniform(0.0, 0.3)
    sy, sx = np.sin(angle), np.cos(angle)
    ramp = (np.linspace(-0.5, 0.5, h, dtype=np.float32)[:, None] * sy
            + np.linspace(-0.5, 0.5, w, dtype=np.float32)[None, :] * sx)
    ramp = 1.0 - strength * (ramp / (abs(sy) + abs(sx)) + 0.5)
    contrast = rng.uniform(0.8, 1.15)
    brightness = rng.uniform(-20, 20) - (20 if mood == 2 else 0)
    cast = rng.uniform(0.92, 1.08, 3).astype(np.float32)
    if mood == 2:
        cast *= rgb(1.08, 0.96, 0.86)
    pixels = cv.rgb
    pixels *= ramp[..., None] * (contrast * cast)
    sigma = rng.uniform(2.0, 7.0)
    noise = rng.random((h, w, 3), dtype=np.float32)
    noise *= 2 * sigma
    noise += (128.0 * (1.0 - contrast) + brightness) * cast - sigma
    pixels += noise
    return np.clip(pixels, 0, 255, out=pixels).astype(np.uint8)


def make_scene(index: int, split: str = "train", size: tuple[int, int] = (192, 256)) -> Scene:
    """Render scene number `index` (>= 0) of `split` at size (height, width).

    Deterministic for (index, split, size): the generator is
    np.random.default_rng([SPLIT_TAGS[split], index]), so "train" and "val" never share a
    random stream. Layout is drawn in relative units, so a scene looks alike at any size;
    sizes of 64x64 and up are intended. Raises ValueError for an unknown split, a negative
    index or a size below 16x16.
    """
    if split not in SPLIT_TAGS:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(SPLIT_TAGS)}")
    if index < 0:
        raise ValueError(f"index must be >= 0, got {index}")
    h, w = int(size[0]), int(size[1])
    if h < 16 or w < 16:
        raise ValueError(f"size must be at least 16x16, got {size}")
    rng = np.random.default_rng([SPLIT_TAGS[split], int(index)])
    cv = Canvas(h, w, rng)
    horizon = rng.uniform(0.36, 0.52) * h
    mood = int(rng.integers(len(street.SKIES)))
    haze = street.sky(cv, rng, horizon, mood)
    street.buildings(cv, rng, horizon, mood, haze)
    ground = street.ground(cv, rng, horizon)
    depth = h - horizon

    def kerb_or_anywhere(foot: float) -> float:
        """Street furniture stands at a sidewalk edge when one is in view."""
        lo, hi = ground.x_range(foot, int(rng.integers(len(ground.bands))))
        kerbs = [e + 0.02 * w * sign for e, sign in ((lo, 1), (hi, -1)) if 0 < e < w]
        return kerbs[rng.integers(len(kerbs))] if kerbs else rng.uniform(0.02, 0.98) * w

    # Everything standing on the ground is drawn in order of its feet row: nearer (lower)
    # objects are painted later and occlude farther ones. Pixel height is proportional to the
    # distance of the feet below the horizon (camera at roughly a person's eye height).
    standing: list[tuple[float, Callable[[], None]]] = []
    for _ in range(rng.integers(0, 3)):
        foot = horizon + rng.uniform(0.04, 0.35) * depth
        x = kerb_or_anywhere(foot)
        standing.append((foot, lambda x=x, f=foot: street.tree(cv, rng, x, f, f - horizon)))
    for _ in range(rng.integers(0, 4)):
        foot = horizon + rng.uniform(0.02, 0.3) * depth
        x = rng.uniform(0, w)
        scale = max(foot - horizon, 0.03 * h)
        standing.append((foot, lambda x=x, f=foot, s=scale: street.bush(cv, rng, x, f, s)))
    if rng.random() < 0.5:
        foot = horizon + rng.uniform(0.15, 0.6) * depth
        x = kerb_or_anywhere(foot)
        standing.append((foot, lambda x=x, f=foot: street.pole(cv, rng, x, f, f - horizon)))

    inst_classes = [0]
    placed: list[float] = []
    for foot in np.sort(rng.uniform(horizon + 0.3 * depth, 0.97 * h, rng.integers(1, 6))):
        height = rng.uniform(0.85, 1.15) * (foot - horizon)
        half = 0.28 * height  # arms and purse included, so the figure stays inside the frame
        spans = [ground.x_range(foot, k) for k in range(len(ground.bands))]
        spans = [(max(lo, half), min(hi, w - half)) for lo, hi in spans]
        roomy = [s for s in spans if s[0] < s[1]]
        lo, hi = roomy[rng.integers(len(roomy))] if roomy else max(spans, key=lambda s: s[1] - s[0])
        if placed and rng.random() < 0.4:  # stand close to someone: partial occlusion
            x = placed[rng.integers(len(placed))] + rng.uniform(-0.25, 0.25) * height
        else:
            x = rng.uniform(lo, hi) if lo < hi else 0.5 * (lo + hi)
        x = float(np.clip(x, lo, hi)) if lo < hi else x
        x = float(np.clip(x, min(half, w / 2), max(w - half, w / 2)))
        placed.append(x)
        pid = len(inst_classes)
        inst_classes.append(PERSON)
        purse_id = 0
        if rng.random() < 0.5:
            purse_id = len(inst_classes)
            inst_classes.append(PURSE)
        standing.append((foot, lambda x=x, f=foot, u=height, p=pid, q=purse_id:
                         people.person(cv, rng, x, f, u, p, q)))
    for _, draw in sorted(standing, key=lambda item: item[0]):
        draw()

    image = _finish(cv, rng, mood)
    # Drop instances that were painted over completely and renumber the rest 1..N.
    counts = np.bincount(cv.inst.ravel(), minlength=len(inst_classes))
    keep = np.flatnonzero(counts[1:]) + 1
    lut = np.zeros(len(inst_classes), np.int32)
    lut[keep] = np.arange(1, keep.size + 1, dtype=np.int32)
    return Scene(image=image, labels=cv.labels, instances=lut[cv.inst],
                 instance_classes={i + 1: inst_classes[k] for i, k in enumerate(keep)})
