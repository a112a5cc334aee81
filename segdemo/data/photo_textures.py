"""Patches of real photos, used as textures and backgrounds inside generated composites.

Synthetic fills (flat, gradients, stripes, noise) lack what every photo has: edges inside an
object that are stronger than its outline, fine texture at many scales, natural colour
statistics. The photos scikit-image ships (an astronaut, a cat, coffee, a rocket, a
motorcycle, brick, grass, gravel, ...) bring those in. They carry no masks: a patch is only
ever a fill inside a generated shape or behind the shapes, so a model learns that an object is
what the generated shape covers, whatever the fill's own edges say. No photo with a mask, and
nothing of ``coco_mval``, is ever used here.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from PIL import Image

# Colour photos and grey textures of scikit-image's data folder (files inside the package).
COLOUR = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "motorcycle_right.png",
    "ihc.png",
    "retina.jpg",
    "hubble_deep_field.jpg",
)
GREY = ("brick.png", "grass.png", "gravel.png", "camera.png", "coins.png", "moon.png")
SOURCE = "scikit-image sample photos (no masks): " + ", ".join(COLOUR + GREY)


@functools.cache
def _photos() -> tuple[np.ndarray, ...]:
    """Every sample photo as ``HxWx3 float32`` in [0, 1], at most 640 px on its long side.

    Grey photos are kept as one channel repeated; they are tinted when drawn.
    """
    import skimage

    folder = Path(skimage.__file__).parent / "data"
    photos = []
    for name in COLOUR + GREY:
        with Image.open(folder / name) as img:
            img = img.convert("RGB")
            img.thumbnail((640, 640))
            photos.append(np.asarray(img, np.float32) / 255.0)
    return tuple(photos)


def photo_texture(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """An ``HxWx3 float32`` patch of a random photo: random scale, flip, quarter turn and a
    colour change (hue rotation by channel mixing, gain, tint for the grey ones)."""
    photos = _photos()
    k = int(rng.integers(len(photos)))
    photo = photos[k]
    h, w = shape
    turns = int(rng.integers(4))
    if turns % 2:
        photo = photo.transpose(1, 0, 2)
    ph, pw = photo.shape[:2]
    # The patch covers a random share of the photo: zoomed in (large detail) to zoomed out.
    scale = rng.uniform(0.5, 2.0) * max(h / ph, w / pw)
    ch, cw = min(ph, max(2, int(h / scale))), min(pw, max(2, int(w / scale)))
    y, x = int(rng.integers(0, ph - ch + 1)), int(rng.integers(0, pw - cw + 1))
    patch = Image.fromarray((photo[y : y + ch, x : x + cw] * 255).astype(np.uint8))
    patch = np.asarray(patch.resize((w, h), Image.BILINEAR), np.float32) / 255.0
    patch = np.rot90(patch, turns // 2 * 2)
    if rng.uniform() < 0.5:
        patch = patch[:, ::-1]
    if k >= len(COLOUR) or rng.uniform() < 0.3:  # a grey or tinted version
        tint = rng.uniform(0.3, 1.2, 3).astype(np.float32)
        patch = patch.mean(-1, keepdims=True) * tint
    else:
        mix = np.eye(3, dtype=np.float32)[rng.permutation(3)]  # channel swap: new hues
        patch = patch @ (0.6 * mix + 0.4 * np.eye(3, dtype=np.float32))
    gain = np.float32(rng.uniform(0.6, 1.3))
    return np.ascontiguousarray(patch * gain, dtype=np.float32)
