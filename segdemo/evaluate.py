"""Quality tables: ``python -m segdemo.evaluate [NAME ...]`` prints them and writes docs/.

Flower models are scored on fresh validation images from the generator's ``val`` split (never
seen in training): foreground IoU pooled over the set, and milliseconds per image.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from segdemo.data.flowers import make_flowers
from segdemo.metrics import PooledIoU
from segdemo.registry import is_available, load_model
from segdemo.tasks.common import run_on_pixels, sigmoid
from segdemo.tasks.patch_classify import classify_segment
from segdemo.weights import REPO_ROOT


@dataclass(frozen=True)
class ValidationSet:
    start: int
    count: int
    size: tuple[int, int]


VAL_FLOWERS = ValidationSet(start=0, count=48, size=(192, 256))
FLOWER_MODELS = ("patch_classifier", "upsample_transposed", "upsample_bilinear")


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


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", help="models to evaluate (default: all flower models)")
    parser.add_argument("--out", default=str(REPO_ROOT / "docs" / "evaluation.md"))
    parser.add_argument("--threads", type=int, default=2)
    return parser


def main(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    names = tuple(args.names) or FLOWER_MODELS
    table = "# Evaluation\n\nProduced by `python -m segdemo.evaluate`.\n\n" + flower_table(names)
    print(table)
    if not args.names:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(table + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main(get_args_parser().parse_args())
