"""Latency of promptable models: one image embedding, then clicks — sam_tiny beside SAM ViT-B.

``python -m segdemo.prompted_bench`` prints the table; ``segdemo.bench`` calls ``latency_rows``.
Both models run through the package's ``SamPredictor`` on the same 640×480 picture: the
embedding is ``set_image`` (resize, normalise, encode), a click is ``predict`` (prompt
encoder, mask decoder, masks resized to 640×480). ViT-B is randomly initialised — its speed
does not depend on its weights — so the benchmark needs no download.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from segment_anything import SamPredictor

from segdemo.data.composites import make_composite
from segdemo.registry import build_model, is_available, load_model

IMAGE_SIZE = (480, 640)


def _median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return float(np.median(times))


@torch.no_grad()
def measure(model, image: np.ndarray, clicks: int = 10, repeats: int = 3) -> dict[str, float]:
    """Milliseconds: ``embed_ms`` per image; ``first_click_ms`` (three masks) and ``click_ms``
    (one mask, previous logits fed back: the clicks after the first) per click."""
    predictor = SamPredictor(model.eval())
    predictor.set_image(image)  # warm-up: first calls allocate
    embed = _median_seconds(lambda: predictor.set_image(image), repeats)
    h, w = image.shape[:2]
    rng = np.random.default_rng(0)
    points = rng.uniform((0, 0), (w, h), size=(clicks, 2))
    labels = (rng.uniform(size=clicks) < 0.6).astype(np.int64)
    _, _, logits = predictor.predict(points[:1], labels[:1])
    first = _median_seconds(lambda: predictor.predict(points[:1], labels[:1]), clicks)
    later = []
    for k in range(2, clicks + 1):
        began = time.perf_counter()
        _, _, logits = predictor.predict(
            points[:k], labels[:k], mask_input=logits[:1], multimask_output=False
        )
        later.append(time.perf_counter() - began)
    return {
        "embed_ms": round(1000 * embed, 1),
        "first_click_ms": round(1000 * first, 1),
        "click_ms": round(1000 * float(np.median(later)), 1),
    }


def latency_rows(threads: int = 2, vit_repeats: int = 1) -> list[dict]:
    """sam_tiny (shipped weights, random ones when absent) and a random ViT-B, side by side."""
    torch.set_num_threads(threads)
    image = make_composite(0, "example", IMAGE_SIZE).image
    rows = []
    tiny = load_model("sam_tiny") if is_available("sam_tiny") else build_model("sam_tiny")
    rows.append({"model": "sam_tiny", **measure(tiny, image)})
    torch.manual_seed(0)
    vit_b = build_model("sam_vit_b")
    rows.append({"model": "sam_vit_b (random weights)", **measure(vit_b, image, 5, vit_repeats)})
    for row in rows:
        row.update(threads=threads, image="×".join(map(str, IMAGE_SIZE[::-1])))
    return rows


def latency_table(threads: int = 2) -> str:
    h, w = IMAGE_SIZE
    lines = [
        f"Prompted masks: latency through `SamPredictor` on a {w}×{h} image, {threads} CPU "
        "threads (median).",
        "",
        "| model | image embedding (ms) | first click, 3 masks (ms) | next clicks, 1 mask (ms) |",
        "|---|---|---|---|",
    ]
    for row in latency_rows(threads):
        lines.append(
            f"| `{row['model']}` | {row['embed_ms']:.0f} | {row['first_click_ms']:.1f} | "
            f"{row['click_ms']:.1f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    print(latency_table(parser.parse_args().threads))
