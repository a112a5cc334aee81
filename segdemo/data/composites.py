"""Dead-leaves composites: random shapes with random textures, layered over each other.

A class-agnostic segmenter has to learn what makes a region one object — a boundary where
colour or texture statistics change — rather than what a flower or a person looks like. These
images hold nothing else: shapes (ellipses, polygons, noise blobs, rotated rectangles, rings,
thick strokes) of power-law sizes, each filled with a texture (flat, gradients, stripes,
checks, blended noise, speckle, spots) and shaded, dropped on top of each other so that later
shapes occlude earlier ones. Some objects are made of two or three parts with different
textures (a shirt and trousers, a car body and its windows); the object mask is their union,
and ``parts`` keeps the parts apart, so a click on one part is ambiguous the way it is in a
photo. Edges are anti-aliased, some shapes cast soft shadows, and the finished picture gets
lighting, blur, sensor noise and sometimes JPEG compression.

Every image is a pure function of ``(index, split, size)`` with a random stream per split.
"""

from __future__ import annotations

import colorsys
import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from segdemo.data.flowers import rng_for, smooth_noise
from segdemo.data.photo_textures import photo_texture

SPLIT_TAGS = {"train": 201, "val": 202, "example": 203}


@dataclass(frozen=True)
class Composite:
    """One composite image.

    image: ``HxWx3 uint8`` RGB.
    objects: ``HxW int32`` visible object id per pixel, 0 for the background layer.
    parts: ``HxW int32`` visible part id per pixel (an object of one part has one part id).
    """

    image: np.ndarray
    objects: np.ndarray
    parts: np.ndarray


def _colour(rng: np.random.Generator) -> np.ndarray:
    """An RGB colour in [0, 1]: mostly muted, as in photos, sometimes saturated or grey."""
    roll = rng.uniform()
    if roll < 0.2:
        return np.full(3, rng.uniform(0.05, 0.95), np.float32)
    saturation = rng.uniform(0.05, 0.6) if roll < 0.75 else rng.uniform(0.6, 1.0)
    rgb = colorsys.hsv_to_rgb(rng.uniform(), saturation, rng.uniform(0.1, 1.0))
    return np.array(rgb, np.float32)


def _texture(
    rng: np.random.Generator, shape: tuple[int, int], base: np.ndarray, photos: float = 0.0
) -> np.ndarray:
    """An ``HxWx3 float32`` texture around colour ``base`` (values roughly in [0, 1]); with
    probability ``photos`` a patch of a real photo instead (``photo_textures``)."""
    if photos and rng.uniform() < photos:
        return photo_texture(rng, shape)
    h, w = shape
    other = _colour(rng) if rng.uniform() < 0.6 else base * np.float32(rng.uniform(0.4, 1.6))
    kind = rng.integers(8)
    if kind in (1, 2, 3, 4, 7):
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind == 0:  # flat
        t = np.zeros((h, w), np.float32)
    elif kind == 1:  # linear gradient
        a = rng.uniform(0, 2 * np.pi)
        ramp = xx * np.cos(a) + yy * np.sin(a)
        t = (ramp - ramp.min()) / max(np.ptp(ramp), 1.0)
    elif kind == 2:  # radial gradient: a lit, curved surface
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        r = np.hypot(xx - cx, yy - cy)
        t = r / max(r.max(), 1.0)
    elif kind == 3:  # stripes, soft or hard
        a, period = rng.uniform(0, np.pi), rng.uniform(3, 24)
        t = 0.5 + 0.5 * np.sin(2 * np.pi * (xx * np.cos(a) + yy * np.sin(a)) / period)
        if rng.uniform() < 0.5:
            t = (t > 0.5).astype(np.float32)
    elif kind == 4:  # checks
        cell = rng.uniform(4, 20)
        t = ((np.floor(xx / cell) + np.floor(yy / cell)) % 2).astype(np.float32)
    elif kind == 5:  # two colours blended by smooth noise: stone, bark, clouds
        t = np.clip(0.5 + 0.5 * smooth_noise(rng, shape, rng.uniform(3, 30)), 0, 1)
    elif kind == 6:  # speckle: grass, fur, gravel
        t = 0.5 + rng.uniform(0.3, 1.0) * (rng.random(shape, dtype=np.float32) - 0.5)
    else:  # spots
        t = np.zeros(shape, np.float32)
        for _ in range(int(rng.integers(3, 30))):
            cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(1.5, 6)
            t[(xx - cx) ** 2 + (yy - cy) ** 2 <= r * r] = 1.0
    strength = np.float32(rng.uniform(0.2, 1.0))
    texture = base + strength * t[..., None] * (other - base)
    grain = np.float32(rng.uniform(0.0, 0.06))  # a little fine noise on every surface
    return texture + grain * rng.standard_normal((h, w, 1), dtype=np.float32)


def _shape(rng: np.random.Generator, xx, yy, cx, cy, r) -> np.ndarray:
    """A boolean mask of one random shape of radius about ``r`` centred at (cx, cy)."""
    u, v = xx - cx, yy - cy
    a = rng.uniform(0, np.pi)
    c, s = np.cos(a), np.sin(a)
    ru, rv = u * c + v * s, -u * s + v * c
    kind = rng.integers(6)
    if kind == 0:  # ellipse
        return (ru / r) ** 2 + (rv / (r * rng.uniform(0.3, 1.0))) ** 2 <= 1
    if kind == 1:  # star-shaped polygon: radius varies smoothly or sharply with angle
        n = int(rng.integers(3, 10))
        radii = r * rng.uniform(0.45, 1.0, n + 1)
        radii[-1] = radii[0]
        theta = (np.arctan2(rv, ru) + np.pi) / (2 * np.pi) * n
        k = np.floor(theta).astype(int)
        edge = radii[k] + (theta - k) * (radii[k + 1] - radii[k])
        return np.hypot(ru, rv) <= edge
    if kind == 2:  # noise blob: an irregular, organic outline
        field = smooth_noise(rng, xx.shape, max(2.0, r * rng.uniform(0.3, 0.8)))
        return np.hypot(ru, rv) / r + 0.35 * field <= 1
    if kind == 3:  # rotated rectangle, sometimes rounded
        half_v = r * rng.uniform(0.15, 1.0)
        corner = rng.uniform(0, 0.5) * half_v
        du = np.maximum(np.abs(ru) - (r - corner), 0)
        dv = np.maximum(np.abs(rv) - (half_v - corner), 0)
        return du * du + dv * dv <= corner * corner
    if kind == 4:  # ring or crescent
        inner = rng.uniform(0.4, 0.8)
        shift = rng.uniform(0, 0.4) * r
        outer = np.hypot(ru, rv) <= r
        return outer & (np.hypot(ru - shift, rv) > inner * r)
    # thick stroke: a bent line, like a branch, a cable or an arm
    bend = rng.uniform(-1, 1) / max(r, 1.0)
    offset = rv - bend * ru * ru
    return (np.abs(ru) <= r) & (np.abs(offset) <= r * rng.uniform(0.06, 0.25))


def _object_masks(rng, xx, yy, cx, cy, r) -> list[np.ndarray]:
    """One to three part masks of one object: a main shape and parts attached to it."""
    main = _shape(rng, xx, yy, cx, cy, r)
    parts = [main]
    if rng.uniform() < 0.35 and main.any():
        ys, xs = np.nonzero(main)
        for _ in range(int(rng.integers(1, 3))):
            k = rng.integers(len(xs))  # anchor the part on the main shape so they touch
            px, py = xx[ys[k], xs[k]], yy[ys[k], xs[k]]
            part = _shape(rng, xx, yy, px, py, r * rng.uniform(0.3, 0.7))
            parts.append(part & ~np.logical_or.reduce(parts))
    return parts


def _soft(mask: np.ndarray, radius: float) -> np.ndarray:
    """Coverage in [0, 1] of a boolean mask with a blurred (anti-aliased) edge."""
    alpha = Image.fromarray(mask.astype(np.uint8) * 255)
    if radius > 0:
        alpha = alpha.filter(ImageFilter.GaussianBlur(radius))
    return np.asarray(alpha, np.float32) / 255.0


def _bounds(mask: np.ndarray, margin: int) -> tuple[slice, slice]:
    """The bounding box of a non-empty mask, widened by ``margin`` pixels (clipped)."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    h, w = mask.shape
    return (
        slice(max(0, rows[0] - margin), min(h, rows[-1] + margin + 1)),
        slice(max(0, cols[0] - margin), min(w, cols[-1] + margin + 1)),
    )


def _finish(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Lighting, colour cast, lens blur, sensor noise and JPEG: the camera's contribution."""
    h, w, _ = image.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    a = rng.uniform(0, 2 * np.pi)
    ramp = (xx * np.cos(a) + yy * np.sin(a)) / max(h, w)
    gain = rng.uniform(0.6, 1.3) * (1 + rng.uniform(-0.5, 0.5) * (ramp - ramp.mean()))
    image = image * gain[..., None] * rng.uniform(0.85, 1.15, 3).astype(np.float32)
    image += np.float32(rng.uniform(0, 0.03)) * rng.standard_normal(image.shape, np.float32)
    pixels = Image.fromarray(np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8))
    if rng.uniform() < 0.4:
        pixels = pixels.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2)))
    if rng.uniform() < 0.5:
        buffer = io.BytesIO()
        pixels.save(buffer, format="JPEG", quality=int(rng.integers(40, 95)))
        pixels = Image.open(buffer).convert("RGB")
    return np.asarray(pixels)


def make_composite(
    index: int, split: str = "train", size: tuple[int, int] = (256, 256), photos: float = 0.0
) -> Composite:
    """Composite number ``index`` of ``split`` at ``size = (height, width)``.

    ``photos``: the share of the parts' fills that are patches of real photos (twice that
    share for the background); 0 gives the purely synthetic composites.
    """
    rng = rng_for(index, split, SPLIT_TAGS)
    h, w = size
    side = max(h, w)
    canvas = _texture(rng, (h, w), _colour(rng), 2 * photos)
    objects = np.zeros((h, w), np.int32)
    parts = np.zeros((h, w), np.int32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    # Power-law radii (dead leaves): a few large shapes, many small ones; the large ones first
    # so that they are the most occluded, as with near clutter in front of a scene.
    # A zoom per image: from wide views full of small things to close-ups of a few large ones.
    zoom = np.exp(rng.uniform(np.log(0.6), np.log(1.8)))
    count = int(rng.integers(6, 24) * h * w / 256**2 / zoom) + 2
    radii = side * zoom * np.exp(rng.uniform(np.log(0.02), np.log(0.45), count))
    radii = np.sort(radii)[::-1]
    part_id = 0
    for obj_id, r in enumerate(radii, start=1):
        cx, cy = rng.uniform(-0.1 * w, 1.1 * w), rng.uniform(-0.1 * h, 1.1 * h)
        reach = int(2.2 * r) + 4
        y0, y1 = max(0, int(cy) - reach), min(h, int(cy) + reach)
        x0, x1 = max(0, int(cx) - reach), min(w, int(cx) + reach)
        if y1 - y0 < 2 or x1 - x0 < 2:
            continue
        where = (slice(y0, y1), slice(x0, x1))
        masks = _object_masks(rng, xx[where], yy[where], cx, cy, r)
        whole = np.logical_or.reduce(masks)
        if not whole.any():
            continue
        window = canvas[where]
        if rng.uniform() < 0.3:  # a soft shadow, offset from the shape: not part of it
            box = _bounds(whole, 12)
            dx, dy = rng.integers(-6, 7, 2)
            shadow = np.roll(whole[box], (int(dy), int(dx)), axis=(0, 1))
            darkness = rng.uniform(0.2, 0.5) * _soft(shadow, rng.uniform(2, 6))
            window[box] *= 1 - darkness[..., None]
        edge = rng.uniform(0.3, 1.0)
        lookalike = rng.uniform() < 0.15  # a colour close to what lies behind: a weak edge
        for mask in masks:
            if not mask.any():
                continue
            box = _bounds(mask, 3)  # texture and blend only around the part: much faster
            part, patch = mask[box], window[box]
            base = patch[part].mean(0) + rng.normal(0, 0.06, 3) if lookalike else _colour(rng)
            texture = _texture(rng, part.shape, np.asarray(base, np.float32), photos)
            alpha = _soft(part, edge)[..., None]
            patch[:] = patch * (1 - alpha) + texture * alpha
            part_id += 1
            parts[where][box][part] = part_id
        objects[where][whole] = obj_id
    return Composite(_finish(rng, canvas), objects, parts)
