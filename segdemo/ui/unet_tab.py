"""Tab 3: semantic segmentation with a UNet, one-hot label maps, and what skip connections buy."""

from __future__ import annotations

import gradio as gr
import numpy as np
from PIL import Image, ImageDraw

from segdemo import viz
from segdemo.data.scenes import CLASS_NAMES, LECTURE_GRID
from segdemo.examples import scene_examples, scene_ground_truth
from segdemo.imaging import save_png
from segdemo.tasks.semantic import (
    BOUNDARY_RADIUS,
    PALETTE,
    SEMANTIC_MODELS,
    hex_colours,
    one_hot,
    pixel_cross_entropy,
    score,
    unet_compare,
)
from segdemo.ui.common import (
    PhotoInput,
    load_input,
    notes_markdown,
    result_image,
    user_errors,
)

TITLES = {"unet": "UNet (with skips)", "unet_noskip": "No skip connections"}
LOSS_LIMIT = 4.0  # nats: the loss maps saturate here (p(true class) ≈ 2%)
CELL = 22  # pixels per cell when drawing the lecture grid

EXPLANATION = f"""
**Semantic segmentation** gives every pixel one of {len(CLASS_NAMES)} classes. The network
outputs {len(CLASS_NAMES)} scores per pixel (an H×W×{len(CLASS_NAMES)} map); the **label map**
is the class with the highest score at each pixel. To train, the true label map is
**one-hot encoded**: one binary slice per class, 1 where the pixel belongs to that class.
The loss is the **cross-entropy at every pixel**, −log of the softmax probability the net gives
the true class, averaged over all pixels (plus a Dice term so the rare purse counts as much as
the sidewalk). The loss maps below show where it is paid: almost all of it along boundaries.

**Why downsampling is cheap.** A 3×3 convolution costs H·W·C_in·C_out·9 operations. Each 2×2
pooling divides the pixels by 4, so the UNet can double its channels at every level (8, 16, 32,
64, 128) at the same cost per level, while each level sees twice as far: a value of the
bottleneck, at 1/16 resolution, depends on 140×140 input pixels, a whole person in the
examples. Most of the network's layers run where pixels are few.

**What the skip connections carry.** The bottleneck knows *what* is where, to within 16 pixels.
Upsampling alone can only blur that back to full size: boundaries come out rounded, thin straps
and small purses vanish. A skip connection concatenates the encoder's features of the same
resolution (edges and colours at their exact positions) onto the upsampled decoder features,
so the next convolution combines the *what* from below with the *where* from the side. Adding
one is one line: `torch.cat([upsampled, encoder_features], dim=1)` before the decoder's conv.
"""


def _colour_labels(labels: np.ndarray) -> np.ndarray:
    return viz.colourise_labels(labels, PALETTE)


def _slices(labels: np.ndarray) -> list[tuple[np.ndarray, str]]:
    """One white-on-black picture per class, captioned with the class and its pixel share."""
    slices = one_hot(labels)
    return [
        (slices[c] * 255, f"{c} {name}: {100 * slices[c].mean():.1f}% of pixels")
        for c, name in enumerate(CLASS_NAMES)
    ]


def _summary(results: dict, scores: dict, prepared) -> str:
    h, w = prepared.size
    lines = [
        f"**{h}×{w} pixels.** "
        + ", ".join(f"{TITLES[name]}: {1000 * r.seconds:.0f} ms" for name, r in results.items())
    ]
    if scores:
        header = "| class | " + " | ".join(f"IoU {TITLES[n]}" for n in SEMANTIC_MODELS) + " |"
        rows = [header, "|---|" + "---|" * len(SEMANTIC_MODELS)]
        for name in CLASS_NAMES:
            values = [scores[n].iou[name] for n in SEMANTIC_MODELS]
            cells = " | ".join("–" if v is None else f"{v:.3f}" for v in values)
            rows.append(f"| {name} | {cells} |")
        for label, attr in (
            ("**mIoU**", "miou"),
            (f"**boundary mIoU** (≤{BOUNDARY_RADIUS} px)", "boundary_miou"),
        ):
            cells = " | ".join(f"**{getattr(scores[n], attr):.3f}**" for n in SEMANTIC_MODELS)
            rows.append(f"| {label} | {cells} |")
        lines.append("\n".join(rows))
    else:
        lines.append("No ground truth for this image (pick an example to see per-class IoU).")
    lines.append(notes_markdown(prepared))
    return "\n\n".join(lines)


@user_errors
def unet_segment_ui(image_path):
    """Image file -> annotated label map, both colour maps, ground truth, loss maps, one-hot
    slices, summary, label-map PNGs (class indices, original size) and details."""
    prepared = load_input(image_path)
    results = unet_compare(prepared.pixels)
    truth = scene_ground_truth(prepared.pixels)
    best = results["unet"].labels
    annotated = (
        prepared.pixels,
        [
            ((best == c).astype(np.float32), name)
            for c, name in enumerate(CLASS_NAMES)
            if (best == c).any()
        ],
    )
    scores = {} if truth is None else {n: score(r.labels, truth) for n, r in results.items()}
    losses = [
        None
        if truth is None
        else viz.colour_map(pixel_cross_entropy(r.logits, truth), "magma", 0.0, LOSS_LIMIT)
        for r in results.values()
    ]
    files = [
        save_png(prepared.mask_to_original(r.labels), f"{name}-labels")
        for name, r in results.items()
    ]
    details = {
        "input_size": list(prepared.size),
        "original_size": list(prepared.original_size),
        "classes": list(CLASS_NAMES),
        "models": {
            name: {
                "ms": round(1000 * r.seconds, 1),
                "pixel_share": {
                    c: round(float((r.labels == k).mean()), 4) for k, c in enumerate(CLASS_NAMES)
                },
                "iou": scores[name].iou if scores else None,
                "miou": scores[name].miou if scores else None,
                "boundary_miou": scores[name].boundary_miou if scores else None,
            }
            for name, r in results.items()
        },
    }
    return (
        annotated,
        *(_colour_labels(r.labels) for r in results.values()),
        None if truth is None else _colour_labels(truth),
        *losses,
        _slices(best),
        _summary(results, scores, prepared),
        files,
        details,
    )


def _grid_picture(values: np.ndarray, colours: np.ndarray, text: np.ndarray | None = None):
    """Draw an ``HxW`` grid as ``CELL``-pixel cells filled with ``colours`` (``HxWx3``), thin
    lines between cells, and ``text`` (the cell values) written in each cell."""
    picture = Image.fromarray(viz.zoom(colours, CELL))
    draw = ImageDraw.Draw(picture)
    h, w = values.shape
    for i in range(h + 1):
        draw.line([(0, i * CELL), (w * CELL, i * CELL)], fill=(90, 90, 90))
    for j in range(w + 1):
        draw.line([(j * CELL, 0), (j * CELL, h * CELL)], fill=(90, 90, 90))
    if text is not None:
        for (i, j), value in np.ndenumerate(text):
            ink = (0, 0, 0) if colours[i, j].mean() > 110 else (255, 255, 255)
            draw.text(
                (j * CELL + CELL // 2, i * CELL + CELL // 2), str(value), fill=ink, anchor="mm"
            )
    return np.asarray(picture)


def lecture_grid_markdown() -> str:
    h, w = LECTURE_GRID.shape
    rows = ["| " + " | ".join(str(v) for v in row) + " |" for row in LECTURE_GRID]
    legend = ", ".join(f"{c} = {CLASS_NAMES[c]}" for c in range(1, len(CLASS_NAMES)))
    return "\n".join(
        [
            f"The lecture's {h}×{w} label map ({legend}): one class index per pixel.",
            "",
            "|" + " |" * w,
            "|" + "---|" * w,
            *rows,
        ]
    )


def lecture_grid_pictures() -> tuple[np.ndarray, list[tuple[np.ndarray, str]]]:
    """The lecture grid's colour map, and its one-hot slices for classes 1..5."""
    colour = _grid_picture(LECTURE_GRID, _colour_labels(LECTURE_GRID), LECTURE_GRID)
    slices = []
    for c, plane in enumerate(one_hot(LECTURE_GRID)):
        if c == 0:  # the slide's grid has no "sky/other" pixel: that slice is all zeros
            continue
        cells = np.repeat(plane[..., None] * 255, 3, axis=2).astype(np.uint8)
        slices.append((_grid_picture(plane, cells, plane), f"slice {c}: {CLASS_NAMES[c]}"))
    return colour, slices


def build_tab() -> None:
    with gr.Tab("UNet semantic masks", id="unet", elem_id="unet-tab"):
        with gr.Row():
            with gr.Column(scale=1):
                photo = PhotoInput.build("Segment", scene_examples())
            with gr.Column(scale=2):
                annotated = gr.AnnotatedImage(
                    label="UNet label map (hover a class in the legend to highlight it)",
                    color_map=hex_colours(),
                    format="png",
                    height=420,
                )
                summary = gr.Markdown()
        gr.Markdown("### With and without skip connections, on the same image")
        with gr.Row():
            colour_maps = [
                result_image(f"{title}: label map", elem_id=f"{name}-labels")
                for name, title in TITLES.items()
            ]
            truth = result_image("Ground truth (examples only)")
        with gr.Row():
            losses = [
                result_image(
                    f"{title}: cross-entropy per pixel (black 0 → yellow {LOSS_LIMIT:g} nats)"
                )
                for title in TITLES.values()
            ]
        slices = gr.Gallery(
            label="UNet label map, one-hot: one binary slice per class",
            columns=6,
            height="auto",
            format="png",
        )
        with gr.Row():
            files = gr.File(
                label="Label maps as PNG of class indices 0–5, at the original size "
                "(UNet, then no skips)",
                file_count="multiple",
            )
            with gr.Accordion("Details (JSON)", open=False):
                details = gr.JSON()
        gr.Markdown(EXPLANATION)

        outputs = [annotated, *colour_maps, truth, *losses, slices, summary, files, details]
        photo.on_every_photo(unet_segment_ui, outputs, api_name="unet_segment")

        gr.Markdown("### Worked example: the lecture's label grid, one-hot")
        grid_colour, grid_slices = lecture_grid_pictures()
        with gr.Row():
            with gr.Column():
                gr.Markdown(lecture_grid_markdown())
            with gr.Column():
                result_image("Its colour map", value=grid_colour, elem_classes="pixelated")
        gr.Gallery(
            value=grid_slices,
            label="Each slice, one-hot encoding (1 = the pixel has that class)",
            columns=3,
            height="auto",
            format="png",
        )
