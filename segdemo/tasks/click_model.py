"""Prompting an early-fusion click model: click disks, the zoom-in crop, and its way back.

Each click runs the whole network, so it runs at a fixed working size (``working_size`` on the
long side) on a window of the image:

- the first click, with no mask yet, sees the whole image; asked for several masks, it also
  gets a close-up view (``CLOSE_UP`` of the image's long side around the click), since the
  network alone cannot tell a whole object from a small one (the refinement chooses between
  them on the photo, ``refine.edge_contrast``);
- every later click sees the zoom-in window of RITM: the box around the current mask and the
  positive clicks, widened ``expand`` times and at least a fifth of the image's long side, so
  a small object is looked at closely and a large one whole;
- a box prompt is its own window (widened a little), its centre a positive click unless the
  user clicked inside it, and nothing outside the box is ever in the mask.

The window's prediction is pasted into the previous full-size probability map, which is the
feedback for the next click: outside the window the previous answer stands, as in RITM.
Coordinates are working-image pixels, ``(x, y)``; a pixel's centre is at ``+0.5``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from segdemo.models.click_net import ClickNet
from segdemo.prompts import Box, Click, Prompts, disc
from segdemo.tasks.common import to_tensor
from segdemo.tasks.promptable import ImageState, Prediction

MIN_WINDOW = 0.2  # the zoom-in window's least side, as a share of the image's long side
BOX_MARGIN = 0.1  # a box window is the box widened by this share of its sides
CLOSE_UP = 0.35  # a lone click's second view: a window of this share of the long side


def click_maps(clicks: list[list[Click]], shape: tuple[int, int], radius: float) -> torch.Tensor:
    """``Bx2xHxW float32``: disks of ``radius`` around each sample's positive (channel 0) and
    negative (channel 1) clicks, which are ``(x, y)`` in these maps' pixels."""
    maps = np.zeros((len(clicks), 2, *shape), np.float32)
    for k, sample in enumerate(clicks):
        for click in sample:
            found = disc(shape, click.x, click.y, radius)
            if found is not None:  # a click outside this window still counts elsewhere
                (rows, cols), inside = found
                maps[k, 0 if click.positive else 1, rows, cols][inside] = 1.0
    return torch.from_numpy(maps)


@dataclass(frozen=True)
class Window:
    """A window of the image, ``[top, bottom) × [left, right)`` in working pixels."""

    top: int
    left: int
    bottom: int
    right: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.bottom - self.top, self.right - self.left

    def slices(self) -> tuple[slice, slice]:
        return slice(self.top, self.bottom), slice(self.left, self.right)


def _widened(x0, y0, x1, y1, factor: float, least: float, size: tuple[int, int]) -> Window:
    """The box scaled by ``factor`` about its centre, each side at least ``least``, shifted
    back inside the image where it sticks out (a side longer than the image is the image's)."""
    h, w = size
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    half_w = min(w, max(least, (x1 - x0) * factor)) / 2
    half_h = min(h, max(least, (y1 - y0) * factor)) / 2
    left = int(round(np.clip(cx - half_w, 0, w - 2 * half_w)))
    top = int(round(np.clip(cy - half_h, 0, h - 2 * half_h)))
    return Window(
        top, left, min(h, top + int(round(2 * half_h))), min(w, left + int(round(2 * half_w)))
    )


def focus_window(
    previous: np.ndarray | None, prompts: Prompts, size: tuple[int, int], expand: float
) -> Window:
    """The window the next prediction runs on (see the module's docstring)."""
    h, w = size
    if prompts.box is not None:
        x0, y0, x1, y1 = prompts.box.as_array()
        margin = BOX_MARGIN * max(x1 - x0, y1 - y0)
        return _widened(x0 - margin, y0 - margin, x1 + margin, y1 + margin, 1.0, 16, size)
    if previous is None or not previous.any():
        return Window(0, 0, h, w)
    rows, cols = np.flatnonzero(previous.any(1)), np.flatnonzero(previous.any(0))
    xs = np.concatenate([[cols[0], cols[-1] + 1], prompts.points[prompts.labels == 1, 0]])
    ys = np.concatenate([[rows[0], rows[-1] + 1], prompts.points[prompts.labels == 1, 1]])
    least = MIN_WINDOW * max(h, w)
    return _widened(xs.min(), ys.min(), xs.max(), ys.max(), expand, least, size)


def _with_box_click(prompts: Prompts) -> list[Click]:
    """The prompts' clicks; a box with no positive click inside gets one at its centre."""
    clicks, box = list(prompts.clicks), prompts.box
    if box is not None and not any(c.positive and _inside(c, box) for c in clicks):
        clicks.append(Click((box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2, True))
    return clicks


def _inside(click: Click, box: Box) -> bool:
    return box.x0 <= click.x <= box.x1 and box.y0 <= click.y <= box.y1


def self_estimated_iou(probability: np.ndarray, mask: np.ndarray) -> float:
    """How well the hard mask agrees with the model's own probabilities: the expected IoU if
    each pixel were the object with its predicted probability (1 for an empty, sure answer)."""
    inside = float(probability[mask].sum())
    union = float(mask.sum()) + float(probability[~mask].sum())
    return inside / union if union > 0 else 1.0


class ClickPrompter:
    """``Prompter`` for a ``ClickNet``: early fusion, one mask per prompt."""

    design = "early fusion"
    multimask = True  # a lone click: the whole image's view and a close-up

    def __init__(self, net: ClickNet):
        self.net = net

    def prepare(self, pixels: np.ndarray) -> ImageState:
        began = time.perf_counter()
        device = next(self.net.parameters()).device
        rgb = self.net.normalise(to_tensor(pixels).to(device))
        return ImageState(rgb, time.perf_counter() - began)

    @torch.no_grad()
    def predict(
        self, image: ImageState, prompts: Prompts, feedback, multimask: bool = False, early=None
    ) -> Prediction:
        rgb: torch.Tensor = image.value
        size = tuple(rgb.shape[-2:])
        expand, clicks = self.net.config.expand, _with_box_click(prompts)
        previous = None if feedback is None else np.asarray(feedback, np.float32)
        before = np.zeros(size, np.float32) if previous is None else previous
        shown = None if previous is None else previous > 0.5
        windows = [focus_window(shown, prompts, size, expand)]
        if multimask:
            x, y = clicks[0].x, clicks[0].y
            windows.append(_widened(x, y, x, y, 1.0, CLOSE_UP * max(size), size))
        outside = None if prompts.box is None else ~prompts.box.covers(size)

        def belief(window: Window) -> np.ndarray:
            probability = self._run(rgb, window, clicks, before)
            if outside is not None:  # a box says: nothing outside me
                probability[outside] = 0.0
            return probability

        whole = belief(windows[0])
        if early is not None:  # the whole view always ranks first (below): it is known now
            early(whole > 0.5)
        probabilities = np.stack([whole, *map(belief, windows[1:])])
        masks = probabilities > 0.5
        scores = np.array(list(map(self_estimated_iou, probabilities, masks)), np.float32)
        # On photos unlike those it learned from, its own estimate prefers the close-up too
        # often (mIoU@1 0.25, against 0.35 keeping the whole view, on COCO MVal's 40 tuning
        # objects), so on its own it keeps the whole image's view first; refined, the photo's
        # edges rank the two.
        scores[1:] = np.minimum(scores[1:], scores[0])
        return Prediction(masks, scores, tuple(probabilities), probabilities)

    def shown(self, feedback, mask: np.ndarray) -> np.ndarray:
        # The network reads back the mask the user saw: the refined one, which obeys every
        # click, rather than its own proposal. Kept as it is (bool, the step's own mask, no
        # copy), it is read as 0 and 1 like a probability map.
        return mask

    def _run(
        self, rgb: torch.Tensor, window: Window, clicks: list[Click], before: np.ndarray
    ) -> np.ndarray:
        """The network on ``window`` at the working size; its probabilities pasted into a
        copy of ``before`` (``HxW float32``, the previous full-size map)."""
        (rows, cols), (wh, ww) = window.slices(), window.shape
        scale = self.net.config.working_size / max(wh, ww)
        shape = (max(1, round(wh * scale)), max(1, round(ww * scale)))
        sy, sx = shape[0] / wh, shape[1] / ww
        local = [  # pixel centres map onto pixel centres
            Click(
                (c.x + 0.5 - window.left) * sx - 0.5,
                (c.y + 0.5 - window.top) * sy - 0.5,
                c.positive,
            )
            for c in clicks
        ]
        device = rgb.device
        inputs = torch.cat(
            [
                _resized(rgb[..., rows, cols], shape),
                click_maps([local], shape, self.net.config.click_radius).to(device),
                _resized(torch.from_numpy(before[rows, cols])[None, None].to(device), shape),
            ],
            1,
        )
        logits = _resized(self.net(inputs), (wh, ww))
        probability = before.copy()
        probability[rows, cols] = torch.sigmoid(logits)[0, 0].float().cpu().numpy()
        return probability


def _resized(x: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(shape):
        return x
    return F.interpolate(x, size=shape, mode="bilinear", align_corners=False)
