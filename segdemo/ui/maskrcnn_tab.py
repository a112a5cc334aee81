"""Tab: instance segmentation with Mask R-CNN, and how it differs from a semantic map."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import numpy as np

from segdemo import viz
from segdemo.coco import categories
from segdemo.examples import scene_examples
from segdemo.imaging import PreparedImage, save_json, save_png
from segdemo.registry import get_spec, is_available, list_models
from segdemo.tasks.instances import (
    MASK_THRESHOLD,
    SCORE_THRESHOLD,
    InstanceResult,
    coco_json,
    segment_instances,
)
from segdemo.tasks.semantic import PALETTE, segment
from segdemo.ui.common import (
    image_input,
    load_input,
    notes_markdown,
    queue_group,
    result_image,
    user_errors,
)

SHIPPED = "maskrcnn"
SEMANTIC = "unet"
DISPLAY_SIDE = 640  # pictures of smaller images are enlarged towards this long side
TABLE_HEADERS = ["#", "class", "score", "x0", "y0", "x1", "y1", "mask pixels"]

EXPLANATION = """
**Instance segmentation = semantic segmentation + object detection.** A semantic map says
*what* every pixel is, but not *which one*: two people side by side are one "person" region.
Mask R-CNN first detects objects (a box and a class for each), then segments inside each box,
so every person gets a mask of their own, even where they overlap.

**How Mask R-CNN does it.** A backbone with a feature pyramid (FPN) computes features; the
region proposal network (RPN) suggests boxes that may hold an object; for each proposal
**RoIAlign** samples a fixed grid of features (7×7 for the box branch, 14×14 for the mask
branch) from the pyramid level that suits its size, with bilinear interpolation and no
rounding, so masks stay aligned with the pixels. Then three heads run **in parallel** on the
same region: **classification** (which class, or background), **box regression** (refine the
box) and the **mask branch**, a small fully convolutional net that predicts a 28×28 mask *for
every class*; the class head decides which of those masks is used. Each mask pixel is a sigmoid
with its own binary loss, so classes never compete inside a mask: the paper found this
decoupling of mask and class prediction essential.

**The sliders.** *Score threshold*: keep detections whose class confidence is at least this.
*Mask threshold*: the mask probability (after the 28×28 mask is resized into its box) above
which a pixel belongs to the instance.

**Downloads.** The PNG instance-id map has pixel value *k* for instance *k* of the table and 0
for no instance, at the uploaded image's size. The COCO JSON holds boxes `[x, y, w, h]`,
scores, categories and masks run-length encoded by pycocotools (`COCO(path).annToMask(ann)`
decodes one).

**Four looks at one image.** `maskrcnn` runs on the image at two scales, each as it is and
mirrored, and fuses what the four views find (test-time augmentation): overlapping boxes of one
class are one object, its masks from the four views are averaged, and its score is the mean
over the views, so an object only one view finds keeps a quarter of its score.

`maskrcnn` was trained only on the procedural street scenes (people and purses); on real
photos use a COCO checkpoint when one is installed.
"""


def model_choices() -> list[tuple[str, str]]:
    """(label, name) for every instance model; unavailable ones are marked, not hidden."""
    return [
        (name if is_available(name) else f"{name} (not installed)", name)
        for name in list_models(task="instances")
    ]


def availability_note() -> str:
    lines = []
    for name in list_models(task="instances"):
        if is_available(name):
            continue
        spec = get_spec(name)
        if spec.official:
            how = (
                f"put `{spec.checkpoints[0]}` in `weights/` (or torch's hub cache), or set "
                "`SEGDEMO_DOWNLOAD=1` to let the app fetch it"
            )
        else:
            how = f"run `{spec.train_command}`"
        lines.append(f"- `{name}`: {how}.")
    return "**Not installed here:**\n" + "\n".join(lines) if lines else ""


def _captions(result: InstanceResult) -> list[str]:
    return [f"{i.name} {i.score:.2f}" for i in result.instances]


def display_scale(prepared: PreparedImage) -> int:
    """Small images are drawn enlarged (×2, ×3) so captions and thin masks stay readable."""
    return max(1, min(3, DISPLAY_SIDE // max(prepared.size)))


def instance_picture(result: InstanceResult) -> np.ndarray:
    """The working image, enlarged by ``display_scale``, with every instance drawn on it."""
    prepared = result.prepared
    scale = display_scale(prepared)
    boxes = []
    for instance in result.instances:
        corners = prepared.to_working(np.reshape(instance.box, (2, 2))) * scale
        boxes.append(tuple(float(v) for v in corners.ravel()))
    masks = [viz.zoom(instance.mask, scale) for instance in result.instances]
    return viz.draw_instances(viz.zoom(prepared.pixels, scale), masks, boxes, _captions(result))


def _summary(result: InstanceResult, score_threshold: float, prepared: PreparedImage) -> str:
    counts: dict[str, int] = {}
    for instance in result.instances:
        counts[instance.name] = counts.get(instance.name, 0) + 1
    found = ", ".join(f"{n} {name}" for name, n in counts.items()) or "none"
    h, w = prepared.size
    lines = [
        f"**{len(result.instances)} instances** with score ≥ {score_threshold:.2f}: {found}. "
        f"Model `{result.model}`, {1000 * result.seconds:.0f} ms on {w}×{h} pixels.",
        notes_markdown(prepared),
    ]
    return "\n\n".join(line for line in lines if line)


@user_errors
def maskrcnn_instances_ui(image_path, model_name, score_threshold, mask_threshold):
    """Image file -> (picture, summary, instance table, id-map PNG, COCO JSON, details)."""
    prepared = load_input(image_path)
    model_name = model_name or SHIPPED
    result = segment_instances(prepared, model_name, float(score_threshold), float(mask_threshold))
    coco = coco_json(result, file_name=Path(image_path).name)
    rows = [
        [k, i.name, round(i.score, 3), *(round(v, 1) for v in i.box), ann["area"]]
        for k, (i, ann) in enumerate(zip(result.instances, coco["annotations"], strict=True), 1)
    ]
    details = {
        "model": model_name,
        "instances": len(result.instances),
        "working_size": list(prepared.size),
        "original_size": list(prepared.original_size),
        "ms": round(1000 * result.seconds, 1),
        "score_threshold": float(score_threshold),
        "mask_threshold": float(mask_threshold),
        "categories": categories(result.classes),
    }
    return (
        instance_picture(result),
        _summary(result, float(score_threshold), prepared),
        rows,
        save_png(result.id_map(), "instance-ids"),
        save_json(coco, "coco-instances"),
        details,
    )


def refresh_ui(image_path, model_name, score_threshold, mask_threshold):
    """Slider and model changes redo the detection only once there is an image."""
    if image_path is None:
        return [gr.skip()] * 6
    return maskrcnn_instances_ui(image_path, model_name, score_threshold, mask_threshold)


def semantic_picture(prepared: PreparedImage) -> tuple[np.ndarray, str]:
    """The UNet's person and purse pixels in one colour per class, and a caption."""
    if not is_available(SEMANTIC):
        return viz.zoom(prepared.pixels, display_scale(prepared)), (
            f"`{SEMANTIC}` is not installed, so the semantic side is empty: run "
            f"`{get_spec(SEMANTIC).train_command}`."
        )
    scale = display_scale(prepared)
    labels = viz.zoom(segment(prepared.pixels, SEMANTIC).labels, scale)
    picture = viz.zoom(prepared.pixels, scale)
    for cls in (1, 2):  # person, purse: the classes the instance model separates
        picture = viz.overlay(picture, labels == cls, tuple(int(v) for v in PALETTE[cls]), 0.6)
    return picture, (
        f"`{SEMANTIC}` labels pixels: every person pixel gets the same label (crimson), every "
        "purse pixel the same gold. Where people touch, nothing says where one ends."
    )


@user_errors
def semantic_vs_instance_ui(image_path, score_threshold):
    """Image file -> (UNet picture, Mask R-CNN picture, explanation)."""
    prepared = load_input(image_path)
    left, note = semantic_picture(prepared)
    result = segment_instances(prepared, SHIPPED, float(score_threshold))
    people = sum(i.name == "person" for i in result.instances)
    return (
        left,
        instance_picture(result),
        f"{note}\n\n`{SHIPPED}` finds **{people} separate people** (score ≥ "
        f"{float(score_threshold):.2f}), each with its own mask, box and confidence.",
    )


def build_tab() -> None:
    with gr.Tab("Mask R-CNN instances", id="maskrcnn", elem_id="maskrcnn-tab"):
        with gr.Row():
            with gr.Column():
                image = image_input()
                model = gr.Dropdown(model_choices(), value=SHIPPED, label="Model")
                gr.Markdown(availability_note())
                score = gr.Slider(0.05, 1.0, SCORE_THRESHOLD, step=0.05, label="Score threshold")
                mask = gr.Slider(0.05, 0.95, MASK_THRESHOLD, step=0.05, label="Mask threshold")
                run = gr.Button("Find instances", variant="primary")
                examples = gr.Examples(scene_examples(), inputs=[image], label="Examples")
            with gr.Column():
                picture = result_image(
                    "Instances: mask, box, class and confidence", elem_id="maskrcnn-picture"
                )
                summary = gr.Markdown()
                table = gr.Dataframe(headers=TABLE_HEADERS, interactive=False, label="Instances")
                with gr.Row():
                    id_map = gr.File(label="Instance-id map at the original size (PNG)")
                    coco = gr.File(label="COCO-format JSON (RLE masks)")
                with gr.Accordion("Details (JSON)", open=False):
                    details = gr.JSON()
        gr.Markdown("### Semantic vs instance: the same image through a UNet and Mask R-CNN")
        with gr.Row():
            semantic = result_image(
                f"Semantic ({SEMANTIC}): one label per pixel", elem_id="semantic-picture"
            )
            instances = result_image(
                f"Instance ({SHIPPED}): one mask per object", elem_id="instance-picture"
            )
        compare_note = gr.Markdown()
        compare = gr.Button("Compare semantic and instance")
        gr.Markdown(EXPLANATION)

        inputs = [image, model, score, mask]
        outputs = [picture, summary, table, id_map, coco, details]
        compare_outputs = [semantic, instances, compare_note]
        group = queue_group("maskrcnn")
        run.click(maskrcnn_instances_ui, inputs, outputs, api_name="maskrcnn_instances", **group)
        compare.click(
            semantic_vs_instance_ui,
            [image, score],
            compare_outputs,
            api_name="semantic_vs_instance",
            **group,
        )
        # A new image also refreshes the comparison; threshold and model changes only the top.
        for event in (image.upload, examples.load_input_event.then):
            event(maskrcnn_instances_ui, inputs, outputs, api_visibility="private", **group).then(
                semantic_vs_instance_ui,
                [image, score],
                compare_outputs,
                api_visibility="private",
                **group,
            )
        for control in (score.release, mask.release, model.change):
            control(refresh_ui, inputs, outputs, api_visibility="private", **group)
