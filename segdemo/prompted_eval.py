"""How many clicks a promptable model needs: NoC on real photos and on procedural images.

``python -m segdemo.evaluate click_net --data DIR`` runs the protocol on a folder in the
COCO MVal layout (``images/NAME.jpg``, ``masks/NAME.png`` with 0 background and 255 object)
and plots the mean IoU after each click. The protocol is ``segdemo.clicks``'s: the first
click at the object's deepest point, each next one at the deepest point of the larger error,
the previous mask's feedback handed back with every click, 20 clicks per object. Any
``Prompter`` runs it, and so does the classical baseline (``classical.RandomWalkerPrompter``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from segdemo.clicks import MAX_CLICKS, click_curve, clicks_to_reach, first_click, iou
from segdemo.data.composites import make_composite
from segdemo.data.flowers import make_flowers
from segdemo.data.scenes import make_scene
from segdemo.imaging import prepare_image, read_mask
from segdemo.prompts import Prompts, reaching
from segdemo.tasks.promptable import Prompter
from segdemo.tasks.prompted import propose, protocol_predictor
from segdemo.tasks.refine import edge_contrast
from segdemo.weights import REPO_ROOT

# The refinement's few weights (``tasks.refine.RefineSettings``) were chosen on every fourth
# object of the sorted COCO MVal folder; figures are also given for the other objects.
TUNING_EVERY = 4


@dataclass(frozen=True)
class NocResult:
    """IoU after each click for every object (``ious``: ``Nx20``) and the summary numbers."""

    names: list[str]
    ious: np.ndarray
    embed_ms: float  # mean milliseconds per image embedding
    click_ms: float  # mean milliseconds per click (prediction only)

    def noc(self, threshold: float, rows: np.ndarray | None = None) -> float:
        """Mean NoC over every object, or over ``rows`` (a boolean selection) of them."""
        each = self.noc_each(threshold)
        return float(np.mean(each if rows is None else each[rows]))

    def noc_each(self, threshold: float) -> np.ndarray:
        """``N``: each object's NoC."""
        return np.array([clicks_to_reach(list(row), threshold) for row in self.ious])

    def held_out(self) -> np.ndarray:
        """The objects the refinement was not tuned on (all but every ``TUNING_EVERY``-th), as a
        boolean selection of rows."""
        return np.array([k % TUNING_EVERY != 0 for k in range(len(self.names))])

    def summary(self) -> dict[str, float]:
        return {
            "objects": len(self.names),
            "miou_1click": round(float(self.ious[:, 0].mean()), 4),
            "miou_5clicks": round(float(self.ious[:, 4].mean()), 4),
            "noc85": round(self.noc(0.85), 2),
            "noc90": round(self.noc(0.90), 2),
            "noc90_held_out": round(self.noc(0.90, self.held_out()), 2),
            "largest_drop": round(float(min(0.0, np.diff(self.ious.mean(0)).min())), 4),
            "ms_embed": round(self.embed_ms, 1),
            "ms_click": round(self.click_ms, 1),
        }


def mean_and_error(values: np.ndarray) -> tuple[float, float]:
    """The mean of per-object ``values`` and its standard error: how far the mean could move
    on another draw of as many objects (two errors either side hold it about 95% of the
    time)."""
    values = np.asarray(values, np.float64)
    error = values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else float("nan")
    return float(values.mean()), float(error)


def lead(ahead: NocResult, behind: NocResult) -> dict[str, tuple[float, float]]:
    """How far ``ahead`` leads ``behind`` on the same objects, object by object, with standard
    errors (``mean_and_error``): clicks saved at NoC@85 and NoC@90, IoU gained at one click.
    Paired, so the objects that are hard for both do not widen the error."""
    assert ahead.names == behind.names, "a lead is measured on the same objects"
    return {
        "noc85": mean_and_error(behind.noc_each(0.85) - ahead.noc_each(0.85)),
        "noc90": mean_and_error(behind.noc_each(0.90) - ahead.noc_each(0.90)),
        "miou_1click": mean_and_error(ahead.ious[:, 0] - behind.ious[:, 0]),
    }


@torch.no_grad()
def noc_curves(
    prompter: Prompter, samples, max_clicks: int = MAX_CLICKS, refine_on_photo: bool = False
) -> NocResult:
    """Run the protocol on ``(name, HxWx3 uint8 image, HxW bool mask)`` samples, each mask
    refined on the photo (as the page does by default) when ``refine_on_photo``."""
    names, rows, embed_s, click_s, clicks = [], [], 0.0, 0.0, 0
    for name, image, mask in samples:
        prepared = prompter.prepare(image)
        embed_s += prepared.seconds
        predict = protocol_predictor(prompter, prepared, image if refine_on_photo else None)

        def timed(points, logits, predict=predict):
            nonlocal click_s, clicks
            began = time.perf_counter()
            result = predict(points, logits)
            click_s, clicks = click_s + time.perf_counter() - began, clicks + 1
            return result

        names.append(name)
        rows.append(click_curve(timed, mask, max_clicks))
    return NocResult(
        names, np.array(rows), 1000 * embed_s / max(1, len(names)), 1000 * click_s / max(1, clicks)
    )


@dataclass(frozen=True)
class FirstClickResult:
    """A lone click's masks, refined on the photo, on each object: the IoU of every mask
    (``ious``: ``NxK``, in the model's order; for ``click_net`` the whole image's view, then
    the close-up), the one shown (``shown``: ``N``, the ranking's pick), and whether the true
    outline follows the photo's edges more strongly than the shown mask (``truth_ahead``)."""

    names: list[str]
    ious: np.ndarray
    shown: np.ndarray
    truth_ahead: np.ndarray

    def summary(self) -> dict:
        rows = np.arange(len(self.names))
        picked = self.ious[rows, self.shown]
        return {
            "objects": len(self.names),
            "miou_each": [round(float(v), 4) for v in self.ious.mean(0)],
            "miou_shown": round(float(picked.mean()), 4),
            "miou_best": round(float(self.ious.max(1).mean()), 4),
            "best_shown": round(float(np.mean(picked >= self.ious.max(1))), 4),
            "truth_ahead": round(float(self.truth_ahead.mean()), 4),
        }


@torch.no_grad()
def first_click_masks(prompter: Prompter, samples) -> FirstClickResult:
    """The protocol's first click on each ``(name, image, mask)`` sample, as the page makes
    it (several masks where the model gives them, each refined on the photo, ranked by edge
    contrast): how good each mask is, and how often the ranking shows the best of them."""
    names, ious, shown, truth_ahead = [], [], [], []
    for name, image, truth in samples:
        prompts = Prompts((reaching(first_click(truth), None),))
        prediction = propose(prompter, prompter.prepare(image), prompts, photo=image)
        picked = prediction.masks[prediction.best]
        contrast = edge_contrast(image, np.stack([truth, picked]))
        names.append(name)
        ious.append([iou(mask, truth) for mask in prediction.masks])
        shown.append(prediction.best)
        truth_ahead.append(contrast[0] > contrast[1])
    return FirstClickResult(names, np.array(ious), np.array(shown), np.array(truth_ahead))


def folder_samples(data_dir: Path | str, limit: int | None = None):
    """``(name, image, mask)`` for every ``images/NAME.jpg`` with a ``masks/NAME.png``."""
    data_dir = Path(data_dir)
    suffixes = (".jpg", ".jpeg", ".png")
    paths = sorted(p for p in (data_dir / "images").iterdir() if p.suffix.lower() in suffixes)
    if not paths:
        raise FileNotFoundError(f"no images in {data_dir / 'images'}")
    for path in paths[:limit]:
        mask_path = data_dir / "masks" / f"{path.stem}.png"
        if not mask_path.is_file():
            continue
        prepared = prepare_image(path)
        mask = read_mask(mask_path)
        if mask.shape != prepared.original_size:
            raise ValueError(f"{mask_path.name}: {mask.shape}, image: {prepared.original_size}")
        # The protocol runs at the working size for very large photos.
        yield path.stem, prepared.pixels, prepared.mask_to_working(mask)


def curve_path(where: str) -> Path:
    """Where ``python -m segdemo.evaluate`` draws the IoU-vs-clicks curve of the objects
    ``where`` names (a data folder's name, or "procedural validation images")."""
    return REPO_ROOT / "docs" / f"prompted_{where.replace(' ', '_')}_curve.png"


VAL_SIZE = (384, 512)  # a photo's frame at the model's input size


def procedural_samples(count: int = 16, size: tuple[int, int] = VAL_SIZE, start: int = 0):
    """Objects on fresh validation images of the three generators (never trained on).

    ``count`` composites and ``count // 2`` flower and scene images from index ``start``.
    Per image one object, chosen without looking at any model: the largest composite object
    other than the background, the largest flower, the largest person or purse.
    """
    for index in range(start, start + count):
        c = make_composite(index, "val", size)
        ids, areas = np.unique(c.objects[c.objects > 0], return_counts=True)
        yield f"composite_{index}", c.image, c.objects == ids[np.argmax(areas)]
    for index in range(start, start + count // 2):
        f = make_flowers(index, "val", size)
        yield f"flowers_{index}", f.image, _largest_component(f.mask)
        s = make_scene(index, "val", size)
        ids, areas = np.unique(s.instances[s.instances > 0], return_counts=True)
        yield f"scene_{index}", s.image, s.instances == ids[np.argmax(areas)]


def _largest_component(mask: np.ndarray) -> np.ndarray:
    labels, count = ndimage.label(mask)
    if count == 0:
        return mask
    areas = np.bincount(labels.ravel())[1:]
    return labels == 1 + int(np.argmax(areas))


def procedural_prompted_validation(prompter: Prompter, count: int = 16) -> dict[str, float]:
    """The numbers stored with the shipped weights: ``val_*`` on fresh procedural images."""
    result = noc_curves(prompter, procedural_samples(count)).summary()
    return {
        "val_miou_1click": result["miou_1click"],
        "val_noc85": result["noc85"],
        "val_noc90": result["noc90"],
        "val_objects": result["objects"],
    }


def plot_curves(curves: dict[str, np.ndarray], path: Path | str, title: str) -> Path:
    """Mean IoU vs number of clicks, one line per model, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for label, ious in curves.items():
        clicks = np.arange(1, ious.shape[1] + 1)
        ax.plot(clicks, ious.mean(0), marker="o", markersize=3, label=label)
    for level in (0.85, 0.90):
        ax.axhline(level, color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="clicks", ylabel="mean IoU", title=title, ylim=(0, 1), xlim=(1, MAX_CLICKS))
    ax.set_xticks(range(1, MAX_CLICKS + 1))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
