"""Refinement on the photo: the network proposes a mask, this photo's colours and edges decide it.

A network trained on generated pictures knows the shape of "the thing under the click" but not
this object's colours or where its edges run. A per-image energy brings those in (GrabCut's
idea, Rother et al. 2004), solved exactly by one graph cut (PyMaxflow's Boykov–Kolmogorov):

- **unary**: the network's log-odds (a soft prior, not a split at 0.5) plus the log-ratio of
  two colour histograms of this photo, the object's and the background's, fitted first to the
  mask shown before this prompt (the proposal at the first click), then to the cut itself
  unless the cut hardly moved from that mask (a correction usually moves only a sliver);
- **pairwise**: a contrast-sensitive Potts term over the 8 neighbours, so the boundary prefers
  the photo's edges;
- **hard labels**: every clicked disc keeps its label, and nothing outside a box is object;
  and (``star``, on by default) the object is kept star-convex about its positive clicks.

``edge_contrast`` scores refined masks by how well their outlines follow the photo's edges,
to rank several masks for one click.

It runs on a window around the proposal, the previous mask and the clicks, at
``RefineSettings.side`` pixels on its long side (``first_side`` for a first prompt; small
objects are looked at closely, as the click model's zoom-in does); outside the window the
proposal stands. Inputs and outputs are the working image's pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import maxflow
import numpy as np

from segdemo.prompts import Box, Click, disc


@dataclass(frozen=True)
class RefineSettings:
    """The energy's weights and the working size. The defaults were chosen on every fourth
    COCO MVal photo (40 objects, ``segdemo.prompted_eval.TUNING_EVERY``) and are reported on all
    160 and on the 120 others (``python -m segdemo.evaluate``)."""

    # Long side of the window a correction's cut runs on, in pixels. The solver's time grows
    # steeply with it: on the benchmark's recorded corrections a refinement took 28 / 58 ms
    # (median / p90) at 176 px against 43 / 83 at 200, for NoC@90 7.15 against 7.30 on the
    # tuning objects; smaller windows need more clicks (160 px: 23 / 51 ms, but 7.53).
    side: int = 176
    margin: float = 0.4  # the window: the proposal's and clicks' box widened by this share
    least: float = 0.25  # ... and at least this share of the image's long side
    network: float = 0.25  # weight of the network's log-odds
    colour: float = 1.0  # weight of the colour log-ratio
    smooth: float = 20.0  # weight of the contrast-sensitive boundary term
    bins: int = 16  # colour histogram bins per channel
    iterations: int = 2  # colour fits: the first on the starting labels, the next on the cut
    settled: float = 0.01  # no refit once a cut moves less than this share of the window
    star: bool = True  # the object star-convex about its positive clicks
    # A prompt with no mask shown before it (a lone click, a first box) has its own window
    # and weights. Its cut moves a rough proposal the farthest, which makes the solver's time
    # grow steeply with the window: on the benchmark's real photos a whole view's cut took a
    # median of 102 ms at 200 px and 48 ms at 160, for the same MVal figures within 0.1 click.
    first_side: int = 160
    # The network's first mask on a photo is a blob of about the same size whatever the
    # object: a first cut trusts this photo's colours over it, and its edges less.
    first_network: float = 0.08
    first_smooth: float = 7.0

    def for_first_prompt(self) -> RefineSettings:
        """The settings of a prompt with no mask shown before it."""
        return replace(
            self, side=self.first_side, network=self.first_network, smooth=self.first_smooth
        )


DEFAULT = RefineSettings()
HARD = 1e9  # a hard label's cost: no cut pays it


def window_around(
    proposal: np.ndarray, clicks: tuple[Click, ...], box: Box | None, settings: RefineSettings
) -> tuple[slice, slice]:
    """Rows and columns of the window the cut runs on: the box around the proposed object and
    the clicks, widened, inside a given box (widened a little)."""
    h, w = proposal.shape
    rows, cols = np.flatnonzero(proposal.any(1)), np.flatnonzero(proposal.any(0))
    xs = [c.x for c in clicks] + ([cols[0], cols[-1] + 1] if cols.size else [])
    ys = [c.y for c in clicks] + ([rows[0], rows[-1] + 1] if rows.size else [])
    if box is not None:
        xs, ys = [box.x0, box.x1], [box.y0, box.y1]
    if not xs:
        return slice(0, h), slice(0, w)
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    pad_x = max(settings.margin * (x1 - x0), (settings.least * max(h, w) - (x1 - x0)) / 2, 2)
    pad_y = max(settings.margin * (y1 - y0), (settings.least * max(h, w) - (y1 - y0)) / 2, 2)
    top, bottom = max(0, int(y0 - pad_y)), min(h, int(np.ceil(y1 + pad_y)))
    left, right = max(0, int(x0 - pad_x)), min(w, int(np.ceil(x1 + pad_x)))
    return slice(top, bottom), slice(left, right)


def refine(
    pixels: np.ndarray,
    probability: np.ndarray,
    clicks: tuple[Click, ...] = (),
    box: Box | None = None,
    previous: np.ndarray | None = None,
    settings: RefineSettings = DEFAULT,
) -> np.ndarray:
    """The mask this photo supports, near the network's proposal.

    pixels: ``HxWx3 uint8`` RGB; probability: ``HxW float32`` in [0, 1], the network's
    probability of the object; clicks and box in the same pixels; previous: ``HxW bool``, the
    mask shown before this prompt, or None. Returns ``HxW bool``.

    The colours are first fitted to the previous mask where there is one: it already obeys
    every earlier click, while a network answering a correction can lose the whole object.
    """
    if previous is None:
        settings = settings.for_first_prompt()
    h, w = probability.shape
    proposal = probability > 0.5
    around = proposal if previous is None else proposal | previous
    rows, cols = window_around(around, clicks, box, settings)
    wh, ww = rows.stop - rows.start, cols.stop - cols.start
    scale = min(1.0, settings.side / max(wh, ww))
    size = (max(1, round(ww * scale)), max(1, round(wh * scale)))  # cv2's (width, height)
    image = cv2.resize(pixels[rows, cols], size, interpolation=cv2.INTER_AREA)
    prior = cv2.resize(probability[rows, cols], size, interpolation=cv2.INTER_AREA)
    sy, sx = size[1] / wh, size[0] / ww

    def to_window(x: float, y: float) -> tuple[float, float]:  # pixel centres onto centres
        return (x + 0.5 - cols.start) * sx - 0.5, (y + 0.5 - rows.start) * sy - 0.5

    labels = _hard_labels((size[1], size[0]), clicks, box, (h, w), scale, to_window)
    start = prior  # what the colours are first fitted to: the proposal, or the mask shown
    if previous is not None:
        start = cv2.resize(previous[rows, cols].astype(np.float32), size, cv2.INTER_AREA)
    centres = [to_window(c.x, c.y) for c in clicks if c.positive]
    cut = cut_mask(image, prior, labels, start, settings, centres)
    mask = proposal.copy()
    mask[rows, cols] = cv2.resize(cut.astype(np.float32), (ww, wh), cv2.INTER_LINEAR) > 0.5
    if box is not None:
        mask &= box.covers((h, w))
    return mask


def edge_contrast(pixels: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """How strongly the photo's edges run along each of ``masks``' (``CxHxW bool``)
    boundaries: the mean gradient magnitude in a 3-pixel band on it, over the whole image's
    mean (``C float32``; 0 for an empty mask). A mask that follows an object's outline scores
    high; one cut through its middle or into the background, low. It ranks a lone click's
    several refined masks, as a model's own score cannot on a photo unlike those it learned
    from. The photo's gradient is computed once for all of them."""
    grey = cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY).astype(np.float32)
    gradient = cv2.magnitude(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1))
    overall, square = gradient.mean() + 1e-6, np.ones((3, 3), np.uint8)
    scores = np.zeros(len(masks), np.float32)
    for k, mask in enumerate(masks):
        solid = mask.astype(np.uint8)
        band = (cv2.dilate(solid, square) > 0) & ~(cv2.erode(solid, square) > 0)
        if band.any():
            scores[k] = gradient[band].mean() / overall
    return scores


def _hard_labels(shape, clicks, box, image_shape, scale, to_window) -> np.ndarray:
    """``HxW int8`` at the cut's size (``scale`` × the image's): 1 object, -1 background,
    0 free."""
    labels = np.zeros(shape, np.int8)
    if box is not None:
        bx0, by0 = to_window(box.x0, box.y0)
        bx1, by1 = to_window(box.x1, box.y1)
        labels[~Box(bx0, by0, bx1, by1).covers(shape)] = -1
    for click in clicks:
        radius = click.disc_radius(image_shape) * scale
        found = disc(shape, *to_window(click.x, click.y), max(radius, 1.0))
        if found is not None:
            (r, c), inside = found
            labels[r, c][inside] = 1 if click.positive else -1
    return labels


def cut_mask(
    image: np.ndarray,
    prior: np.ndarray,
    labels: np.ndarray,
    start: np.ndarray,
    settings: RefineSettings = DEFAULT,
    centres: list[tuple[float, float]] = (),
) -> np.ndarray:
    """The graph cut on one window: ``HxWx3 uint8``, prior ``HxW float32`` in [0, 1], hard
    ``labels`` (1 object, -1 background, 0 free), ``start`` ``HxW float32`` in [0, 1] the
    labels the colours are first fitted to -> ``HxW bool``.

    Each colour fit changes only the unary, so one graph serves them all: the next cut starts
    from the last one's flow and search trees (Kohli and Torr 2005) instead of from nothing.
    The fits stop early once a cut moves less than ``settings.settled`` of the window (on
    average) from the labels its colours were fitted to."""
    colours = _colour_bins(image, settings.bins)
    p = np.clip(prior, 0.02, 0.98)
    network = settings.network * np.log(p / (1 - p))
    star = centres if settings.star else ()
    cut = _Cut(labels, _links(image.astype(np.float32), settings.smooth, star))
    soft = np.where(labels == 0, start, labels > 0).astype(np.float64)
    mask = soft > 0.5
    for _ in range(settings.iterations):
        ratio = _colour_log_ratio(colours, soft, settings.bins)
        mask = cut.solve(network + settings.colour * ratio)
        # A cut this close to the labels its colours came from would refit nearly the same
        # colours: the usual case for a correction, which moves a sliver of the mask shown.
        moved = np.abs(mask - soft).mean()
        soft = mask.astype(np.float64)
        if moved < settings.settled:
            break
    return mask


def _colour_bins(image: np.ndarray, bins: int) -> np.ndarray:
    q = (image.astype(np.int32) * bins) >> 8
    return (q[..., 0] * bins + q[..., 1]) * bins + q[..., 2]


def _colour_log_ratio(colours: np.ndarray, weight: np.ndarray, bins: int) -> np.ndarray:
    """``log P(colour | object) - log P(colour | background)`` per pixel, from histograms
    weighted by ``weight`` (object) and ``1 - weight``, each smoothed by a uniform prior.
    A clicked disc counts with its label (the ``weight`` there is 0 or 1)."""
    flat, n = colours.ravel(), bins**3
    fg = np.bincount(flat, weight.ravel(), n) + 0.5
    bg = np.bincount(flat, 1 - weight.ravel(), n) + 0.5
    ratio = np.log(fg / fg.sum()) - np.log(bg / bg.sum())
    return np.clip(ratio[colours], -6, 6)


# The four links of a pixel to its next neighbours, as (rows, columns) offsets; with the
# reverse links of the pixels before it, every pixel meets all 8 neighbours.
RIGHT, DOWN, DOWN_RIGHT, DOWN_LEFT = (0, 1), (1, 0), (1, 1), (1, -1)
OFFSETS = (RIGHT, DOWN, DOWN_RIGHT, DOWN_LEFT)


def _pairs(shape: tuple[int, int], offset: tuple[int, int]) -> tuple[tuple[slice, slice], ...]:
    """The pixels that have a neighbour at ``offset``, and those neighbours, as index pairs."""
    h, w = shape
    dy, dx = offset
    here = (slice(0, h - dy), slice(max(0, -dx), w - max(0, dx)))
    there = (slice(dy, h), slice(max(0, dx), w - max(0, -dx)))
    return here, there


def _links(image: np.ndarray, smooth: float, centres=()) -> tuple[np.ndarray, ...]:
    """The graph's links between neighbours as ``(heads, tails, forward, backward)``: node
    indices and the capacities both ways.

    The boundary term is a contrast-sensitive Potts weight (GrabCut's ``exp(-beta |dI|^2)``,
    beta from the window's mean contrast; diagonal links weigh 1/sqrt(2)), the same both
    ways. With ``centres`` (positive clicks) the object is also kept star-convex about them
    (Veksler 2008; Gulshan et al. 2010, the nearest click as each pixel's centre): a link
    from an object pixel to the next pixel on its straight way to that click costs ``HARD``
    when cut, so the mask is one piece around each click, without holes or islands the clicks
    did not ask for."""
    shape = image.shape[:2]
    ids = np.arange(shape[0] * shape[1]).reshape(shape)
    step = _steps_to_centres(shape, np.asarray(centres, np.float64)) if len(centres) else None
    pairs = [_pairs(shape, offset) for offset in OFFSETS]
    channels = np.ascontiguousarray(np.moveaxis(image, -1, 0))  # a channel's pixels side by side
    squared = [sum((c[here] - c[there]) ** 2 for c in channels) for here, there in pairs]
    beta = 1.0 / (2 * max(1e-6, np.mean(squared[0]) / 2 + np.mean(squared[1]) / 2))
    heads, tails, forward, backward = [], [], [], []
    for offset, (here, there), sq in zip(OFFSETS, pairs, squared, strict=True):
        weight = smooth * np.exp(-beta * sq) / np.hypot(*offset)
        ahead, back = weight, weight
        if step is not None:
            ahead = weight + HARD * ((step[0][here] == offset[0]) & (step[1][here] == offset[1]))
            back = weight + HARD * ((step[0][there] == -offset[0]) & (step[1][there] == -offset[1]))
        heads.append(ids[here].ravel())
        tails.append(ids[there].ravel())
        forward.append(np.ravel(ahead))
        backward.append(np.ravel(back))
    return tuple(np.concatenate(part) for part in (heads, tails, forward, backward))


def _steps_to_centres(shape: tuple[int, int], centres: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per pixel, the step (rows, columns), each -1, 0 or 1, to the neighbour on its straight
    way to the nearest of ``centres`` (``Nx2`` x, y); (0, 0) at a centre itself."""
    h, w = shape
    ys, xs = (axis.astype(np.float64) for axis in np.ogrid[:h, :w])
    nearest, closest = np.zeros(shape, np.intp), np.full(shape, np.inf)
    for k, (x, y) in enumerate(centres):  # the first of equally near centres, as argmin's
        distance = (xs - x) ** 2 + (ys - y) ** 2
        nearest = np.where(distance < closest, k, nearest)
        closest = np.minimum(distance, closest)
    dx, dy = centres[nearest, 0] - xs, centres[nearest, 1] - ys
    tan_22_5 = np.tan(np.pi / 8)  # the 8 neighbours each cover 45 degrees of directions
    step_x = np.where(np.abs(dx) > tan_22_5 * np.abs(dy), np.sign(dx), 0).astype(np.int8)
    step_y = np.where(np.abs(dy) > tan_22_5 * np.abs(dx), np.sign(dy), 0).astype(np.int8)
    return step_y, step_x


class _Cut:
    """A min-cut over one window's grid whose links stay while the unary changes. The source
    side is the object: a pixel left on the sink side pays its source capacity."""

    def __init__(self, labels: np.ndarray, links: tuple[np.ndarray, ...]):
        self.labels, self.free = labels, labels == 0
        heads, tails, forward, backward = links
        self.graph = maxflow.Graph[float](labels.size, heads.size)
        self.nodes = self.graph.add_grid_nodes(labels.shape)
        self.graph.add_edges(heads, tails, forward, backward)
        self.to_object = self.to_background = None

    def solve(self, unary: np.ndarray) -> np.ndarray:
        """The object pixels for ``unary``, the log-odds of object per pixel (hard labels
        keep theirs)."""
        to_object = np.where(self.free, np.maximum(unary, 0), HARD * (self.labels > 0))
        to_background = np.where(self.free, np.maximum(-unary, 0), HARD * (self.labels < 0))
        if self.to_object is None:
            self.graph.add_grid_tedges(self.nodes, to_object, to_background)
            self.graph.maxflow()
        else:  # only the free pixels' capacities change: add the difference, mark them
            changed = self.nodes[self.free]
            self.graph.add_grid_tedges(
                changed,
                (to_object - self.to_object)[self.free],
                (to_background - self.to_background)[self.free],
            )
            self.graph.mark_grid_nodes(changed)
            self.graph.maxflow(reuse_trees=True)
        self.to_object, self.to_background = to_object, to_background
        return ~self.graph.get_grid_segments(self.nodes)
