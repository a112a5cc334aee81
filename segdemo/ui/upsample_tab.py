"""Tab 2: transposed convolution vs bilinear upsampling, and the shape arithmetic behind them."""

from __future__ import annotations

import gradio as gr
import numpy as np

from segdemo import viz
from segdemo.examples import flower_examples, ground_truth
from segdemo.imaging import save_png
from segdemo.metrics import iou
from segdemo.tasks.upsample import (
    UPSAMPLING_MODELS,
    conv_matrix_example,
    conv_output_size,
    conv_transpose_output_size,
    upsample_compare,
    worst_checkerboard_window,
)
from segdemo.ui import finetune_section
from segdemo.ui.common import (
    PhotoInput,
    load_input,
    notes_markdown,
    result_image,
    to_uint8_mask,
    user_errors,
)

ZOOM_SIDE, ZOOM_FACTOR = 32, 8
TITLES = {"upsample_transposed": "Transposed convolution", "upsample_bilinear": "Conv + bilinear"}

EXPLANATION = """
**Two decoders, one encoder.** Both nets shrink the image 4× (two 2×2 poolings) and look at
about 70 pixels of context with dilated convolutions, then must return to full resolution. One
learns its upsampling with **transposed convolutions** (kernel 3, stride 2, twice); the other
applies a 3×3 convolution and then **bilinear interpolation**, which has no weights at all. In
both, one skip connection brings the first layer's full-resolution features to a pointwise head
that sharpens the boundaries.

**Checkerboards.** With kernel 3 and stride 2 the transposed convolution's kernel windows
overlap unevenly: even output pixels receive contributions from two input pixels, odd ones from
one. The uneven overlap prints a pattern that repeats every 2 pixels (every 4 after two stages)
into the output. The sigmoid hides it in the probabilities; the zoomed crops show the raw scores
(logits), each stretched to its own range, where the grid is plain. The **checkerboard score**
is the share of the logit map's spectral energy at exactly the frequencies of a pattern with a
4-pixel period; a map without such a pattern scores about 10⁻⁶ or less.
"""

CALCULATOR_HELP = """
`output = conv(input, kernel, stride)`: **⌊(n + 2p − k) / s⌋ + 1** &nbsp;&nbsp;
`input = conv_trans(output, kernel, stride)`: **(n − 1)·s − 2p + k + output_padding**
"""


@user_errors
def upsample_compare_ui(image_path):
    """Image file -> per model (probability, mask overlay, zoomed logits), summary, mask PNGs."""
    prepared = load_input(image_path)
    results = upsample_compare(prepared.pixels)
    y, x = worst_checkerboard_window(results["upsample_transposed"].logits, ZOOM_SIDE)
    crop = (slice(y, y + ZOOM_SIDE), slice(x, x + ZOOM_SIDE))
    truth = ground_truth(prepared.pixels)
    pictures, files, rows = [], [], []
    details: dict = {"zoom_window": {"x": x, "y": y, "side": ZOOM_SIDE}, "models": {}}
    for name, result in results.items():
        pictures += [
            viz.colour_map(result.probability),
            viz.outline(viz.overlay(prepared.pixels, result.probability), result.mask),
            viz.zoom(viz.stretched(result.logits[crop]), ZOOM_FACTOR),
        ]
        mask_file = save_png(to_uint8_mask(prepared.mask_to_original(result.mask)), name)
        files.append(mask_file)
        score = None if truth is None else round(iou(result.mask, truth > 0), 4)
        details["models"][name] = {"checkerboard": round(result.checkerboard, 6), "iou": score}
        iou_text = "" if score is None else f" | {score:.3f}"
        rows.append(f"| {TITLES[name]} | {result.checkerboard:.2e}{iou_text} |")
    header = "| decoder | checkerboard score" + (
        " | IoU vs ground truth |" if truth is not None else " |"
    )
    divider = "|---|---|" + ("---|" if truth is not None else "")
    summary = "\n".join(
        [
            header,
            divider,
            *rows,
            "",
            f"Zoomed crop: {ZOOM_SIDE}×{ZOOM_SIDE} pixels at "
            f"x={x}, y={y}, where the transposed decoder's pattern is strongest.",
            notes_markdown(prepared),
        ]
    )
    return (*pictures, summary, files, details)


def shape_arithmetic(
    size: float, kernel: float, stride: float, padding: float, output_padding: float
):
    """The lecture's shape formulas for given settings, as Markdown."""
    n, k, s, p, op = (int(v) for v in (size, kernel, stride, padding, output_padding))
    if op >= s:
        return f"output_padding must be smaller than the stride ({s}); it only resolves rounding."
    out = conv_output_size(n, k, s, p)
    if out < 1:
        return f"A {k}×{k} kernel does not fit in {n} pixels with padding {p}."
    back = conv_transpose_output_size(out, k, s, p, op)
    verdict = (
        "the transposed convolution restores the input size."
        if back == n
        else f"the transposed convolution gives {back}, not {n}: the stride's rounding lost "
        f"{n - back} pixel(s); output_padding={n - back} would restore it."
        if 0 < n - back < s
        else f"the transposed convolution gives {back}."
    )
    return (
        f"conv: ⌊({n} + 2·{p} − {k}) / {s}⌋ + 1 = **{out}**  \n"
        f"conv_trans: ({out} − 1)·{s} − 2·{p} + {k} + {op} = **{back}**  \n"
        f"From {n} to {out} and back: {verdict}"
    )


def _table(matrix: np.ndarray) -> str:
    header = "| " + " | ".join(" " for _ in range(matrix.shape[1])) + " |"
    rows = ["| " + " | ".join(f"{v:g}" for v in row) + " |" for row in matrix]
    return "\n".join([header, "|" + "---|" * matrix.shape[1], *rows])


def conv_matrix_markdown(stride: float) -> str:
    """The worked example for stride 1 (4×4 input) or stride 2 (5×5 input), as Markdown."""
    s = int(stride)
    example = conv_matrix_example(size=4 if s == 1 else 5, kernel_size=3, stride=s)
    n, m = example.image.shape[0], example.output.shape[0]
    same = np.allclose(example.transposed, example.torch_transposed)
    return "\n\n".join(
        [
            f"**Input x** ({n}×{n}) and **kernel w** (3×3), stride {s}:",
            _table(example.image),
            _table(example.kernel),
            f"**Convolution matrix C** ({m * m}×{n * n}): row *r* holds the kernel placed at "
            f"output position *r*, so `conv(x) = C·vec(x)`:",
            _table(example.matrix),
            f"**y = conv(x)** ({m}×{m}):",
            _table(example.output),
            f"**Cᵀ·vec(y)** reshaped to {n}×{n}, the transposed convolution of y:",
            _table(example.transposed),
            f"`torch.nn.functional.conv_transpose2d(y, w, stride={s})` gives the same matrix: "
            f"**{'yes' if same else 'no'}**. Transposed convolution maps back to the input's "
            "*shape*, "
            "not to its values: it is not an inverse.",
        ]
    )


def build_tab() -> list[gr.components.Component]:
    """The tab; returns where another tab can send a photo and a mask label to train on."""
    with gr.Tab("Upsampling: transposed conv vs bilinear", id="upsample", elem_id="upsample-tab"):
        with gr.Row():
            with gr.Column(scale=1):
                photo = PhotoInput.build("Compare", flower_examples())
            with gr.Column(scale=2):
                gr.Markdown(EXPLANATION)
                summary = gr.Markdown()
        pictures = []
        for name, title in TITLES.items():
            with gr.Row():
                pictures += [
                    result_image(f"{title}: probability", elem_id=f"{name}-probability"),
                    result_image(f"{title}: mask", elem_id=f"{name}-mask"),
                    result_image(
                        f"{title}: zoomed logits, own range (×{ZOOM_FACTOR})",
                        elem_classes="pixelated",
                        elem_id=f"{name}-zoom",
                    ),
                ]
        with gr.Row():
            mask_files = gr.File(label="Masks at the original size (PNG)", file_count="multiple")
            with gr.Accordion("Details (JSON)", open=False):
                details = gr.JSON()
        label_inputs = finetune_section.build_section(UPSAMPLING_MODELS, "upsample", photo.image)
        outputs = [*pictures, summary, mask_files, details]
        photo.on_every_photo(upsample_compare_ui, outputs, api_name="upsample_compare")

        gr.Markdown("### Shape arithmetic\n" + CALCULATOR_HELP)
        with gr.Row():
            sliders = [
                gr.Slider(1, 64, value=8, step=1, label="input size n"),
                gr.Slider(1, 7, value=3, step=1, label="kernel k"),
                gr.Slider(1, 4, value=2, step=1, label="stride s"),
                gr.Slider(0, 3, value=1, step=1, label="padding p"),
                gr.Slider(0, 3, value=0, step=1, label="output_padding"),
            ]
        shapes = gr.Markdown(shape_arithmetic(8, 3, 2, 1, 0))
        for slider in sliders:
            slider.change(shape_arithmetic, sliders, shapes, api_visibility="private")
        gr.Button("Compute", size="sm").click(
            shape_arithmetic, sliders, shapes, api_name="conv_shapes"
        )

        gr.Markdown("### Worked example: transposed convolution = multiplication by Cᵀ")
        stride = gr.Radio([1, 2], value=1, label="stride")
        matrix = gr.Markdown(conv_matrix_markdown(1))
        stride.change(conv_matrix_markdown, stride, matrix, api_name="conv_matrix")
    return label_inputs
