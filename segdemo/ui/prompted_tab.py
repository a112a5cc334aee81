"""Tab: prompted masks, SAM-style — click, remove, box, undo; the same through /prompt_segment."""

from __future__ import annotations

import json
import math
import uuid

import gradio as gr
import numpy as np
from PIL import Image, ImageDraw

from segdemo import viz
from segdemo.examples import flower_examples, scene_examples
from segdemo.imaging import PreparedImage, save_png
from segdemo.registry import get_spec, is_available, list_models
from segdemo.tasks.prompted import (
    EVERYTHING_MIN_IOU,
    EVERYTHING_MIN_STABILITY,
    PromptError,
    embed,
    segment,
    segment_everything,
)
from segdemo.ui.common import (
    image_input,
    load_input,
    notes_markdown,
    queue_group,
    result_image,
    to_uint8_mask,
    user_errors,
)

DEFAULT_MODEL = "sam_tiny"
MODES = [
    ("Add (positive point)", "add"),
    ("Remove (negative point)", "remove"),
    ("Box (click two corners)", "box"),
]
MAX_PROMPTS = 64  # per image: the history of masks kept for "undo" stays small
POSITIVE, NEGATIVE, BOX = (40, 220, 90), (235, 50, 50), (255, 215, 0)

EXPLANATION = """
**How SAM answers a click at once.** The model has three parts. The heavy **image encoder**
turns the picture into a grid of 256-number vectors (one per 16×16 pixels); it runs once per
image. A click or a box goes through a tiny **prompt encoder** (a positional code of where you
clicked, plus "positive", "negative" or "box corner"), and a small **mask decoder** — a
two-way transformer in which the prompt tokens attend to the image grid and the grid to the
prompts — turns them into a mask. Only these two run per click, so every click costs
milliseconds, not seconds.

**Ambiguity.** One click on a shirt could mean the shirt or the whole person. For a single
click the decoder gives **three masks** (roughly part, object, bigger whole) and a
**predicted IoU** for each — a small head trained to guess how good each mask is. The best is
chosen; pick another below. With more prompts the question is settled and one mask comes back.

**Corrections.** A negative click removes what spilled over, another positive click adds what
was missed; the previous mask goes back into the model as a hint, as in SAM's own interactive
training. The spot you click always keeps the label you gave it. **Segment everything**
prompts a grid of points and keeps confident, stable, distinct masks.

`sam_tiny` is a real `segment_anything` SAM — the package's own prompt encoder and mask
decoder — behind a small convolutional encoder, trained here from scratch on generated
pictures only. It never saw a photo: on real photos its first mask is mostly a blob around the
click, and reaching 90% IoU takes most of 20 clicks (COCO MVal, see the README). The official
ViT checkpoints, which learned from 11 million photos, follow object boundaries.
"""


def model_choices() -> list[tuple[str, str]]:
    """Dropdown entries: every prompted model, the unavailable ones marked as such."""
    choices = []
    for name in list_models(task="prompted"):
        if is_available(name):
            choices.append((name, name))
        else:
            spec = get_spec(name)
            hint = spec.checkpoints[0] if spec.checkpoints else f"weights/{spec.weights}"
            choices.append((f"{name} — not available: put {hint} in weights/", name))
    return choices


def new_state(prepared: PreparedImage | None = None) -> dict:
    """Per-user state: the image, its prompts (original pixels) and one mask entry per prompt."""
    return {"prepared": prepared, "prompts": [], "corner": None, "history": [], "model": None}


def _session(request: gr.Request | None) -> str:
    # Browser and gradio_client calls both carry a session hash; anything else gets a private
    # key of its own, so nothing is ever shared by accident.
    return getattr(request, "session_hash", None) or f"anonymous-{uuid.uuid4().hex}"


def _point_list(prompts: list[dict]) -> list[list[float]]:
    return [[p["x"], p["y"], p["label"]] for p in prompts if p["kind"] == "point"]


def _last_box(prompts: list[dict]) -> list[float] | None:
    boxes = [p["box"] for p in prompts if p["kind"] == "box"]
    return boxes[-1] if boxes else None  # SAM takes one box: a new one replaces the old


def _predict(state: dict, model_name: str, session: str, feed_back: bool = True):
    """Run the model on all current prompts; returns the history entry and the result."""
    prompts, history = state["prompts"], state["history"]
    previous = history[-1] if history and feed_back and state["model"] == model_name else None
    multimask = len(prompts) == 1 and prompts[0]["kind"] == "point"
    result = segment(
        state["prepared"],
        _point_list(prompts),
        _last_box(prompts),
        model_name,
        multimask,
        session,
        mask_input=None if previous is None else previous["logits"][previous["chosen"]],
    )
    entry = {
        "masks": result.working_masks,
        "scores": [float(s) for s in result.scores],
        "logits": result.low_res_logits,
        "chosen": result.best,
        "seconds": result.predict_seconds,
    }
    return entry, result


def _draw(state: dict) -> np.ndarray:
    """The working image with the chosen mask, its outline, the points and the box."""
    prepared: PreparedImage = state["prepared"]
    picture = prepared.pixels
    if state["history"] and state["history"][-1] is not None:
        entry = state["history"][-1]
        mask = entry["masks"][entry["chosen"]]
        picture = viz.outline(viz.overlay(picture, mask), mask)
    canvas = Image.fromarray(picture)
    draw = ImageDraw.Draw(canvas)
    r = max(4, round(max(prepared.size) / 110))
    for prompt in state["prompts"]:
        if prompt["kind"] == "point":
            ((x, y),) = prepared.to_working([[prompt["x"], prompt["y"]]])
            colour = POSITIVE if prompt["label"] == 1 else NEGATIVE
            draw.ellipse((x - r, y - r, x + r, y + r), fill=colour, outline="white", width=2)
        else:
            corners = prepared.to_working(np.reshape(prompt["box"], (2, 2)))
            draw.rectangle(tuple(corners.ravel()), outline=BOX, width=max(2, r // 2))
    if state["corner"] is not None:
        ((x, y),) = prepared.to_working([state["corner"]])
        draw.rectangle((x - r, y - r, x + r, y + r), outline=BOX, width=2)
    return np.asarray(canvas)


def _thumbnails(state: dict) -> list[tuple[np.ndarray, str]]:
    entry = state["history"][-1] if state["history"] else None
    if entry is None:
        return []
    small = Image.fromarray(state["prepared"].pixels)
    small.thumbnail((220, 220))
    size = small.size
    pixels, items = np.asarray(small), []
    for k, (mask, score) in enumerate(zip(entry["masks"], entry["scores"], strict=True)):
        shrunk = np.asarray(Image.fromarray(mask).resize(size, Image.NEAREST))
        chosen = " · chosen" if k == entry["chosen"] else ""
        items.append(
            (viz.overlay(pixels, shrunk), f"mask {k + 1}: predicted IoU {score:.2f}{chosen}")
        )
    return items


def _outputs(state: dict, note: str = ""):
    """(state, canvas, masks gallery, cut-out, mask file, status, points JSON, box JSON)."""
    prepared: PreparedImage = state["prepared"]
    if prepared is None:
        return state, None, [], None, None, note, "", ""
    entry = state["history"][-1] if state["history"] else None
    cutout = mask_file = None
    lines = [note] if note else []
    if entry is not None:
        mask = entry["masks"][entry["chosen"]]
        cutout = np.dstack([prepared.pixels, to_uint8_mask(mask)])
        mask_file = save_png(to_uint8_mask(prepared.mask_to_original(mask)), "prompt-mask")
        lines.append(
            f"**{len(state['prompts'])} prompt(s)** · prediction {1000 * entry['seconds']:.0f} ms"
            f" · mask {entry['chosen'] + 1} of {len(entry['masks'])}, predicted IoU "
            f"{entry['scores'][entry['chosen']]:.2f} · {int(mask.sum()):,} pixels at working size"
        )
    if state["corner"] is not None:
        lines.append("Box: first corner set; click the opposite corner.")
    lines.append(notes_markdown(prepared))
    box = _last_box(state["prompts"])
    return (
        state,
        _draw(state),
        _thumbnails(state),
        cutout,
        mask_file,
        "\n\n".join(line for line in lines if line),
        json.dumps(
            [[round(v, 1) for v in p[:2]] + [int(p[2])] for p in _point_list(state["prompts"])]
        ),
        "" if box is None else json.dumps([round(v, 1) for v in box]),
    )


@user_errors
def load_image(image_path, model_name: str, request: gr.Request):
    """A new image: prepare it, embed it now (so clicks answer at once), forget old prompts."""
    if image_path is None:
        return _outputs(new_state())
    state = new_state(load_input(image_path))
    embedding = embed(state["prepared"], model_name, _session(request))
    state["model"] = model_name
    note = (
        f"Image embedded by `{model_name}` in {1000 * embedding.seconds:.0f} ms "
        f"({embedding.features.shape[-1]}×{embedding.features.shape[-2]} grid). Click on it."
    )
    return _outputs(state, note)


@user_errors
def add_prompt(state: dict, mode: str, model_name: str, evt: gr.SelectData, request: gr.Request):
    """A click on the image: a point, or one corner of a box, in the chosen mode."""
    prepared: PreparedImage | None = state["prepared"]
    if prepared is None:
        raise gr.Error("Upload an image or pick an example first.")
    if len(state["prompts"]) >= MAX_PROMPTS:
        raise gr.Error(f"That is {MAX_PROMPTS} prompts already: clear them and start again.")
    ((x, y),) = prepared.to_original([evt.index])  # the canvas shows the working-size image
    x = float(np.clip(x, 0, prepared.original_size[1] - 1))
    y = float(np.clip(y, 0, prepared.original_size[0] - 1))
    if mode == "box":
        if state["corner"] is None:
            state["corner"] = [x, y]
            return _outputs(state)
        (x0, y0), state["corner"] = state["corner"], None
        state["prompts"].append(
            {"kind": "box", "box": [min(x0, x), min(y0, y), max(x0, x), max(y0, y)]}
        )
    else:
        state["prompts"].append({"kind": "point", "x": x, "y": y, "label": int(mode == "add")})
    entry, _ = _predict(state, model_name, _session(request))
    state["history"].append(entry)
    state["model"] = model_name
    return _outputs(state)


@user_errors
def undo(state: dict, model_name: str, request: gr.Request):
    """Take back the last prompt (or a half-drawn box) and show the mask from before it."""
    if state["prepared"] is None:
        return _outputs(state)
    if state["corner"] is not None:
        state["corner"] = None
    elif state["prompts"]:
        state["prompts"].pop()
        state["history"].pop()
        if state["history"] and state["history"][-1] is None:  # made by another model
            state["history"][-1], _ = _predict(state, model_name, _session(request), False)
            state["model"] = model_name
    return _outputs(state)


def clear(state: dict):
    """Forget every prompt of the current image (the embedding stays cached)."""
    return _outputs(new_state(state["prepared"]))


@user_errors
def change_model(state: dict, model_name: str, request: gr.Request):
    """Embed the image with the chosen model and redo the current prompts with it."""
    if state["prepared"] is None:
        return _outputs(state)
    embedding = embed(state["prepared"], model_name, _session(request))
    note = f"`{model_name}` embedded the image in {1000 * embedding.seconds:.0f} ms."
    if state["prompts"]:
        # Earlier masks came from the other model: keep the prompts, recompute the last mask.
        state["history"] = [None] * (len(state["prompts"]) - 1)
        entry, _ = _predict(state, model_name, _session(request), False)
        state["history"].append(entry)
    state["model"] = model_name
    return _outputs(state, note)


def choose_mask(state: dict, evt: gr.SelectData):
    """Pick one of the three masks of a single click."""
    if state["history"] and state["history"][-1] is not None:
        state["history"][-1]["chosen"] = int(evt.index)
    return _outputs(state)


@user_errors
def everything(state: dict, model_name: str, request: gr.Request, progress=gr.Progress()):  # noqa: B008
    """SamAutomaticMaskGenerator on the current image: coloured masks and the time taken."""
    prepared: PreparedImage | None = state["prepared"]
    if prepared is None:
        raise gr.Error("Upload an image or pick an example first.")
    progress(0.0, desc="embedding the image")
    result = segment_everything(
        prepared,
        model_name,
        _session(request),
        progress=lambda f: progress(f, desc="decoding a 16×16 grid of point prompts"),
    )
    rng = np.random.default_rng(0)
    picture = prepared.pixels.copy()
    for mask in result.masks:  # largest first: small masks stay visible on top
        colour = tuple(int(c) for c in rng.integers(40, 256, 3))
        picture = viz.outline(viz.overlay(picture, mask, colour, alpha=0.6), mask)
    note = (
        f"**{len(result.masks)} masks** from 256 point prompts in {result.seconds:.1f} s "
        f"(`{model_name}`; predicted IoU ≥ {EVERYTHING_MIN_IOU}, stability ≥ "
        f"{EVERYTHING_MIN_STABILITY}, overlaps removed)."
    )
    if not result.masks:
        note += (
            f" The model is sure of none of its masks here: the best scored "
            f"{result.best_candidate:.2f}. The small `sam_tiny`, trained briefly from scratch, "
            "rates hardly any mask that high on any image; its click prompts still work, and "
            "the official checkpoints do this well."
        )
    return picture, note


def _parse(text: str, what: str):
    text = (text or "").strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise PromptError(f"{what} is not valid JSON ({err.msg}): {text[:60]}") from err


def parse_prompts(points_json: str, box_json: str, size: tuple[int, int]):
    """Validated ``[[x, y, label], ...]`` and ``[x0, y0, x1, y1]`` (or None), original pixels."""
    h, w = size
    points = _parse(points_json, "points") or []
    if not isinstance(points, list) or not all(
        isinstance(p, list) and len(p) == 3 and all(isinstance(v, int | float) for v in p)
        for p in points
    ):
        raise PromptError("points must be a JSON list of [x, y, label], e.g. [[120, 80, 1]]")
    for x, y, label in points:
        if not (math.isfinite(x) and math.isfinite(y)):
            raise PromptError(f"point ({x}, {y}) has a coordinate that is not a number")
        if label not in (0, 1):
            raise PromptError(f"a point's label is 1 (positive) or 0 (negative), not {label}")
        if not (0 <= x < w and 0 <= y < h):
            raise PromptError(f"point ({x}, {y}) lies outside the {w}×{h} image")
    box = _parse(box_json, "box")
    if box is not None:
        if not (
            isinstance(box, list) and len(box) == 4 and all(isinstance(v, int | float) for v in box)
        ):
            raise PromptError("box must be a JSON list [x0, y0, x1, y1], or empty")
        if not all(math.isfinite(v) for v in box):
            raise PromptError(f"box {box} has a coordinate that is not a number")
        if min(box) < 0 or max(box[0], box[2]) > w or max(box[1], box[3]) > h:
            raise PromptError(f"box {box} reaches outside the {w}×{h} image")
        if box[0] == box[2] or box[1] == box[3]:
            raise PromptError(f"box {box} has no area: give two opposite corners")
        # Corners may come in any order (a box dragged up or to the left): sort them.
        box = [min(box[0], box[2]), min(box[1], box[3]), max(box[0], box[2]), max(box[1], box[3])]
    if not points and box is None:
        raise PromptError("Give at least one point or a box.")
    return points, box


@user_errors
def prompt_segment(
    image_path,
    points_json: str,
    box_json: str,
    model_name: str,
    multimask: bool,
    request: gr.Request,
):
    """The API: image + prompts as JSON -> (overlay, mask PNGs at the original size, scores)."""
    prepared = load_input(image_path)
    points, box = parse_prompts(points_json, box_json, prepared.original_size)
    result = segment(prepared, points, box, model_name, bool(multimask), _session(request))
    state = new_state(prepared)
    state["prompts"] = [{"kind": "point", "x": x, "y": y, "label": int(k)} for x, y, k in points]
    if box is not None:
        state["prompts"].append({"kind": "box", "box": box})
    state["history"] = [{"masks": result.working_masks, "chosen": result.best}]
    files = [save_png(to_uint8_mask(m), f"prompt-mask-{k}") for k, m in enumerate(result.masks)]
    details = {
        "model": model_name,
        "scores": [round(float(s), 4) for s in result.scores],
        "best": result.best,
        "original_size": list(prepared.original_size),
        "mask_pixels": [int(m.sum()) for m in result.masks],
        "embed_ms": round(1000 * result.embed_seconds, 1),
        "predict_ms": round(1000 * result.predict_seconds, 1),
    }
    return _draw(state), files, details


def send_as_label(image_path, mask_path, targets: int):
    """The photo and its current mask, for the "train on this image" sections of other tabs:
    per target tab its photo, its opened section, its mask label."""
    if image_path is None or mask_path is None:
        raise gr.Error("Upload an image and click on it first: there is no mask to send.")
    gr.Info("The mask is now the label in tabs 1 and 2: open one and press Fine-tune.")
    return [image_path, gr.Accordion(open=True), mask_path] * targets


def build_tab(label_targets: list[list[gr.components.Component]] = ()) -> None:
    """The tab; ``label_targets`` are other tabs' ``[photo, section, mask label]`` to which a
    button sends this tab's photo and mask (the "train on this image" sections)."""
    with gr.Tab("Prompted masks (SAM-style)", id="prompted", elem_id="prompted-tab"):
        state = gr.State(new_state())
        with gr.Row():
            with gr.Column(scale=2):
                image = image_input("Image (upload, then click on the picture at the right)")
                examples = gr.Examples(
                    flower_examples() + scene_examples(), inputs=[image], label="Examples"
                )
                model = gr.Dropdown(model_choices(), value=DEFAULT_MODEL, label="Model")
                mode = gr.Radio(
                    MODES, value="add", label="A click on the image will", elem_id="prompted-mode"
                )
                with gr.Row():
                    undo_button = gr.Button("Undo last prompt")
                    clear_button = gr.Button("Clear all")
                gr.Markdown(EXPLANATION)
            with gr.Column(scale=3):
                canvas = gr.Image(
                    label="Click here: green = positive, red = negative, yellow = box",
                    type="numpy",
                    format="png",
                    interactive=False,
                    height=480,
                    elem_id="prompted-canvas",
                )
                status = gr.Markdown(elem_id="prompted-status")
                gallery = gr.Gallery(
                    label="Masks for a single click (predicted IoU); click one to choose it",
                    columns=3,
                    height=200,
                    allow_preview=False,
                )
                with gr.Row():
                    cutout = result_image("Cut-out (transparent PNG)", height=240)
                    mask_file = gr.File(label="Binary mask, original size (PNG)")
                if label_targets:
                    send = gr.Button("Train tabs 1 and 2 on this mask (Train on this image)")
                with gr.Accordion("Segment everything", open=False):
                    everything_button = gr.Button("Segment everything", variant="primary")
                    everything_image = result_image("Automatic masks")
                    everything_note = gr.Markdown()
                with gr.Accordion("Prompts as JSON: the /prompt_segment API", open=False):
                    gr.Markdown(
                        "Clicks above fill these boxes in original-image pixels. The button "
                        "sends them, with the image, to `/prompt_segment` — what "
                        "`gradio_client` calls, since it cannot click."
                    )
                    points_json = gr.Textbox(label="points [[x, y, label], ...]; 1 = positive")
                    box_json = gr.Textbox(label="box [x0, y0, x1, y1], or empty")
                    multimask = gr.Checkbox(value=True, label="three masks (multimask)")
                    run_json = gr.Button("Segment from JSON")
                    api_picture = result_image("Best mask and prompts")
                    api_files = gr.File(label="Masks (PNG, original size)", file_count="multiple")
                    api_details = gr.JSON(label="Scores")

        outputs = [state, canvas, gallery, cutout, mask_file, status, points_json, box_json]
        private = {"api_visibility": "private"}
        embed_group, click_group = queue_group("sam_embed"), queue_group("sam_click")
        image.upload(load_image, [image, model], outputs, **private, **embed_group)
        image.clear(lambda: _outputs(new_state()), None, outputs, **private)
        examples.load_input_event.then(
            load_image, [image, model], outputs, **private, **embed_group
        )
        model.change(change_model, [state, model], outputs, **private, **embed_group)
        everything_button.click(
            everything,
            [state, model],
            [everything_image, everything_note],
            **private,
            **embed_group,
        )
        canvas.select(add_prompt, [state, mode, model], outputs, **private, **click_group)
        undo_button.click(undo, [state, model], outputs, **private, **click_group)
        clear_button.click(clear, [state], outputs, **private)
        gallery.select(choose_mask, [state], outputs, **private)
        if label_targets:
            send.click(
                lambda image_path, mask_path: send_as_label(
                    image_path, mask_path, len(label_targets)
                ),
                [image, mask_file],
                [component for target in label_targets for component in target],
                **private,
            )
        run_json.click(
            prompt_segment,
            [image, points_json, box_json, model, multimask],
            [api_picture, api_files, api_details],
            api_name="prompt_segment",
            **click_group,
        )
