""" "Train on this image": the section the first two tabs share, and the /train_on_image API.

The user paints green (foreground) and red (background) strokes on a photo, or gives a mask
PNG as the label; copies of the flower models are fine-tuned on those pixels (``tasks.finetune``)
and shown beside the shipped models. The tuned weights live in that user's ``gr.State`` only.
"""

from __future__ import annotations

import gradio as gr
import numpy as np

from segdemo import viz
from segdemo.examples import ground_truth
from segdemo.imaging import PreparedImage, prepare_image, read_mask
from segdemo.metrics import iou
from segdemo.registry import build_model
from segdemo.tasks.finetune import (
    FLOWER_MODELS,
    TIME_BUDGET,
    finetune,
    labels_from_mask,
    probability,
    strokes_from_colours,
)
from segdemo.ui.common import image_input, load_input, queue_group, user_errors

FOREGROUND, BACKGROUND = "#00c853", "#d50000"
HOW = f"""
The tab's photo appears in the editor. Paint **green** strokes on the object and **red**
strokes on the background (a few strokes are enough), or give a mask PNG as the label — for
example the binary mask downloaded from the prompted-masks tab. Copies of the models are
fine-tuned on just those pixels for at most {TIME_BUDGET:.0f} seconds, as the lecture trains
its nets on patches of the photo itself, and shown beside the shipped models. The copies
belong to your session only; the shipped models do not change. Then try them on a second photo.
"""


def _labels_picture(prepared: PreparedImage, foreground: np.ndarray, background: np.ndarray):
    """What the models are told, at the photo's original size: the object's pixels green and
    the background's red over the dimmed photo, so a user sees how their strokes were read.
    ``foreground`` and ``background`` are at the working size, as the models get them."""
    picture = np.array(prepared.mask_to_original((prepared.pixels * 0.45).astype(np.uint8)))
    for marked, colour in ((foreground, FOREGROUND), (background, BACKGROUND)):
        picture[prepared.mask_to_original(marked)] = tuple(
            int(colour[k : k + 2], 16) for k in (1, 3, 5)
        )
    return picture


def _panel(prepared: PreparedImage, prob: np.ndarray, caption: str):
    mask = prob >= 0.5
    return viz.outline(viz.overlay(prepared.pixels, prob), mask), caption


def _score(prob: np.ndarray, truth, foreground, background) -> tuple[str, dict]:
    """Caption text and numbers: agreement with the strokes (if any), IoU (if the truth is
    known, as for the examples)."""
    mask = prob >= 0.5
    numbers, parts = {}, []
    marked = foreground.sum() + background.sum()
    if marked:
        agree = (mask[foreground].sum() + (~mask[background]).sum()) / marked
        numbers["stroke_agreement"] = round(float(agree), 4)
        parts.append(f"agrees with {100 * agree:.0f}% of your strokes")
    if truth is not None:
        numbers["iou"] = round(iou(mask, truth), 4)
        parts.append(f"IoU {numbers['iou']:.3f}")
    return " · ".join(parts), numbers


def compare(prepared: PreparedImage, models: dict, foreground=None, background=None):
    """Gallery items (shipped, then fine-tuned, per model) and the numbers behind them."""
    truth = ground_truth(prepared.pixels)
    truth = None if truth is None else truth > 0
    if foreground is None:  # a second photo: no strokes to compare with
        foreground = background = np.zeros(prepared.size, bool)
    items, details = [], {}
    for name, model in models.items():
        details[name] = {}
        for kind, net in (("shipped", None), ("fine-tuned", model)):
            prob = probability(name, prepared.pixels, net)
            text, details[name][kind] = _score(prob, truth, foreground, background)
            items.append(_panel(prepared, prob, f"{name}, {kind}" + (f": {text}" if text else "")))
    return items, details


def _numbers(numbers: dict) -> str:
    return ", ".join(f"{key.replace('_', ' ')} {value:.3f}" for key, value in numbers.items())


def _summary(tuned, details: dict) -> str:
    lines = [
        "| model | steps | seconds | loss first → last | shipped | fine-tuned |",
        "|---|---|---|---|---|---|",
    ]
    for name in tuned.models:
        first, last = tuned.losses[name]
        lines.append(
            f"| `{name}` | {tuned.steps[name]} | {tuned.seconds[name]:.1f} | "
            f"{first:.3f} → {last:.3f} | {_numbers(details[name]['shipped'])} | "
            f"{_numbers(details[name]['fine-tuned'])} |"
        )
    return "\n".join(lines)


def _train(prepared, foreground, background, names, steps, progress):
    """Labels at the upload's size -> the tuned models, a picture of the labels as the models
    got them, the gallery items and the numbers behind them."""
    foreground, background = (
        prepared.mask_to_working(foreground),
        prepared.mask_to_working(background),
    )
    labels = _labels_picture(prepared, foreground, background)
    tuned = finetune(
        prepared.pixels,
        foreground,
        background,
        names,
        int(steps),
        progress=lambda fraction, text: progress(fraction, desc=text),
    )
    items, details = compare(prepared, tuned.models, foreground, background)
    return tuned, labels, items, details


def _to_state(tuned) -> dict:
    """What a session keeps: each tuned model's weights (a few hundred kB, in CPU memory even
    when the app runs on a GPU), not the modules."""
    return {
        name: {k: v.to("cpu", copy=True) for k, v in m.state_dict().items()}
        for name, m in tuned.models.items()
    }


def _from_state(state: dict) -> dict:
    models = {}
    for name, weights in state.items():
        model = build_model(name)
        model.load_state_dict(weights)
        models[name] = model.eval().requires_grad_(False)
    return models


def _painted(photo: np.ndarray, composite) -> np.ndarray | None:
    """The strokes as an RGBA layer: wherever the editor's composite differs from the photo.

    Covers editors that flatten the paint into the composite instead of returning a layer.
    """
    if composite is None:
        return None
    composite = np.asarray(composite)
    if composite.shape[:2] != photo.shape[:2] or photo.ndim != 3:
        return None
    changed = np.any(composite[..., :3] != photo[..., :3], axis=-1)
    return np.dstack([composite[..., :3], np.where(changed, 255, 0).astype(np.uint8)])


def train_on_editor(names: tuple[str, ...]):
    @user_errors
    def train(editor: dict | None, mask_label, steps, progress=gr.Progress()):  # noqa: B008
        """ImageEditor value (photo + strokes layer) or a mask PNG -> tuned weights, gallery."""
        if editor is None or editor.get("background") is None:
            raise gr.Error("Upload a photo into the editor first, then paint on it.")
        photo = np.asarray(editor["background"])
        prepared = prepare_image(photo[..., :3] if photo.ndim == 3 else photo)
        if mask_label is not None:
            foreground, background = labels_from_mask(read_mask(mask_label, "mask label"))
        else:
            layers = [np.asarray(layer) for layer in editor.get("layers") or []]
            layers.append(_painted(photo, editor.get("composite")))
            strokes = [strokes_from_colours(layer) for layer in layers if layer is not None]
            if not any(fg.any() or bg.any() for fg, bg in strokes):
                raise gr.Error("Paint green and red strokes on the photo (or give a mask PNG).")
            foreground = np.logical_or.reduce([s[0] for s in strokes])
            background = np.logical_or.reduce([s[1] for s in strokes])
        tuned, labels, items, details = _train(
            prepared, foreground, background, names, steps, progress
        )
        return _to_state(tuned), labels, items, _summary(tuned, details)

    return train


@user_errors
def apply_tuned(state: dict | None, image_path):
    """A second photo through the shipped models and this session's fine-tuned copies."""
    if not state:
        raise gr.Error("Train on an image first: there are no fine-tuned models in this session.")
    prepared = load_input(image_path)
    items, _ = compare(prepared, _from_state(state))
    return items


@user_errors
def train_on_image(image_path, foreground_path, background_path, steps, progress=gr.Progress()):  # noqa: B008
    """The API: image + foreground and background stroke masks (white = marked) -> all three
    flower models fine-tuned, compared with the shipped ones."""
    prepared = load_input(image_path)
    if foreground_path is None or background_path is None:
        raise gr.Error("Give both a foreground and a background stroke mask (PNG, white = marked).")
    foreground = read_mask(foreground_path, "foreground mask")
    background = read_mask(background_path, "background mask")
    if foreground.shape != prepared.original_size or background.shape != prepared.original_size:
        h, w = prepared.original_size
        raise gr.Error(f"The stroke masks must be the image's size, {w}×{h} pixels.")
    tuned, _, items, details = _train(
        prepared, foreground, background, FLOWER_MODELS, steps, progress
    )
    for name in tuned.models:
        details[name].update(steps=tuned.steps[name], seconds=tuned.seconds[name])
    return items, _summary(tuned, details), details


def build_section(
    names: tuple[str, ...], key: str, source: gr.Image, with_api: bool = False
) -> list[gr.components.Component]:
    """The "train on this image" accordion for the models ``names`` of one tab; the tab's
    image input ``source`` fills the editor, so a photo is uploaded once.

    Returns ``[source, accordion, mask label]``: where another tab sends a photo and its mask.
    """
    group = queue_group("finetune")
    with gr.Accordion("Train on this image: your strokes as labels", open=False) as accordion:
        gr.Markdown(HOW)
        with gr.Row():
            editor = gr.ImageEditor(
                label="Photo: paint green on the object, red on the background",
                type="numpy",
                format="png",
                sources=["upload", "clipboard"],
                transforms=(),
                brush=gr.Brush(
                    default_size=10,
                    colors=[FOREGROUND, BACKGROUND],
                    default_color=FOREGROUND,
                    color_mode="fixed",
                ),
                height=420,
                elem_id=f"{key}-editor",
            )
            with gr.Column():
                mask_label = gr.Image(
                    label="…or a mask PNG as the label (white = object)",
                    type="filepath",
                    image_mode=None,  # handed over as it is: read_mask checks and decodes it
                    sources=["upload"],
                    height=200,
                    elem_id=f"{key}-finetune-mask",
                )
                steps = gr.Slider(
                    10,
                    400,
                    100,
                    step=10,
                    label=f"Steps per model (≤ {TIME_BUDGET:.0f} s in all)",
                    elem_id=f"{key}-finetune-steps",
                )
                train = gr.Button("Fine-tune on this image", variant="primary")
        with gr.Row():
            labels = gr.Image(
                label="Labels as read: green object, red background",
                format="png",
                interactive=False,
                height=300,
                elem_id=f"{key}-finetune-labels",
            )
            summary = gr.Markdown(elem_id=f"{key}-finetune-summary")
        gallery = gr.Gallery(
            label="Shipped (left) and fine-tuned (right)",
            columns=2,
            format="png",
            height="auto",
            elem_id=f"{key}-finetune-gallery",
        )
        with gr.Row():
            second = image_input("A second photo for the fine-tuned models")
            apply = gr.Button("Segment it with the fine-tuned models")
        second_gallery = gr.Gallery(label="Second photo", columns=2, format="png", height="auto")
        tuned = gr.State(None)
        source.change(lambda path: path, source, editor, api_visibility="private", queue=False)
        train.click(
            train_on_editor(names),
            [editor, mask_label, steps],
            [tuned, labels, gallery, summary],
            api_visibility="private",
            **group,
        )
        apply.click(apply_tuned, [tuned, second], second_gallery, api_visibility="private", **group)
        if with_api:
            with gr.Accordion("The same from mask images: the /train_on_image API", open=False):
                gr.Markdown(
                    "All three flower models, from a photo and two PNG masks (white = marked)."
                )
                with gr.Row():
                    api_image = image_input("Photo")
                    api_fg = gr.Image(
                        label="Foreground strokes (PNG)",
                        type="filepath",
                        image_mode=None,
                        sources=["upload"],
                    )
                    api_bg = gr.Image(
                        label="Background strokes (PNG)",
                        type="filepath",
                        image_mode=None,
                        sources=["upload"],
                    )
                api_steps = gr.Number(100, precision=0, label="Steps per model")
                api_run = gr.Button("Fine-tune from masks")
                api_gallery = gr.Gallery(columns=2, format="png", height="auto")
                api_summary = gr.Markdown()
                api_details = gr.JSON()
            api_run.click(
                train_on_image,
                [api_image, api_fg, api_bg, api_steps],
                [api_gallery, api_summary, api_details],
                api_name="train_on_image",
                **group,
            )
    return [source, accordion, mask_label]
