"""People on the street, front-facing, some carrying a purse (both are instances)."""

from __future__ import annotations

import numpy as np

from segdemo.data.scene_canvas import PERSON, PURSE, Canvas, pick, rgb

SKINS = [rgb(250, 215, 180), rgb(235, 190, 150), rgb(200, 150, 110), rgb(160, 110, 75),
         rgb(110, 75, 50), rgb(80, 55, 40)]
HAIRS = [rgb(20, 15, 10), rgb(70, 45, 25), rgb(200, 170, 100), rgb(150, 150, 150),
         rgb(120, 50, 20)]
LEATHER = [rgb(120, 70, 40), rgb(30, 30, 30), rgb(180, 30, 40), rgb(190, 150, 90),
           rgb(230, 220, 200), rgb(60, 80, 150)]


def _cloth(rng: np.random.Generator) -> np.ndarray:
    if rng.random() < 0.4:
        return pick(rng, [rgb(40, 60, 110), rgb(25, 25, 30), rgb(120, 110, 90),
                          rgb(110, 110, 115), rgb(235, 235, 230)])
    return rng.uniform(20, 235, 3).astype(np.float32)


def person(cv: Canvas, rng: np.random.Generator, cx: float, foot: float, u: float,
           pid: int, purse_id: int) -> None:
    """Front-facing figure of height u with feet at row `foot`; purse_id 0 means no purse."""
    skin, hair = pick(rng, SKINS, 10), pick(rng, HAIRS, 10)
    top, legs_col, shoes = _cloth(rng), _cloth(rng), pick(rng, [rgb(30, 25, 20)], 25)
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
    col = pick(rng, LEATHER, 15)
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
