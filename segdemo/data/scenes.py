"""Procedural street scenes with exact semantic and instance labels.

A scene is painted back to front (sky, buildings, ground, then standing objects sorted by
where their feet touch the ground). Every primitive writes its colour, its class and its
instance id through one boolean mask, so the label maps match the picture exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

CLASS_NAMES = ("sky/other", "person", "purse", "plants/grass", "sidewalk", "building")
INSTANCE_CLASSES = (1, 2)
SPLIT_TAGS = {"train": 1, "val": 2, "example": 3}
OTHER, PERSON, PURSE, PLANT, SIDEWALK, BUILDING = range(6)

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


def _rgb(*values: int) -> np.ndarray:
    return np.array(values, np.float32)


# (zenith, horizon) colours; the index doubles as the lighting mood.
SKIES = [(_rgb(60, 120, 205), _rgb(175, 210, 240)),  # clear
         (_rgb(135, 140, 150), _rgb(205, 205, 210)),  # overcast
         (_rgb(55, 45, 105), _rgb(245, 150, 85)),  # dusk
         (_rgb(120, 170, 220), _rgb(225, 225, 215))]  # hazy
FACADES = [_rgb(150, 70, 50), _rgb(175, 95, 65), _rgb(200, 180, 140), _rgb(130, 130, 135),
           _rgb(90, 95, 100), _rgb(220, 210, 180), _rgb(150, 170, 190), _rgb(185, 140, 120)]
GREENS = [_rgb(80, 140, 50), _rgb(115, 160, 60), _rgb(55, 105, 40), _rgb(40, 85, 40),
          _rgb(135, 160, 65)]
PAVING = [_rgb(165, 165, 160), _rgb(190, 178, 150), _rgb(145, 140, 135), _rgb(175, 130, 110)]
SKINS = [_rgb(250, 215, 180), _rgb(235, 190, 150), _rgb(200, 150, 110), _rgb(160, 110, 75),
         _rgb(110, 75, 50), _rgb(80, 55, 40)]
HAIRS = [_rgb(20, 15, 10), _rgb(70, 45, 25), _rgb(200, 170, 100), _rgb(150, 150, 150),
         _rgb(120, 50, 20)]
LEATHER = [_rgb(120, 70, 40), _rgb(30, 30, 30), _rgb(180, 30, 40), _rgb(190, 150, 90),
           _rgb(230, 220, 200), _rgb(60, 80, 150)]

Region = tuple[int, int, np.ndarray]  # (top row, left column, local boolean mask)


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    small = rng.standard_normal((int(h / cell) + 2, int(w / cell) + 2), dtype=np.float32)
    return np.asarray(Image.fromarray(small).resize((w, h), Image.BILINEAR))


class _Canvas:
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


def _jitter(rng: np.random.Generator, col: np.ndarray, amount: float = 12.0) -> np.ndarray:
    return np.clip(col + rng.uniform(-amount, amount, 3), 0, 255).astype(np.float32)


def _pick(rng: np.random.Generator, palette: list[np.ndarray], amount: float = 12.0):
    return _jitter(rng, palette[rng.integers(len(palette))], amount)


def _sky(cv: _Canvas, rng: np.random.Generator, horizon: float, mood: int) -> np.ndarray:
    zenith, low = (_jitter(rng, c, 15) for c in SKIES[mood])
    t = np.clip(np.arange(cv.h, dtype=np.float32) / horizon, 0, 1)[:, None, None] ** 0.8
    cv.paint(cv.rect(0, cv.h, 0, cv.w), zenith + (low - zenith) * t, OTHER)
    for _ in range(rng.integers(0, 6 if mood == 1 else 4)):
        cy, cx = rng.uniform(0.05, 0.7) * horizon, rng.uniform(0, cv.w)
        ry, rx = rng.uniform(0.02, 0.05) * cv.h, rng.uniform(0.05, 0.15) * cv.w
        puffs = [(cy + rng.uniform(-0.5, 0.3) * ry, cx + rng.uniform(-1, 1) * rx,
                  ry * rng.uniform(0.6, 1.2), rx * rng.uniform(0.3, 0.6))
                 for _ in range(rng.integers(3, 7))]
        cv.paint(cv.blobs(puffs), low + (250 - low) * rng.uniform(0.4, 0.8), OTHER, blob=0.04)
    return low


def _building(cv: _Canvas, rng: np.random.Generator, x0: float, x1: float, top: float,
              base: float, facade: np.ndarray, mood: int) -> None:
    h = cv.h
    cv.paint(cv.rect(top, base, x0, x1), facade, BUILDING, fine=0.03, blob=0.06)
    if rng.random() < 0.2:  # gable roof
        peak = top - rng.uniform(0.3, 0.6) * (x1 - x0)
        roof = [(top, x0 - 2), (top, x1 + 2), (peak, (x0 + x1) / 2)]
        cv.paint(cv.polygon(roof), _rgb(110, 60, 50) * rng.uniform(0.6, 1.2), BUILDING, fine=0.04)
    else:
        cv.paint(cv.rect(top, top + 0.015 * h, x0, x1), facade * 0.7, BUILDING)
    floor = rng.uniform(0.05, 0.09) * h
    bay = floor * rng.uniform(0.7, 1.4)
    win_h, win_w = floor * rng.uniform(0.4, 0.65), bay * rng.uniform(0.35, 0.65)
    shop = rng.random() < 0.5
    g = cv.grid(top + 0.6 * floor, base - (1.3 if shop else 0.4) * floor,
                x0 + 0.4 * bay, x1 - 0.4 * bay)
    if g is not None:
        r0, c0, yy, xx = g
        oy, ox = yy - (top + 0.6 * floor), xx - (x0 + 0.4 * bay)
        m = ((oy % floor) < win_h) & ((ox % bay) < win_w)
        # Each window gets its own shade of dark glass, or is lit (mostly at dusk).
        rows, cols = (oy // floor).astype(np.int64), (ox // bay).astype(np.int64)
        lit = rng.random((rows.max() + 1, cols.max() + 1)) < (0.4 if mood == 2 else 0.05)
        shades = rng.uniform(0.6, 1.4, lit.shape)[..., None]
        table = np.where(lit[..., None], _rgb(235, 205, 120), _jitter(rng, _rgb(55, 70, 95), 20))
        cv.paint((r0, c0, m), (table * shades)[rows, cols], BUILDING, fine=0.03)
    if shop:
        cv.paint(cv.rect(base - 0.9 * floor, base, x0 + 0.1 * bay, x1 - 0.1 * bay),
                 _rgb(40, 50, 60) * rng.uniform(0.7, 1.5), BUILDING, fine=0.05)
        if rng.random() < 0.6:  # awning
            cv.paint(cv.rect(base - 1.1 * floor, base - 0.85 * floor, x0, x1),
                     rng.uniform(40, 220, 3), BUILDING, fine=0.03)


def _buildings(cv: _Canvas, rng: np.random.Generator, horizon: float, mood: int,
               haze: np.ndarray) -> None:
    w, base = cv.w, horizon + 1
    if rng.random() < 0.6:  # distant row, washed out toward the sky colour
        x = -rng.uniform(0, 0.2) * w
        while x < w:
            bw = rng.uniform(0.08, 0.25) * w
            col = 0.5 * _pick(rng, FACADES) + 0.5 * haze
            cv.paint(cv.rect(horizon * rng.uniform(0.0, 0.6), base, x, x + bw), col, BUILDING,
                     fine=0.02, blob=0.03)
            x += bw
    x = -rng.uniform(0, 0.2) * w
    while x < w:
        if rng.random() < 0.15:  # a gap showing the sky
            x += rng.uniform(0.03, 0.12) * w
            continue
        bw = rng.uniform(0.12, 0.35) * w
        _building(cv, rng, x, x + bw, horizon * rng.uniform(-0.1, 0.75), base,
                  _pick(rng, FACADES, 20), mood)
        x += bw


@dataclass
class _Ground:
    """Perspective ground plane: u = (x - vx) / (y - vy) is constant along lines to the
    vanishing point, so sidewalks, verges and lane lines are simple intervals of u."""

    vy: float
    vx: float
    bands: list[tuple[float, float]]  # sidewalk intervals of u

    def x_range(self, y: float, band: int) -> tuple[float, float]:
        lo, hi = self.bands[band]
        return self.vx + lo * (y - self.vy), self.vx + hi * (y - self.vy)


def _ground(cv: _Canvas, rng: np.random.Generator, horizon: float) -> _Ground:
    h, w = cv.h, cv.w
    vy = horizon - rng.uniform(0.15, 0.6) * (h - horizon)
    vx = rng.uniform(0.3, 0.7) * w
    unit = 1.0 / (h - vy)  # converts a pixel offset at the bottom row into u
    inf = 1e9
    mode = rng.choice(["left", "right", "both", "plaza"], p=[0.3, 0.3, 0.25, 0.15])
    left_edge = (rng.uniform(0.5, 0.95) * w - vx) * unit  # where the road starts, if left
    right_edge = (rng.uniform(0.05, 0.5) * w - vx) * unit
    bands = {"left": [(-inf, max(left_edge, 0.15 * w * unit))],
             "right": [(min(right_edge, -0.15 * w * unit), inf)],
             "both": [(-inf, rng.uniform(-0.45, -0.2) * w * unit),
                      (rng.uniform(0.2, 0.45) * w * unit, inf)],
             "plaza": [(-inf, inf)]}[mode]
    g = cv.grid(horizon, h, 0, w)
    if g is None:
        return _Ground(vy, vx, bands)
    r0, c0, yy, xx = g
    d = yy - vy
    u, v = (xx - vx) / d, 1.0 / d
    box = (r0, c0)
    cv.paint((*box, np.ones(u.shape, bool)), _pick(rng, [_rgb(70, 70, 75), _rgb(95, 90, 85)]),
             OTHER, fine=0.06, blob=0.04)
    if mode != "plaza":  # dashed lane line halfway across the road
        if mode == "both":
            lane = 0.5 * (bands[0][1] + bands[1][0])
        else:
            lane = bands[0][1] + 0.3 * w * unit if mode == "left" else bands[0][0] - 0.3 * w * unit
        dash = (np.abs(u - lane) < 0.006 * w * unit) & ((v * (h - vy) * 4) % 1 < 0.5)
        cv.paint((*box, dash), _rgb(225, 220, 200), OTHER, fine=0.05)
    curb, verge = 0.015 * w * unit, rng.uniform(0.03, 0.08) * w * unit
    pad = verge if rng.random() < 0.4 else 0.0
    paving, grass = _pick(rng, PAVING), _pick(rng, GREENS)
    # Paving slabs: grout lines along u and v, and a slightly different tone per slab.
    tile = rng.uniform(0.06, 0.12) * w * unit
    tile_depth = tile * rng.uniform(0.5, 1.0) * unit
    line_px = max(1.0, 0.004 * w)
    iu = np.floor(u / tile).astype(np.int32)
    iv = np.floor(v / tile_depth).astype(np.int32)
    tone = rng.uniform(0.85, 1.1, 17).astype(np.float32)[(iu * 7 + iv * 3) % 17]
    tone[((u % tile) * d < line_px) | ((v % tile_depth) * d * d < line_px)] = 0.72
    for lo, hi in bands:
        lo_p, hi_p = lo - (pad + curb) * (lo > -inf), hi + (pad + curb) * (hi < inf)
        cv.paint((*box, (u >= lo_p) & (u <= hi_p)), paving * 1.15, SIDEWALK, fine=0.04)
        if pad:
            lo_v, hi_v = lo - pad * (lo > -inf), hi + pad * (hi < inf)
            cv.paint((*box, (u >= lo_v) & (u <= hi_v)), grass, PLANT, fine=0.12, blob=0.15)
        cv.paint((*box, (u >= lo) & (u <= hi)), paving, SIDEWALK, fine=0.05, blob=0.05, tone=tone)
    if rng.random() < 0.5:  # lawn strip along the building fronts
        cv.paint(cv.rect(horizon, horizon + rng.uniform(0.02, 0.06) * h, 0, w),
                 _pick(rng, GREENS), PLANT, fine=0.12, blob=0.2)
    return _Ground(vy, vx, bands)


def _tree(cv: _Canvas, rng: np.random.Generator, x: float, foot: float, scale: float) -> None:
    th = rng.uniform(2.0, 3.5) * scale
    cv.paint(cv.capsule((foot, x), (foot - 0.6 * th, x), 0.035 * th),
             _jitter(rng, _rgb(90, 60, 35)), PLANT, fine=0.1)
    cy, rad = foot - 0.72 * th, rng.uniform(0.2, 0.3) * th
    leaves = [(cy + rng.uniform(-0.6, 0.5) * rad, x + rng.uniform(-0.7, 0.7) * rad,
               rad * rng.uniform(0.45, 0.75), rad * rng.uniform(0.45, 0.75))
              for _ in range(rng.integers(5, 9))]
    cv.paint(cv.blobs(leaves), _pick(rng, GREENS, 15), PLANT, fine=0.12, blob=0.25)


def _bush(cv: _Canvas, rng: np.random.Generator, x: float, foot: float, scale: float) -> None:
    rx, ry = rng.uniform(0.3, 0.7) * scale, rng.uniform(0.2, 0.4) * scale
    parts = [(foot - ry * rng.uniform(0.4, 1.0), x + rng.uniform(-1, 1) * rx,
              ry * rng.uniform(0.5, 0.9), rx * rng.uniform(0.3, 0.6))
             for _ in range(rng.integers(3, 7))]
    cv.paint(cv.blobs(parts), _pick(rng, GREENS, 15), PLANT, fine=0.12, blob=0.25)


def _pole(cv: _Canvas, rng: np.random.Generator, x: float, foot: float, scale: float) -> None:
    ph = rng.uniform(1.8, 2.6) * scale
    col = _pick(rng, [_rgb(50, 50, 55), _rgb(40, 70, 50), _rgb(120, 120, 125)])
    top = foot - ph
    cv.paint(cv.capsule((foot, x), (top, x), 0.012 * ph), col, BUILDING, fine=0.05)
    if rng.random() < 0.5:  # street lamp with an arm
        arm = x + rng.choice([-1, 1]) * 0.12 * ph
        cv.paint(cv.capsule((top, x), (top, arm), 0.008 * ph), col, BUILDING)
        cv.paint(cv.ellipse(top + 0.02 * ph, arm, 0.025 * ph, 0.04 * ph),
                 _rgb(240, 230, 190), BUILDING, fine=0.03)
    else:  # sign panel
        cv.paint(cv.rect(top, top + 0.15 * ph, x - 0.08 * ph, x + 0.08 * ph),
                 _pick(rng, [_rgb(30, 80, 170), _rgb(200, 40, 40), _rgb(30, 130, 70)]),
                 BUILDING, fine=0.04)


def _cloth(rng: np.random.Generator) -> np.ndarray:
    if rng.random() < 0.4:
        return _pick(rng, [_rgb(40, 60, 110), _rgb(25, 25, 30), _rgb(120, 110, 90),
                           _rgb(110, 110, 115), _rgb(235, 235, 230)])
    return rng.uniform(20, 235, 3).astype(np.float32)


def _person(cv: _Canvas, rng: np.random.Generator, cx: float, foot: float, u: float,
            pid: int, purse_id: int) -> None:
    """Front-facing figure of height u with feet at row `foot`; purse_id 0 means no purse."""
    skin, hair = _pick(rng, SKINS, 10), _pick(rng, HAIRS, 10)
    top, legs_col, shoes = _cloth(rng), _cloth(rng), _pick(rng, [_rgb(30, 25, 20)], 25)
    bw = rng.uniform(0.85, 1.2)  # build

    def put(region, col, tex=0.05):
        cv.paint(region, col, PERSON, pid, fine=tex, blob=0.04)

    hip, shoulder, knee = foot - 0.47 * u, foot - 0.81 * u, foot - 0.26 * u
    cv.shade(cv.ellipse(foot, cx + rng.uniform(-0.1, 0.1) * u, 0.03 * u, 0.22 * u), 0.7)
    if rng.random() < 0.35:  # long hair falls behind the shoulders
        put(cv.capsule((foot - 0.9 * u, cx), (foot - 0.75 * u, cx), 0.065 * u), hair)
    dress = rng.random() < 0.2
    legs, shoe_blobs = [], []
    for side in (-1, 1):
        hx = cx + side * 0.045 * u * bw
        fx = hx + side * rng.uniform(-0.01, 0.04) * u
        kx = 0.5 * (hx + fx)
        legs += [(hip, hx, knee, kx, 0.045 * u * bw), (knee, kx, foot - 0.04 * u, fx, 0.04 * u)]
        shoe_blobs.append((foot - 0.02 * u, fx + side * 0.01 * u, 0.022 * u, 0.04 * u))
    put(cv.capsules(legs), skin if dress else legs_col)
    put(cv.blobs(shoe_blobs), shoes)
    hem = foot - rng.uniform(0.3, 0.4) * u if (dress or rng.random() < 0.2) else hip + 0.03 * u
    spread = 0.16 if hem > hip + 0.05 * u else 0.1
    put(cv.polygon([(shoulder, cx - 0.115 * u * bw), (shoulder, cx + 0.115 * u * bw),
                    (hem, cx + spread * u * bw), (hem, cx - spread * u * bw)]), top)
    put(cv.ellipse(shoulder + 0.035 * u, cx, 0.045 * u, 0.115 * u * bw), top)
    short_sleeves = rng.random() < 0.4
    bag_side = rng.choice([-1, 1])
    bag_kind = rng.integers(3)  # 0 handbag in hand, 1 shoulder bag, 2 cross-body
    hands, sleeves = {}, []
    bare = [(foot - 0.86 * u, cx, shoulder + 0.01 * u, cx, 0.025 * u)]  # neck, then hands
    for side in (-1, 1):
        sx, sy = cx + side * 0.1 * u * bw, shoulder + 0.03 * u
        ex, ey = cx + side * 0.15 * u * bw, foot - 0.64 * u
        hx, hy = cx + side * rng.uniform(0.13, 0.19) * u * bw, foot - 0.5 * u
        if purse_id and side == bag_side and bag_kind == 0:
            hx, hy = cx + side * 0.19 * u * bw, foot - 0.52 * u
        hands[side] = (hy, hx)
        sleeves.append((sy, sx, ey, ex, 0.033 * u))
        (bare if short_sleeves else sleeves).append((ey, ex, hy, hx, 0.028 * u))
        bare.append((hy, hx, hy, hx, 0.026 * u))
    put(cv.capsules(sleeves), top)
    put(cv.capsules(bare), skin)
    put(cv.ellipse(foot - 0.912 * u, cx, 0.064 * u, 0.058 * u), hair)
    put(cv.ellipse(foot - 0.897 * u, cx, 0.06 * u, 0.05 * u), skin)
    if rng.random() < 0.12:  # cap or hat
        hat = _cloth(rng)
        put(cv.ellipse(foot - 0.945 * u, cx, 0.04 * u, 0.06 * u), hat)
        put(cv.rect(foot - 0.945 * u, foot - 0.925 * u, cx - 0.08 * u, cx + 0.08 * u), hat)
    if not purse_id:
        return
    # The purse is drawn last so it sits in front of the body and arm, as in a photo.
    bw_, bh = rng.uniform(0.1, 0.15) * u, rng.uniform(0.07, 0.11) * u
    hy, hx = hands[bag_side]
    if bag_kind == 0:
        by, bx = hy + 0.04 * u, hx
    else:
        by, bx = hip - 0.02 * u, cx + bag_side * 0.2 * u * bw
    col = _pick(rng, LEATHER, 15)
    corners = [(by, bx - 0.4 * bw_), (by, bx + 0.4 * bw_)]

    def bag(region, c):
        cv.paint(region, c, PURSE, purse_id, fine=0.05, blob=0.04)

    strap = 0.01 * u
    if bag_kind == 0:  # two handles up to the hand
        bag(cv.capsules([(*c, hy - 0.01 * u, hx, strap) for c in corners]), col * 0.8)
    else:
        sx = cx + (bag_side if bag_kind == 1 else -bag_side) * 0.07 * u * bw
        bag(cv.capsule(corners[0 if bag_side < 0 else 1], (shoulder + 0.01 * u, sx), strap),
            col * 0.8)
    bag(cv.polygon([corners[0], corners[1], (by + bh, bx + 0.5 * bw_),
                    (by + bh, bx - 0.5 * bw_)]), col)
    bag(cv.rect(by, by + 0.35 * bh, bx - 0.4 * bw_, bx + 0.4 * bw_), col * 0.75)


def _finish(cv: _Canvas, rng: np.random.Generator, mood: int) -> np.ndarray:
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
        cast *= _rgb(1.08, 0.96, 0.86)
    rgb = cv.rgb
    rgb *= ramp[..., None] * (contrast * cast)
    sigma = rng.uniform(2.0, 7.0)
    noise = rng.random((h, w, 3), dtype=np.float32)
    noise *= 2 * sigma
    noise += (128.0 * (1.0 - contrast) + brightness) * cast - sigma
    rgb += noise
    return np.clip(rgb, 0, 255, out=rgb).astype(np.uint8)


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
    cv = _Canvas(h, w, rng)
    horizon = rng.uniform(0.36, 0.52) * h
    mood = int(rng.integers(len(SKIES)))
    haze = _sky(cv, rng, horizon, mood)
    _buildings(cv, rng, horizon, mood, haze)
    ground = _ground(cv, rng, horizon)
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
        standing.append((foot, lambda x=x, f=foot: _tree(cv, rng, x, f, f - horizon)))
    for _ in range(rng.integers(0, 4)):
        foot = horizon + rng.uniform(0.02, 0.3) * depth
        x = rng.uniform(0, w)
        scale = max(foot - horizon, 0.03 * h)
        standing.append((foot, lambda x=x, f=foot, s=scale: _bush(cv, rng, x, f, s)))
    if rng.random() < 0.5:
        foot = horizon + rng.uniform(0.15, 0.6) * depth
        x = kerb_or_anywhere(foot)
        standing.append((foot, lambda x=x, f=foot: _pole(cv, rng, x, f, f - horizon)))

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
                         _person(cv, rng, x, f, u, p, q)))
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
