"""The canvas street scenes are painted on: colour, class and instance buffers, and the shapes.

Every primitive returns a region (a boolean mask inside its bounding box) and ``Canvas.paint``
writes colour, class and instance id through that one mask, so the label maps match the
picture exactly.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

CLASS_NAMES = ("sky/other", "person", "purse", "plants/grass", "sidewalk", "building")
OTHER, PERSON, PURSE, PLANT, SIDEWALK, BUILDING = range(6)

Region = tuple[int, int, np.ndarray]  # (top row, left column, local boolean mask)


def rgb(*values: int) -> np.ndarray:
    return np.array(values, np.float32)


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    small = rng.standard_normal((int(h / cell) + 2, int(w / cell) + 2), dtype=np.float32)
    return np.asarray(Image.fromarray(small).resize((w, h), Image.BILINEAR))


class Canvas:
    """Colour, label and instance buffers plus mask rasterisers working inside bounding boxes."""

    def __init__(self, h: int, w: int, rng: np.random.Generator):
        self.h, self.w = h, w
        self.rgb = np.zeros((h, w, 3), np.float32)
        self.labels = np.zeros((h, w), np.uint8)
        self.inst = np.zeros((h, w), np.int32)
        self.has_inst = False
        # Shared texture fields: per-pixel grain and blotches a few pixels wide.
        self.fine = rng.standard_normal((h, w), dtype=np.float32)
        self.blob = _smooth_noise(rng, h, w, max(2.0, h / 40))

    def grid(self, y0: float, y1: float, x0: float, x1: float):
        """Open coordinate grids of the pixel centres in [y0, y1] x [x0, x1], clipped; or None."""
        r0, r1 = max(int(np.ceil(y0)), 0), min(int(np.floor(y1)) + 1, self.h)
        c0, c1 = max(int(np.ceil(x0)), 0), min(int(np.floor(x1)) + 1, self.w)
        if r0 >= r1 or c0 >= c1:
            return None
        yy = np.arange(r0, r1, dtype=np.float32)[:, None]
        return r0, c0, yy, np.arange(c0, c1, dtype=np.float32)[None, :]

    def rect(self, y0: float, y1: float, x0: float, x1: float) -> Region | None:
        g = self.grid(y0, y1, x0, x1)
        return None if g is None else (g[0], g[1], np.ones((g[2].size, g[3].size), bool))

    def blobs(self, ellipses: list[tuple[float, float, float, float]]) -> Region | None:
        """Union of ellipses given as (cy, cx, ry, rx)."""
        e = np.array(ellipses, np.float32)
        g = self.grid((e[:, 0] - e[:, 2]).min(), (e[:, 0] + e[:, 2]).max(),
                      (e[:, 1] - e[:, 3]).min(), (e[:, 1] + e[:, 3]).max())
        if g is None:
            return None
        r0, c0, yy, xx = g
        m = np.zeros((yy.size, xx.size), bool)
        for cy, cx, ry, rx in e.tolist():
            m |= ((yy - cy) / max(ry, 0.5)) ** 2 + ((xx - cx) / max(rx, 0.5)) ** 2 <= 1.0
        return r0, c0, m

    def ellipse(self, cy: float, cx: float, ry: float, rx: float) -> Region | None:
        return self.blobs([(cy, cx, ry, rx)])

    def capsules(self, segments: list[tuple[float, float, float, float, float]]) -> Region | None:
        """Union of thick line segments (ay, ax, by, bx, radius) with round ends."""
        s = np.array(segments, np.float32)
        s[:, 4] = np.maximum(s[:, 4], 0.6)  # thin straps and poles stay at least a pixel wide
        ys, xs, r = s[:, [0, 2]], s[:, [1, 3]], s[:, 4:]
        g = self.grid((ys - r).min(), (ys + r).max(), (xs - r).min(), (xs + r).max())
        if g is None:
            return None
        r0, c0, yy, xx = g
        m = np.zeros((yy.size, xx.size), bool)
        for ay, ax, by, bx, rad in s.tolist():
            dy, dx = by - ay, bx - ax
            t = ((yy - ay) * dy + (xx - ax) * dx) / max(dy * dy + dx * dx, 1e-6)
            t = np.clip(t, 0.0, 1.0)
            m |= (yy - ay - t * dy) ** 2 + (xx - ax - t * dx) ** 2 <= rad * rad
        return r0, c0, m

    def capsule(self, a: tuple[float, float], b: tuple[float, float], r: float) -> Region | None:
        """Thick line segment from a to b (points as (y, x)) with round ends."""
        return self.capsules([(*a, *b, r)])

    def polygon(self, pts: list[tuple[float, float]]) -> Region | None:
        """Convex polygon, vertices (y, x) in either winding order, by half-plane tests."""
        p = np.array(pts, np.float32)
        g = self.grid(p[:, 0].min(), p[:, 0].max(), p[:, 1].min(), p[:, 1].max())
        if g is None:
            return None
        r0, c0, yy, xx = g
        cy, cx = p.mean(0).tolist()
        m = np.ones((yy.size, xx.size), bool)
        for (ay, ax), (by, bx) in zip(p.tolist(), np.roll(p, -1, 0).tolist(), strict=True):
            side = 1.0 if (bx - ax) * (cy - ay) - (by - ay) * (cx - ax) >= 0 else -1.0
            m &= side * ((bx - ax) * (yy - ay) - (by - ay) * (xx - ax)) >= 0
        return r0, c0, m

    def paint(self, region: Region | None, color, label: int, inst: int = 0,
              fine: float = 0.0, blob: float = 0.0, tone: np.ndarray | None = None) -> None:
        """Write colour, label and instance id under the region's mask.

        color is an RGB triple or an array broadcastable to the box (box_h, box_w, 3); fine and
        blob scale the shared texture fields; tone is an optional (box_h, box_w) multiplier.
        """
        if region is None:
            return
        r0, c0, m = region
        sl = (slice(r0, r0 + m.shape[0]), slice(c0, c0 + m.shape[1]))
        col = np.asarray(color, np.float32)
        if m.all():  # rectangles: plain slicing beats boolean indexing
            m = Ellipsis
        elif col.ndim > 1:
            col = np.broadcast_to(col, m.shape + (3,))[m]
        if fine or blob or tone is not None:
            factor = 1.0 + fine * self.fine[sl][m] + blob * self.blob[sl][m]
            if tone is not None:
                factor *= tone[m]
            col = col * factor[..., None]
        self.rgb[sl][m] = col
        self.labels[sl][m] = label
        if inst or self.has_inst:  # the background never needs clearing of instance ids
            self.inst[sl][m] = inst
            self.has_inst = True

    def shade(self, region: Region | None, factor: float) -> None:
        """Darken the ground only (a cast shadow); labels stay as they are."""
        if region is None:
            return
        r0, c0, m = region
        sl = (slice(r0, r0 + m.shape[0]), slice(c0, c0 + m.shape[1]))
        lab = self.labels[sl]
        self.rgb[sl][m & (lab != PERSON) & (lab != PURSE)] *= factor


def jitter(rng: np.random.Generator, col: np.ndarray, amount: float = 12.0) -> np.ndarray:
    return np.clip(col + rng.uniform(-amount, amount, 3), 0, 255).astype(np.float32)


def pick(rng: np.random.Generator, palette: list[np.ndarray], amount: float = 12.0):
    return jitter(rng, palette[rng.integers(len(palette))], amount)
