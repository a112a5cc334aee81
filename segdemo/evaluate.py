"""Quality tables: ``python -m segdemo.evaluate [NAME ...]`` prints them and writes docs/.

Flower models are scored on fresh validation images from the generator's ``val`` split (never
seen in training): foreground IoU pooled over the set, and milliseconds per image. Scene
(semantic) models are scored the same way on validation street scenes: per-class IoU pooled
over the set, its mean over the six classes (mIoU), the same mIoU counted only within a few
pixels of true class boundaries, and latency per image. Instance models are scored with
COCO's own evaluation (pycocotools ``COCOeval``) on validation street scenes: mask and box AP
(IoU 0.50:0.95) and AP50, and latency on a 640×480 scene.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from segdemo.coco import SIZE_RANGES, CocoScorer
from segdemo.data.flowers import make_flowers
from segdemo.data.scenes import CLASS_NAMES, make_scene
from segdemo.heap import keep_freed_memory
from segdemo.metrics import PooledIoU
from segdemo.models.maskrcnn import class_names
from segdemo.prompted_eval import (
    curve_path,
    first_click_masks,
    folder_samples,
    lead,
    mean_and_error,
    noc_curves,
    plot_curves,
    procedural_samples,
)
from segdemo.registry import is_available, load_model
from segdemo.tasks.classical import ClickDiscsPrompter, RandomWalkerPrompter
from segdemo.tasks.common import run_on_pixels, sigmoid
from segdemo.tasks.instances import detect, scene_truth
from segdemo.tasks.patch_classify import classify_segment
from segdemo.tasks.promptable import Prompter
from segdemo.tasks.prompted import prompter_for
from segdemo.tasks.semantic import BOUNDARY_RADIUS, ConfusionMatrix, boundary_band, segment
from segdemo.weights import REPO_ROOT


@dataclass(frozen=True)
class ValidationSet:
    start: int
    count: int
    size: tuple[int, int]


VAL_FLOWERS = ValidationSet(start=0, count=48, size=(192, 256))
FLOWER_MODELS = ("patch_classifier", "upsample_transposed", "upsample_bilinear")
VAL_SCENES = ValidationSet(start=0, count=48, size=(240, 320))
SCENE_MODELS = ("unet", "unet_noskip")
LATENCY_SIZE = (512, 512)
VAL_INSTANCES = ValidationSet(start=0, count=200, size=(240, 320))
INSTANCE_MODELS = ("maskrcnn",)
INSTANCE_LATENCY_SIZE = (480, 640)
# Scenes keep every instance with at least one visible pixel: people almost hidden behind
# others, purses of a few pixels. The second set of instance metrics ignores the ones smaller
# than this (a 4×5-pixel blob in a 240×320 scene), as COCOeval ignores "crowd" regions.
MIN_INSTANCE_AREA = 20
PROMPTED_MODELS = ("click_net", "sam_tiny", "sam_vit_b", "sam_vit_l", "sam_vit_h")


@torch.no_grad()
def flower_probability(name: str, model: torch.nn.Module, pixels: np.ndarray) -> np.ndarray:
    """Full-resolution flower probability (HxW) of one flower model."""
    if name == "patch_classifier":
        return classify_segment(pixels, model).probability
    return sigmoid(run_on_pixels(model, pixels))


@torch.no_grad()
def flower_validation(
    name: str, model: torch.nn.Module | None = None, data: ValidationSet = VAL_FLOWERS
) -> dict[str, float]:
    """Pooled IoU at threshold 0.5 and milliseconds per image on validation flowers."""
    model = model if model is not None else load_model(name)
    model.eval()
    score, seconds = PooledIoU(), 0.0
    for index in range(data.start, data.start + data.count):
        sample = make_flowers(index, "val", data.size)
        began = time.perf_counter()
        probability = flower_probability(name, model, sample.image)
        seconds += time.perf_counter() - began
        score.add(probability >= 0.5, sample.mask)
    return {"val_iou": round(score.value, 4), "ms_per_image": round(1000 * seconds / data.count, 1)}


def flower_table(names=FLOWER_MODELS) -> str:
    h, w = VAL_FLOWERS.size
    rows = [
        f"Validation: {VAL_FLOWERS.count} fresh procedural flower images ({h}×{w}, split 'val'), "
        f"{torch.get_num_threads()} CPU threads.",
        "",
        "| model | validation IoU | ms / image |",
        "|---|---|---|",
    ]
    for name in names:
        if not is_available(name):
            rows.append(f"| {name} | weights missing | |")
            continue
        m = flower_validation(name)
        rows.append(f"| `{name}` | {m['val_iou']:.3f} | {m['ms_per_image']:.1f} |")
    return "\n".join(rows)


@torch.no_grad()
def scene_validation(
    name: str, model: torch.nn.Module | None = None, data: ValidationSet = VAL_SCENES
) -> dict:
    """mIoU, per-class IoU, boundary mIoU and milliseconds per image on validation scenes."""
    model = model if model is not None else load_model(name)
    model.eval()
    whole, band, seconds = ConfusionMatrix(), ConfusionMatrix(), 0.0
    for index in range(data.start, data.start + data.count):
        scene = make_scene(index, "val", data.size)
        result = segment(scene.image, model)
        seconds += result.seconds
        whole.add(result.labels, scene.labels)
        band.add(result.labels, scene.labels, boundary_band(scene.labels))
    return {
        "val_miou": round(whole.mean_iou, 4),
        "val_boundary_miou": round(band.mean_iou, 4),
        "per_class_iou": {
            c: round(float(v), 4) for c, v in zip(CLASS_NAMES, whole.iou, strict=True)
        },
        "ms_per_image": round(1000 * seconds / data.count, 1),
    }


@torch.no_grad()
def latency_ms(name: str, size: tuple[int, int] = LATENCY_SIZE, repeats: int = 10) -> float:
    """Median wall time in ms of one forward pass on a random ``size`` image (after warm-up)."""
    model = load_model(name)
    pixels = np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8)
    times = [segment(pixels, model).seconds for _ in range(repeats + 2)][2:]
    return round(1000 * float(np.median(times)), 1)


def scene_table(names=SCENE_MODELS) -> str:
    h, w = VAL_SCENES.size
    short = [c.split("/")[0] for c in CLASS_NAMES]
    rows = [
        f"Validation: {VAL_SCENES.count} fresh procedural street scenes ({h}×{w}, split 'val'), "
        f"{torch.get_num_threads()} CPU threads. Boundary mIoU counts only pixels within "
        f"{BOUNDARY_RADIUS} px of a true class boundary. Latency: median forward pass on a "
        f"{LATENCY_SIZE[0]}×{LATENCY_SIZE[1]} image.",
        "",
        "| model | mIoU | boundary mIoU | " + " | ".join(short) + " | ms / image | ms / 512² |",
        "|---|---|---|" + "---|" * len(short) + "---|---|",
    ]
    for name in names:
        if not is_available(name):
            rows.append(f"| {name} | weights missing |" + " |" * (len(short) + 3))
            continue
        m = scene_validation(name)
        per_class = " | ".join(f"{m['per_class_iou'][c]:.3f}" for c in CLASS_NAMES)
        rows.append(
            f"| `{name}` | {m['val_miou']:.3f} | {m['val_boundary_miou']:.3f} | {per_class} | "
            f"{m['ms_per_image']:.1f} | {latency_ms(name):.1f} |"
        )
    return "\n".join(rows)


@torch.no_grad()
def instance_validation(
    name: str, model: torch.nn.Module | None = None, data: ValidationSet = VAL_INSTANCES
) -> dict:
    """COCOeval mask/box AP and AP50 (overall and per class), ms per image, on val scenes;
    then mask/box AP and AP50 again with instances under ``MIN_INSTANCE_AREA`` pixels ignored.

    Every detection the model returns is scored (torchvision's default score floor, 0.05);
    masks are its probabilities thresholded at 0.5, as in the Mask R-CNN paper.
    """
    model = model if model is not None else load_model(name)
    model.eval()
    scorer, seconds = CocoScorer(class_names(name)), 0.0
    for index in range(data.start, data.start + data.count):
        scene = make_scene(index, "val", data.size)
        found = detect(model, scene.image)
        seconds += found.seconds
        truth_masks, truth_labels = scene_truth(scene)
        scorer.add(
            list(truth_masks),
            list(truth_labels),
            found.boxes,
            found.labels,
            found.scores,
            found.masks >= 0.5,
        )
    metrics = {f"val_{k}": v for k, v in scorer.evaluate().items()}
    ignoring = scorer.evaluate(min_area=MIN_INSTANCE_AREA)
    for key in ("mask_ap", "mask_ap50", "box_ap", "box_ap50"):
        metrics[f"val_{key}_min{MIN_INSTANCE_AREA}px"] = ignoring[key]
    metrics["ms_per_image"] = round(1000 * seconds / data.count, 1)
    return metrics


@torch.no_grad()
def instance_latency_ms(
    model: torch.nn.Module, size: tuple[int, int] = INSTANCE_LATENCY_SIZE, repeats: int = 10
) -> float:
    """Median ms of one detector call on a validation scene rendered at ``size`` (HxW)."""
    pixels = make_scene(0, "val", size).image
    times = [detect(model, pixels).seconds for _ in range(repeats + 2)][2:]
    return round(1000 * float(np.median(times)), 1)


def instance_table(names=INSTANCE_MODELS) -> str:
    h, w = VAL_INSTANCES.size
    lh, lw = INSTANCE_LATENCY_SIZE
    rows = [
        f"Validation: {VAL_INSTANCES.count} fresh procedural street scenes ({h}×{w}, split "
        "'val'), person and purse instances, scored by pycocotools COCOeval (AP = mean over IoU "
        f"0.50:0.95 and classes). {torch.get_num_threads()} CPU threads; latency is the median "
        f"call on a {lw}×{lh} scene.",
        "",
        "| model | mask AP | mask AP50 | box AP | box AP50 | mask AP50 person / purse "
        f"| ms / {h}×{w} | ms / {lw}×{lh} |",
        "|---|---|---|---|---|---|---|---|",
    ]
    # Where the misses are: AP50 by how many pixels of the true instance are visible.
    by_size = [
        "",
        "AP50 by the true instance's visible area (an occluded person counts by what shows):",
        "",
        "| model | mask AP50 < 100 px | 100–400 px | ≥ 400 px "
        "| box AP50 < 100 px | 100–400 px | ≥ 400 px |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in names:
        if not is_available(name):
            rows.append(f"| {name} | weights missing |" + " |" * 6)
            continue
        m = instance_validation(name)
        rows.append(
            f"| `{name}` | {m['val_mask_ap']:.3f} | {m['val_mask_ap50']:.3f} | "
            f"{m['val_box_ap']:.3f} | {m['val_box_ap50']:.3f} | "
            f"{m['val_mask_ap50_person']:.3f} / {m['val_mask_ap50_purse']:.3f} | "
            f"{m['ms_per_image']:.1f} | {instance_latency_ms(load_model(name)):.1f} |"
        )
        sizes = [m[f"val_{kind}_ap50_{label}"] for kind in ("mask", "box") for label in SIZE_RANGES]
        by_size.append(f"| `{name}` | " + " | ".join(f"{v:.3f}" for v in sizes) + " |")
    return "\n".join(rows + by_size)


SHIPPED_PROMPTED = ("click_net", "sam_tiny")
CLASSICAL_CUT = "clicks alone + refinement (graph cut)"
CLASSICAL_WALK = "random walker (scikit-image)"


def prompted_models(names) -> list[tuple[str, Prompter | None]]:
    """``(name, prompter or None when its weights are missing)`` for ``names`` and the
    shipped prompted models, each once."""
    return [
        (name, prompter_for(name) if is_available(name) else None)
        for name in dict.fromkeys([*names, *SHIPPED_PROMPTED])
    ]


def prompted_samples(data: str | None, limit: int | None):
    """The objects a prompted table runs on: the folder ``data`` (its first ``limit``), or
    procedural validation images."""
    return folder_samples(data, limit) if data else procedural_samples()


def prompted_pipelines(names, classical: bool = True):
    """``(label, prompter or None when unavailable, refined on the photo)`` rows: each
    prompted model with the refinement (the app's default) and alone, then the classical
    pipelines that use the clicks and the photo with nothing learned."""
    rows = []
    for name, prompter in prompted_models(names):
        rows += [(f"`{name}` + refinement", prompter, True), (f"`{name}` alone", prompter, False)]
    rows.append((CLASSICAL_CUT, ClickDiscsPrompter(), True))
    if classical:
        rows.append((CLASSICAL_WALK, RandomWalkerPrompter(), False))
    return rows


def prompted_table(
    names, data: str | None, curve: str | None, limit: int | None, classical: bool = True
) -> str:
    """NoC table of promptable pipelines on ``data`` (images/ + masks/) or procedural images.

    The shipped prompted models, with and without the refinement on the photo, and the
    classical pipelines always take part (the random walker unless ``classical`` is off), on
    the same objects with the same click protocol, so every run is a side-by-side comparison.
    """
    title = f"## Prompted masks on `{data}`" if data else "## Prompted masks (procedural val)"
    rows = [
        title,
        "",
        "| pipeline | design | objects | mIoU@1 | mIoU@5 | NoC@85 | NoC@90 | NoC@90 held out "
        "| largest drop | ms / image | ms / click |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    results = {}
    for label, prompter, refine_on_photo in prompted_pipelines(names, classical):
        if prompter is None:
            rows.append(f"| {label} | weights missing |" + " |" * 9)
            continue
        samples = prompted_samples(data, limit)
        result = results[label] = noc_curves(prompter, samples, refine_on_photo=refine_on_photo)
        m = result.summary()
        rows.append(
            f"| {label} | {prompter.design} | {m['objects']} | {m['miou_1click']:.3f} | "
            f"{m['miou_5clicks']:.3f} | {m['noc85']:.2f} | {m['noc90']:.2f} | "
            f"{m['noc90_held_out']:.2f} | {m['largest_drop']:.3f} | {m['ms_embed']:.0f} | "
            f"{m['ms_click']:.1f} |"
        )
    if results:
        where = Path(data).name if data else "procedural validation images"
        path = curve or curve_path(where)
        curves = {label.replace("`", ""): result.ious for label, result in results.items()}
        written = plot_curves(curves, path, f"NoC protocol, {where}")
        rows += [
            "",
            "Held out: the objects the refinement's weights were not chosen on (every "
            "object but each fourth). Largest drop: the largest fall of the mean IoU from one "
            "click to the next (0 where it never falls).",
            "",
            *uncertainty_lines(results),
            f"IoU-vs-clicks curve: `{written}`",
        ]
    return "\n".join(rows)


def uncertainty_lines(results: dict) -> list[str]:
    """How far the figures of the first pipeline (the default) could move on another set of
    as many objects, and its lead over the classical cut on the same objects, each ± one
    standard error."""
    (label, default), classical = next(iter(results.items())), results.get(CLASSICAL_CUT)
    noc90 = mean_and_error(default.noc_each(0.90))[1]
    miou = mean_and_error(default.ious[:, 0])[1]
    lines = [
        f"± one standard error over these {len(default.names)} objects, for {label}: "
        f"mIoU@1 ±{miou:.3f}, NoC@90 ±{noc90:.2f}.",
        "",
    ]
    if classical is not None and classical is not default:
        gained = lead(default, classical)
        lines += [
            f"{label} against the classical cut, object by object: "
            f"{gained['noc85'][0]:.2f} ± {gained['noc85'][1]:.2f} clicks fewer at NoC@85, "
            f"{gained['noc90'][0]:.2f} ± {gained['noc90'][1]:.2f} at NoC@90, "
            f"{gained['miou_1click'][0]:+.3f} ± {gained['miou_1click'][1]:.3f} mIoU@1.",
            "",
        ]
    return lines


def first_click_table(names, data: str | None, limit: int | None) -> str:
    """What limits the first click: the IoU of each of a lone click's refined masks, of the
    one shown (ranked by edge contrast), and of the best of them, per prompted model."""
    where = f"`{data}`" if data else "procedural validation images"
    rows = [
        f"## A lone click's masks on {where}",
        "",
        "| model | objects | mIoU of each mask | shown (ranked by edge contrast) | best of them "
        "| shown is the best | true outline ranked above the shown mask |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, prompter in prompted_models(names):
        if prompter is None:
            rows.append(f"| `{name}` | weights missing |" + " |" * 5)
            continue
        m = first_click_masks(prompter, prompted_samples(data, limit)).summary()
        each = " / ".join(f"{v:.3f}" for v in m["miou_each"])
        rows.append(
            f"| `{name}` | {m['objects']} | {each} | {m['miou_shown']:.3f} | "
            f"{m['miou_best']:.3f} | {m['best_shown']:.0%} | {m['truth_ahead']:.0%} |"
        )
    rows += [
        "",
        "Each mask is refined on the photo, as the page shows it; `click_net`'s are the whole "
        "image's view, then the close-up. Last column: the share of objects whose true outline "
        "has a higher edge contrast than the mask shown.",
    ]
    return "\n".join(rows)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", help="models to evaluate (default: all of them)")
    parser.add_argument("--out", default=str(REPO_ROOT / "docs" / "evaluation.md"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--data", default=None, help="prompted models: folder of images/ and masks/ (NoC protocol)"
    )
    parser.add_argument("--curve", default=None, help="prompted models: IoU-vs-clicks PNG path")
    parser.add_argument("--limit", type=int, default=None, help="prompted models: first N images")
    parser.add_argument(
        "--no-classical",
        action="store_true",
        help="prompted models: leave out the random-walker baseline (the slowest row)",
    )
    parser.add_argument(
        "--first-click",
        action="store_true",
        help="prompted models: only the first click, each of its masks against the one shown",
    )
    return parser


def main(args: argparse.Namespace) -> None:
    keep_freed_memory()  # thousands of clicks, each reusing what the one before freed
    torch.set_num_threads(args.threads)
    names = tuple(args.names) or FLOWER_MODELS + SCENE_MODELS + INSTANCE_MODELS
    tables = []
    if prompted := [n for n in names if n in PROMPTED_MODELS]:
        if args.first_click:
            tables.append(first_click_table(prompted, args.data, args.limit))
        else:
            tables.append(
                prompted_table(prompted, args.data, args.curve, args.limit, not args.no_classical)
            )
    if flowers := [n for n in names if n not in SCENE_MODELS + INSTANCE_MODELS + PROMPTED_MODELS]:
        tables.append("## Flowers\n\n" + flower_table(flowers))
    if scenes := [n for n in names if n in SCENE_MODELS]:
        tables.append("## Street scenes\n\n" + scene_table(scenes))
    if instances := [n for n in names if n in INSTANCE_MODELS]:
        tables.append("## Street-scene instances\n\n" + instance_table(instances))
    table = "# Evaluation\n\nProduced by `python -m segdemo.evaluate`.\n\n" + "\n\n".join(tables)
    print(table)
    if not args.names:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(table + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main(get_args_parser().parse_args())
