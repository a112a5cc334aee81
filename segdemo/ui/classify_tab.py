"""Tab 1: segmentation as image classification, made efficient by a fully convolutional net."""

from __future__ import annotations

import gradio as gr

from segdemo import viz
from segdemo.examples import flower_examples, ground_truth
from segdemo.imaging import save_png
from segdemo.metrics import iou
from segdemo.tasks.patch_classify import classify_segment
from segdemo.ui import finetune_section
from segdemo.ui.common import (
    PhotoInput,
    load_input,
    notes_markdown,
    result_image,
    to_uint8_mask,
    user_errors,
)

EXPLANATION = """
**The idea.** Label every pixel by classifying the patch around it: cut a 32×32 window around
each pixel and ask a classifier *flower or not?* Done one window at a time this repeats almost
all the work for neighbouring windows.

**The trick.** The classifier's dense layer looks at a 5×5×C feature map, so it *is* a 5×5
convolution with the same weights, and the layer after it is a 1×1 convolution. With the dense
layers turned into convolutions the network accepts any image size and computes all windows in
one pass, sharing the convolutions between overlapping windows. Its output is one probability
per window, with windows 4 pixels apart (two 2×2 poolings): a map about 4× smaller than the
image, which we upsample and lay over the photo.

**What to notice.** The map is coarse: every value speaks for a 4×4 block, and the borders
are lost because a full 32×32 window is needed for every output. The upsampling tab shows how
networks trained to output full resolution do better.
"""


@user_errors
def classify_segment_ui(image_path):
    """Image file -> (low-res map, overlay, mask PNG, shape note and IoU, details)."""
    prepared = load_input(image_path)
    result = classify_segment(prepared.pixels)
    mask = result.probability >= 0.5
    lines = [f"**Shapes.** {result.shape_note}"]
    details = {
        "input_size": list(prepared.size),
        "output_size": list(result.probability_map.shape),
        "original_size": list(prepared.original_size),
        "iou": None,
    }
    truth = ground_truth(prepared.pixels)
    if truth is not None:
        details["iou"] = round(iou(mask, truth > 0), 4)
        lines.append(f"**IoU against the ground truth:** {details['iou']:.3f}")
    lines.append(notes_markdown(prepared))
    low_res = viz.colour_map(result.probability_map)
    picture = viz.outline(viz.overlay(prepared.pixels, result.probability), mask)
    mask_file = save_png(to_uint8_mask(prepared.mask_to_original(mask)), "patch-mask")
    return low_res, picture, mask_file, "\n\n".join(lines), details


def build_tab() -> list[gr.components.Component]:
    """The tab; returns where another tab can send a photo and a mask label to train on."""
    with gr.Tab("Classification as segmentation", id="classify", elem_id="classify-tab"):
        with gr.Row():
            with gr.Column():
                photo = PhotoInput.build("Segment", flower_examples())
                gr.Markdown(EXPLANATION)
            with gr.Column():
                low_res = result_image(
                    "Classifier output at its true size (one value per 32×32 window)",
                    elem_classes="pixelated",
                    elem_id="classify-low-res",
                    height=200,
                )
                picture = result_image(
                    "Upsampled ×4 and laid over the image (threshold 0.5 outlined)",
                    elem_id="classify-overlay",
                )
                summary = gr.Markdown()
                mask_file = gr.File(label="Mask at the original size (PNG)")
                with gr.Accordion("Details (JSON)", open=False):
                    details = gr.JSON()
        label_inputs = finetune_section.build_section(
            ("patch_classifier",), "classify", photo.image, with_api=True
        )
        outputs = [low_res, picture, mask_file, summary, details]
        photo.on_every_photo(classify_segment_ui, outputs, api_name="classify_segment")
    return label_inputs
