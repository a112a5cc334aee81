"""Street scenery: the sky, buildings, the ground in perspective, trees, bushes and poles."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from segdemo.data.scene_canvas import (
    BUILDING,
    OTHER,
    PLANT,
    SIDEWALK,
    Canvas,
    jitter,
    pick,
    rgb,
)

# (zenith, horizon) colours; the index doubles as the lighting mood.
SKIES = [(rgb(60, 120, 205), rgb(175, 210, 240)),  # clear
         (rgb(135, 140, 150), rgb(205, 205, 210)),  # overcast
         (rgb(55, 45, 105), rgb(245, 150, 85)),  # dusk
         (rgb(120, 170, 220), rgb(225, 225, 215))]  # hazy
FACADES = [rgb(150, 70, 50), rgb(175, 95, 65), rgb(200, 180, 140), rgb(130, 130, 135),
           rgb(90, 95, 100), rgb(220, 210, 180), rgb(150, 170, 190), rgb(185, 140, 120)]
GREENS = [rgb(80, 140, 50), rgb(115, 160, 60), rgb(55, 105, 40), rgb(40, 85, 40),
          rgb(135, 160, 65)]
PAVING = [rgb(165, 165, 160), rgb(190, 178, 150), rgb(145, 140, 135), rgb(175, 130, 110)]


def sky(cv: Canvas, rng: np.random.Generator, horizon: float, mood: int) -> np.ndarray:
    zenith, low = (jitter(rng, c, 15) for c in SKIES[mood])
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


def _building(cv: Canvas, rng: np.random.Generator, x0: float, x1: float, top: float,
              base: float, facade: np.ndarray, mood: int) -> None:
    h = cv.h
    cv.paint(cv.rect(top, base, x0, x1), facade, BUILDING, fine=0.03, blob=0.06)
    if rng.random() < 0.2:  # gable roof
        peak = top - rng.uniform(0.3, 0.6) * (x1 - x0)
        roof = [(top, x0 - 2), (top, x1 + 2), (peak, (x0 + x1) / 2)]
        cv.paint(cv.polygon(roof), rgb(110, 60, 50) * rng.uniform(0.6, 1.2), BUILDING, fine=0.04)
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
        table = np.where(lit[..., None], rgb(235, 205, 120), jitter(rng, rgb(55, 70, 95), 20))
        cv.paint((r0, c0, m), (table * shades)[rows, cols], BUILDING, fine=0.03)
    if shop:
        cv.paint(cv.rect(base - 0.9 * floor, base, x0 + 0.1 * bay, x1 - 0.1 * bay),
                 rgb(40, 50, 60) * rng.uniform(0.7, 1.5), BUILDING, fine=0.05)
        if rng.random() < 0.6:  # awning
            cv.paint(cv.rect(base - 1.1 * floor, base - 0.85 * floor, x0, x1),
                     rng.uniform(40, 220, 3), BUILDING, fine=0.03)


def buildings(cv: Canvas, rng: np.random.Generator, horizon: float, mood: int,
              haze: np.ndarray) -> None:
    w, base = cv.w, horizon + 1
    if rng.random() < 0.6:  # distant row, washed out toward the sky colour
        x = -rng.uniform(0, 0.2) * w
        while x < w:
            bw = rng.uniform(0.08, 0.25) * w
            col = 0.5 * pick(rng, FACADES) + 0.5 * haze
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
                  pick(rng, FACADES, 20), mood)
        x += bw


@dataclass
class Ground:
    """Perspective ground plane: u = (x - vx) / (y - vy) is constant along lines to the
    vanishing point, so sidewalks, verges and lane lines are simple intervals of u."""

    vy: float
    vx: float
    bands: list[tuple[float, float]]  # sidewalk intervals of u

    def x_range(self, y: float, band: int) -> tuple[float, float]:
        lo, hi = self.bands[band]
        return self.vx + lo * (y - self.vy), self.vx + hi * (y - self.vy)


def ground(cv: Canvas, rng: np.random.Generator, horizon: float) -> Ground:
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
        return Ground(vy, vx, bands)
    r0, c0, yy, xx = g
    d = yy - vy
    u, v = (xx - vx) / d, 1.0 / d
    box = (r0, c0)
    cv.paint((*box, np.ones(u.shape, bool)), pick(rng, [rgb(70, 70, 75), rgb(95, 90, 85)]),
             OTHER, fine=0.06, blob=0.04)
    if mode != "plaza":  # dashed lane line halfway across the road
        if mode == "both":
            lane = 0.5 * (bands[0][1] + bands[1][0])
        else:
            lane = bands[0][1] + 0.3 * w * unit if mode == "left" else bands[0][0] - 0.3 * w * unit
        dash = (np.abs(u - lane) < 0.006 * w * unit) & ((v * (h - vy) * 4) % 1 < 0.5)
        cv.paint((*box, dash), rgb(225, 220, 200), OTHER, fine=0.05)
    curb, verge = 0.015 * w * unit, rng.uniform(0.03, 0.08) * w * unit
    pad = verge if rng.random() < 0.4 else 0.0
    paving, grass = pick(rng, PAVING), pick(rng, GREENS)
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
                 pick(rng, GREENS), PLANT, fine=0.12, blob=0.2)
    return Ground(vy, vx, bands)


def tree(cv: Canvas, rng: np.random.Generator, x: float, foot: float, scale: float) -> None:
    th = rng.uniform(2.0, 3.5) * scale
    cv.paint(cv.capsule((foot, x), (foot - 0.6 * th, x), 0.035 * th),
             jitter(rng, rgb(90, 60, 35)), PLANT, fine=0.1)
    cy, rad = foot - 0.72 * th, rng.uniform(0.2, 0.3) * th
    leaves = [(cy + rng.uniform(-0.6, 0.5) * rad, x + rng.uniform(-0.7, 0.7) * rad,
               rad * rng.uniform(0.45, 0.75), rad * rng.uniform(0.45, 0.75))
              for _ in range(rng.integers(5, 9))]
    cv.paint(cv.blobs(leaves), pick(rng, GREENS, 15), PLANT, fine=0.12, blob=0.25)


def bush(cv: Canvas, rng: np.random.Generator, x: float, foot: float, scale: float) -> None:
    rx, ry = rng.uniform(0.3, 0.7) * scale, rng.uniform(0.2, 0.4) * scale
    parts = [(foot - ry * rng.uniform(0.4, 1.0), x + rng.uniform(-1, 1) * rx,
              ry * rng.uniform(0.5, 0.9), rx * rng.uniform(0.3, 0.6))
             for _ in range(rng.integers(3, 7))]
    cv.paint(cv.blobs(parts), pick(rng, GREENS, 15), PLANT, fine=0.12, blob=0.25)


def pole(cv: Canvas, rng: np.random.Generator, x: float, foot: float, scale: float) -> None:
    ph = rng.uniform(1.8, 2.6) * scale
    col = pick(rng, [rgb(50, 50, 55), rgb(40, 70, 50), rgb(120, 120, 125)])
    top = foot - ph
    cv.paint(cv.capsule((foot, x), (top, x), 0.012 * ph), col, BUILDING, fine=0.05)
    if rng.random() < 0.5:  # street lamp with an arm
        arm = x + rng.choice([-1, 1]) * 0.12 * ph
        cv.paint(cv.capsule((top, x), (top, arm), 0.008 * ph), col, BUILDING)
        cv.paint(cv.ellipse(top + 0.02 * ph, arm, 0.025 * ph, 0.04 * ph),
                 rgb(240, 230, 190), BUILDING, fine=0.03)
    else:  # sign panel
        cv.paint(cv.rect(top, top + 0.15 * ph, x - 0.08 * ph, x + 0.08 * ph),
                 pick(rng, [rgb(30, 80, 170), rgb(200, 40, 40), rgb(30, 130, 70)]),
                 BUILDING, fine=0.04)
