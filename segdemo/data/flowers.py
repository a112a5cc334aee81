"""Procedural flower photos with exact foreground masks.

Flowers of varied shape (petal count, petal sharpness, perspective squash), colour and size on
textured, cluttered backgrounds (leaves, stems, pebbles, coloured blobs), under lighting
changes, with leaves and stems sometimes in front of the flowers. Sizes are in absolute
pixels, so a 480×640 image has the same statistics as a 96×96 crop, only more of it.

Every image is a pure function of ``(index, split, size)``: each split draws from its own
random stream (``default_rng([tag, index])``), so train, validation and example images never
coincide.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np
from PIL import Image

SPLIT_TAGS = {"train": 101, "val": 102, "example": 103}
CLASS_NAMES = ("background", "flower")


@dataclass(frozen=True)
class FlowerImage:
    image: np.ndarray  # HxWx3 uint8 RGB
    mask: np.ndarray  # HxW bool, True on petals and flower centres


def rng_for(index: int, split: str, tags: dict[str, int] = SPLIT_TAGS) -> np.random.Generator:
    """The random stream of one sample; splits never share a stream."""
    if split not in tags:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(tags)}")
    return np.random.default_rng([tags[split], int(index)])


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cell: float) -> np.ndarray:
    """Zero-mean, unit-ish noise that varies over about ``cell`` pixels (HxW float32)."""
    h, w = shape
    grid = rng.standard_normal((int(h / cell) + 2, int(w / cell) + 2)).astype(np.float32)
    big = Image.fromarray(grid, mode="F").resize((w, h), Image.BICUBIC)
    return np.asarray(big)


def hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), dtype=np.float32)


def ellipse(xx, yy, cx, cy, rx, ry, angle) -> np.ndarray:
    """Boolean mask of a rotated ellipse."""
    c, s = np.cos(angle), np.sin(angle)
    u = (xx - cx) * c + (yy - cy) * s
    v = -(xx - cx) * s + (yy - cy) * c
    return (u / rx) ** 2 + (v / ry) ** 2 <= 1.0


def segment(xx, yy, x0, y0, x1, y1, width) -> np.ndarray:
    """Boolean mask of a thick line segment (a stem or twig)."""
    dx, dy = x1 - x0, y1 - y0
    t = np.clip(((xx - x0) * dx + (yy - y0) * dy) / max(dx * dx + dy * dy, 1e-6), 0.0, 1.0)
    return (xx - x0 - t * dx) ** 2 + (yy - y0 - t * dy) ** 2 <= (width / 2) ** 2


def window(shape: tuple[int, int], cx: float, cy: float, reach: float) -> tuple[slice, slice]:
    """The part of an HxW image within ``reach`` pixels of (cx, cy): shapes are drawn only there."""
    h, w = shape
    y0, y1 = int(np.clip(cy - reach, 0, h)), int(np.clip(cy + reach + 2, 0, h))
    x0, x1 = int(np.clip(cx - reach, 0, w)), int(np.clip(cx + reach + 2, 0, w))
    return slice(y0, y1), slice(x0, x1)


def paint(canvas, where, region: np.ndarray, colour: np.ndarray, texture: np.ndarray) -> None:
    """Fill ``region`` (a mask of the window ``where``) of ``canvas`` with a textured colour."""
    canvas[where][region] = colour * (1.0 + 0.18 * texture[where][region])[:, None]


def _background(rng, shape) -> np.ndarray:
    """A textured ground: foliage, soil, stone or a muted random colour."""
    kind = rng.integers(4)
    if kind == 0:
        base = hsv(rng.uniform(0.2, 0.4), rng.uniform(0.3, 0.8), rng.uniform(0.2, 0.6))
    elif kind == 1:
        base = hsv(rng.uniform(0.05, 0.12), rng.uniform(0.3, 0.7), rng.uniform(0.2, 0.55))
    elif kind == 2:
        base = hsv(rng.uniform(0, 1), rng.uniform(0.0, 0.15), rng.uniform(0.3, 0.7))
    else:
        base = hsv(rng.uniform(0, 1), rng.uniform(0.1, 0.5), rng.uniform(0.25, 0.7))
    coarse = smooth_noise(rng, shape, rng.uniform(24, 64))
    fine = smooth_noise(rng, shape, rng.uniform(2, 6))
    tint = np.stack([smooth_noise(rng, shape, 32) for _ in range(3)], axis=-1)
    image = base * (1.0 + 0.3 * coarse + 0.15 * fine)[..., None] + 0.06 * tint
    return image.astype(np.float32)


def _foliage_colour(rng) -> np.ndarray:
    """Leaf greens and muted earth browns: colours no flower here has."""
    if rng.uniform() < 0.6:
        return hsv(rng.uniform(0.2, 0.42), rng.uniform(0.4, 0.9), rng.uniform(0.2, 0.65))
    return hsv(rng.uniform(0.03, 0.12), rng.uniform(0.15, 0.45), rng.uniform(0.2, 0.55))


def _clutter_colour(rng) -> np.ndarray:
    """Mostly foliage and earth colours, sometimes a saturated colour a flower could have.

    The flower-coloured blobs force a model to look at shape, not only colour.
    """
    if rng.uniform() < 0.8:
        return _foliage_colour(rng)
    return hsv(rng.uniform(0, 1), rng.uniform(0.5, 1.0), rng.uniform(0.5, 1.0))


def _clutter_shape(rng, xx, yy) -> tuple[tuple[slice, slice], np.ndarray]:
    """One leaf, stem, pebble or blob somewhere in the image: its window and mask there."""
    h, w = xx.shape
    cx, cy = rng.uniform(-10, w + 10), rng.uniform(-10, h + 10)
    kind = rng.integers(4)
    if kind == 0:  # leaf: a long thin ellipse
        length = rng.uniform(8, 30)
        where = window((h, w), cx, cy, length)
        ry, angle = length * rng.uniform(0.2, 0.45), rng.uniform(0, np.pi)
        return where, ellipse(xx[where], yy[where], cx, cy, length, ry, angle)
    if kind == 1:  # stem or twig
        angle, length = rng.uniform(0, np.pi), rng.uniform(15, 70)
        x1, y1 = cx + length * np.cos(angle), cy + length * np.sin(angle)
        where = window((h, w), (cx + x1) / 2, (cy + y1) / 2, length / 2 + 3)
        return where, segment(xx[where], yy[where], cx, cy, x1, y1, rng.uniform(1.5, 5))
    if kind == 2:  # pebble
        r = rng.uniform(3, 12)
        where = window((h, w), cx, cy, r)
        ry, angle = r * rng.uniform(0.6, 1.0), rng.uniform(0, np.pi)
        return where, ellipse(xx[where], yy[where], cx, cy, r, ry, angle)
    r = rng.uniform(6, 22)  # irregular blob: a union of three discs
    where = window((h, w), cx, cy, 2 * r)
    bx, by = xx[where], yy[where]
    blob = np.zeros(bx.shape, dtype=bool)
    for _ in range(3):
        ox, oy, rr = rng.uniform(-r, r), rng.uniform(-r, r), r * rng.uniform(0.4, 0.8)
        blob |= (bx - cx - ox) ** 2 + (by - cy - oy) ** 2 <= rr * rr
    return where, blob


def _petal_colour(rng) -> np.ndarray:
    """Flower colours: reds, pinks, purples, blues, yellows, oranges and whites.

    Bright and saturated enough to stay apart from the foliage and earth colours, so the
    mask never has to guess between a dim yellow petal and a dry leaf.
    """
    if rng.uniform() < 0.15:
        return hsv(rng.uniform(0, 1), rng.uniform(0.0, 0.1), rng.uniform(0.9, 1.0))
    hue = rng.choice([rng.uniform(-0.05, 0.16), rng.uniform(0.55, 0.95)])
    return hsv(hue, rng.uniform(0.6, 1.0), rng.uniform(0.75, 1.0))


def _flower(rng, xx, yy, canvas, texture) -> tuple[tuple[slice, slice], np.ndarray]:
    """Paint one flower onto ``canvas``; return its window and its mask there."""
    h, w = xx.shape
    cx, cy = rng.uniform(-5, w + 5), rng.uniform(-5, h + 5)
    radius = rng.uniform(12, 36)  # the largest still fit in the models' field of view
    where = window((h, w), cx, cy, radius)
    xx, yy, canvas, texture = xx[where], yy[where], canvas[where], texture[where]
    petals = int(rng.integers(4, 13))
    depth = rng.uniform(0.25, 0.65)  # how far the gaps between petals reach inwards
    sharpness = rng.uniform(0.4, 2.5)
    squash = rng.uniform(0.55, 1.0)  # a flower seen from the side looks elliptical
    angle, phase = rng.uniform(0, np.pi), rng.uniform(0, 2 * np.pi)

    c, s = np.cos(angle), np.sin(angle)
    u = (xx - cx) * c + (yy - cy) * s
    v = (-(xx - cx) * s + (yy - cy) * c) / squash
    r = np.hypot(u, v)
    theta = np.arctan2(v, u)
    edge = radius * (depth + (1 - depth) * np.abs(np.cos(petals * theta / 2 + phase)) ** sharpness)
    petal_region = r <= edge
    centre_region = r <= radius * rng.uniform(0.12, 0.3)

    colour = _petal_colour(rng)
    shade = 0.75 + 0.35 * np.clip(r / np.maximum(edge, 1e-3), 0, 1)
    if rng.uniform() < 0.5:
        shade = 1.45 - shade  # some flowers are lighter at the centre, some darker
    veins = 0.08 * np.cos(petals * theta * rng.integers(2, 5))
    petal_colour = colour * (shade + veins + 0.12 * texture)[..., None]
    canvas[petal_region] = petal_colour[petal_region]
    centre = hsv(rng.uniform(0.05, 0.17), rng.uniform(0.5, 1), rng.uniform(0.2, 0.95))
    everywhere = (slice(None), slice(None))
    paint(canvas, everywhere, centre_region, centre, texture)
    return where, petal_region | centre_region


def _lighting(rng, image: np.ndarray) -> np.ndarray:
    """Brightness, colour cast, a light gradient, a soft shadow and sensor noise."""
    h, w, _ = image.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    direction = rng.uniform(0, 2 * np.pi)
    ramp = (xx * np.cos(direction) + yy * np.sin(direction)) / max(h, w)
    gain = rng.uniform(0.7, 1.25) * (1.0 + rng.uniform(-0.4, 0.4) * (ramp - ramp.mean()))
    if rng.uniform() < 0.4:
        shadow = smooth_noise(rng, (h, w), rng.uniform(30, 80))
        gain = gain * (1.0 - 0.35 * (shadow > rng.uniform(0.0, 0.8)))
    cast = rng.uniform(0.85, 1.15, size=3).astype(np.float32)
    image = image * gain[..., None] * cast
    image = image + rng.normal(0, rng.uniform(0.0, 0.03), size=image.shape).astype(np.float32)
    return image


def make_flowers(
    index: int, split: str = "train", size: tuple[int, int] = (128, 128)
) -> FlowerImage:
    """One procedural flower photo of ``size = (height, width)`` and its exact flower mask."""
    rng = rng_for(index, split)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    area = h * w / (128 * 128)  # counts scale with area, so sizes in pixels stay the same
    texture = smooth_noise(rng, (h, w), 3.0)
    canvas = _background(rng, (h, w))
    mask = np.zeros((h, w), dtype=bool)

    for _ in range(int(rng.integers(4, 20) * area)):
        where, region = _clutter_shape(rng, xx, yy)
        paint(canvas, where, region, _clutter_colour(rng), texture)
    for _ in range(max(1, int(round(rng.uniform(0.6, 3.0) * area)))):
        where, region = _flower(rng, xx, yy, canvas, texture)
        mask[where] |= region
    for _ in range(int(rng.integers(0, 4) * area)):  # leaves and stems in front: occlusion
        where, region = _clutter_shape(rng, xx, yy)
        paint(canvas, where, region, _foliage_colour(rng), texture)
        mask[where] &= ~region

    image = _lighting(rng, canvas)
    pixels = np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return FlowerImage(pixels, mask)
