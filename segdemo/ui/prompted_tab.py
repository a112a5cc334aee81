"""Tab: prompted masks — click, remove, box, undo; the same through /prompt_segment.

The handlers unpack the gradio values, call one ``prompt_session`` transition, and pack the
result; the state a handler returns is always a new dict, so a failed call changes nothing.
"""

from __future__ import annotations

import uuid

import gradio as gr
import numpy as np
from PIL import Image, ImageDraw

from segdemo import viz
from segdemo.examples import flower_examples, scene_examples
from segdemo.imaging import PreparedImage, save_png
from segdemo.registry import get_spec, is_available, list_models
from segdemo.tasks import prompt_session
from segdemo.tasks.prompt_session import (
    PromptSession,
    Step,
    box,
    parse_prompts,
    point,
    replay,
)
from segdemo.tasks.prompted import EVERYTHING_MIN_IOU, embed, segment_everything
from segdemo.ui.common import (
    image_input,
    load_input,
    notes_markdown,
    queue_group,
    result_image,
    to_uint8_mask,
    user_errors,
)

DEFAULT_MODEL = "click_net"
MODES = [
    ("Add (positive point)", "add"),
    ("Remove (negative point)", "remove"),
    ("Box (click two corners)", "box"),
]
POSITIVE, NEGATIVE, BOX = (40, 220, 90), (235, 50, 50), (255, 215, 0)

EXPLANATION = """
**Two ways to let a click in.** A prompted model must bring together two things: what the
picture shows and where you clicked.

- **Late fusion (SAM, `sam_tiny`).** A heavy **image encoder** turns the picture into a grid
  of 256-number vectors (one per 16×16 pixels), once per image. Each click then runs only a
  tiny **prompt encoder** and a small **mask decoder**, in which the click attends to the
  grid. A click costs milliseconds whatever the model's size — but the click meets the image
  only at 1/16 resolution, and the grid must already know which pixels belong together.
  For one click the decoder gives **three masks** (part, object, whole) with a **predicted
  IoU** each; pick another below.
- **Early fusion (`click_net`, the RITM design).** The image, a map of your positive clicks,
  one of your negative clicks and the previous mask go into **one network together**, from
  its first layer, at full resolution. Every click runs the whole network — so it is small,
  and after the first click it runs on a **zoom-in** crop around the current mask, at a fixed
  working size: small objects are looked at closely, large ones whole.

**Corrections.** A negative click removes what spilled over, another positive click adds what
was missed; the previous mask goes back into the model each time. A box becomes the region
the model looks at (with a click at its centre), and nothing outside it is in the mask. The
spot you click always keeps the label you gave it.

**What that buys here.** Both small models were trained from scratch on generated pictures
only. On 160 real photos (COCO MVal), reaching 90% IoU takes on average 18.5 of 20 clicks
with `click_net` and 19.4 with `sam_tiny`; a classical random walker seeded with the same
clicks needs 14.4, so neither has learned to find a photo's objects yet: a first click gives
a blob of about the same size on any object. A `click_net` click costs about 30 ms (the whole
network, every click), a `sam_tiny` click about 30 ms after a 74 ms embedding. The official
SAM checkpoints, which learned from 11 million photos, follow object boundaries far better.
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


def new_state(prepared: PreparedImage | None = None, model: str = DEFAULT_MODEL) -> dict:
    """Per-user state: the image, the prompt session on it, and a half-drawn box's corner."""
    return {"prepared": prepared, "session": PromptSession(model), "corner": None}


def _with(state: dict, **changes) -> dict:
    """A new state dict: a handler never changes the one it was given, so a failed model
    call leaves the user's state as it was."""
    return {**state, **changes}


def _key(request: gr.Request | None) -> str:
    # Browser and gradio_client calls both carry a session hash; anything else gets a private
    # key of its own, so nothing is ever shared by accident.
    return getattr(request, "session_hash", None) or f"anonymous-{uuid.uuid4().hex}"


def _draw(prepared: PreparedImage, session: PromptSession, corner=None) -> np.ndarray:
    """The working image with the chosen mask, its outline, the points and the box."""
    picture = prepared.pixels
    if session.current is not None:
        mask = session.current.mask
        picture = viz.outline(viz.overlay(picture, mask), mask)
    canvas = Image.fromarray(picture)
    draw = ImageDraw.Draw(canvas)
    r = max(4, round(max(prepared.size) / 110))
    for prompt in session.prompts:
        if prompt["kind"] == "point":
            ((x, y),) = prepared.to_working([[prompt["x"], prompt["y"]]])
            colour = POSITIVE if prompt["label"] == 1 else NEGATIVE
            draw.ellipse((x - r, y - r, x + r, y + r), fill=colour, outline="white", width=2)
        else:
            corners = prepared.to_working(np.reshape(prompt["box"], (2, 2)))
            draw.rectangle(tuple(corners.ravel()), outline=BOX, width=max(2, r // 2))
    if corner is not None:
        ((x, y),) = prepared.to_working([corner])
        draw.rectangle((x - r, y - r, x + r, y + r), outline=BOX, width=2)
    return np.asarray(canvas)


def _thumbnails(prepared: PreparedImage, step: Step | None) -> list[tuple[np.ndarray, str]]:
    if step is None:
        return []
    small = Image.fromarray(prepared.pixels)
    small.thumbnail((220, 220))
    pixels, items = np.asarray(small), []
    for k, (mask, score) in enumerate(zip(step.masks, step.scores, strict=True)):
        shrunk = np.asarray(Image.fromarray(mask).resize(small.size, Image.NEAREST))
        chosen = " · chosen" if k == step.chosen else ""
        items.append(
            (viz.overlay(pixels, shrunk), f"mask {k + 1}: estimated IoU {score:.2f}{chosen}")
        )
    return items


def _outputs(state: dict, note: str = ""):
    """(state, canvas, masks gallery, cut-out, mask file, status, prompts JSON, box JSON)."""
    prepared: PreparedImage | None = state["prepared"]
    if prepared is None:
        return state, None, [], None, None, note, "", ""
    session: PromptSession = state["session"]
    step = session.current
    cutout = mask_file = None
    lines = [note] if note else []
    if step is not None:
        cutout = np.dstack([prepared.pixels, to_uint8_mask(step.mask)])
        mask_file = save_png(to_uint8_mask(prepared.mask_to_original(step.mask)), "prompt-mask")
        lines.append(
            f"**{len(session.prompts)} prompt(s)** · `{session.model}` {1000 * step.seconds:.0f} ms"
            f" · mask {step.chosen + 1} of {len(step.masks)}, estimated IoU "
            f"{step.scores[step.chosen]:.2f} · {int(step.mask.sum()):,} pixels at working size"
        )
    if state["corner"] is not None:
        lines.append("Box: first corner set; click the opposite corner.")
    lines.append(notes_markdown(prepared))
    return (
        state,
        _draw(prepared, session, state["corner"]),
        _thumbnails(prepared, step),
        cutout,
        mask_file,
        "\n\n".join(line for line in lines if line),
        session.to_json() if session.prompts else "",
        "",
    )


@user_errors
def load_image(image_path, model_name: str, request: gr.Request):
    """A new image: prepare it for the model now (so clicks answer at once), no prompts."""
    if image_path is None:
        return _outputs(new_state(model=model_name))
    state = new_state(load_input(image_path), model_name)
    kept = embed(state["prepared"], model_name, _key(request))
    note = f"Image prepared by `{model_name}` in {1000 * kept.seconds:.0f} ms. Click on it."
    return _outputs(state, note)


def _require_image(state: dict) -> PreparedImage:
    if state["prepared"] is None:
        raise gr.Error("Upload an image or pick an example first.")
    return state["prepared"]


@user_errors
def add_prompt(state: dict, mode: str, model_name: str, evt: gr.SelectData, request: gr.Request):
    """A click on the image: a point, or one corner of a box, in the chosen mode."""
    prepared = _require_image(state)
    ((x, y),) = prepared.to_original([evt.index])  # the canvas shows the working-size image
    x = float(np.clip(x, 0, prepared.original_size[1] - 1))
    y = float(np.clip(y, 0, prepared.original_size[0] - 1))
    if mode == "box" and state["corner"] is None:
        return _outputs(_with(state, corner=[x, y]))
    prompt = box(*state["corner"], x, y) if mode == "box" else point(x, y, mode == "add")
    session: PromptSession = state["session"]
    if session.model != model_name:
        session = prompt_session.change_model(session, prepared, model_name, _key(request))
    session = prompt_session.click(session, prepared, prompt, _key(request))
    return _outputs(_with(state, session=session, corner=None))


def undo(state: dict):
    """Take back the last prompt (or a half-drawn box) and show the mask from before it."""
    if state["corner"] is not None:
        return _outputs(_with(state, corner=None))
    return _outputs(_with(state, session=prompt_session.undo(state["session"])))


def clear(state: dict):
    """Forget every prompt of the current image (what the model keeps per image stays cached)."""
    return _outputs(_with(state, session=prompt_session.clear(state["session"]), corner=None))


@user_errors
def change_model(state: dict, model_name: str, request: gr.Request):
    """Prepare the image for the chosen model and replay the current prompts with it."""
    if state["prepared"] is None:
        return _outputs(_with(state, session=PromptSession(model_name)))
    kept = embed(state["prepared"], model_name, _key(request))
    session = prompt_session.change_model(
        state["session"], state["prepared"], model_name, _key(request)
    )
    note = f"`{model_name}` prepared the image in {1000 * kept.seconds:.0f} ms."
    return _outputs(_with(state, session=session), note)


@user_errors
def choose_mask(state: dict, evt: gr.SelectData):
    """Pick one of the masks of a single click."""
    return _outputs(_with(state, session=prompt_session.choose(state["session"], int(evt.index))))


@user_errors
def everything(state: dict, model_name: str, request: gr.Request, progress=gr.Progress()):  # noqa: B008
    """Every object the model is sure of, from a grid of single-point prompts."""
    prepared = _require_image(state)
    progress(0.0, desc="preparing the image")
    result = segment_everything(
        prepared,
        model_name,
        _key(request),
        progress=lambda f: progress(f, desc="prompting a grid of points"),
    )
    rng = np.random.default_rng(0)
    picture = prepared.pixels.copy()
    for mask in result.masks:  # largest first: small masks stay visible on top
        colour = tuple(int(c) for c in rng.integers(40, 256, 3))
        picture = viz.outline(viz.overlay(picture, mask, colour, alpha=0.6), mask)
    note = (
        f"**{len(result.masks)} masks** from {result.points} point prompts in "
        f"{result.seconds:.1f} s (`{model_name}`; estimated IoU ≥ {EVERYTHING_MIN_IOU}, "
        "duplicates and overlaps removed)."
    )
    if not result.masks:
        note += (
            f" The model is sure of none of its masks here: the best scored "
            f"{result.best_candidate:.2f}. The small models trained here from scratch rate "
            "hardly any mask that high on a photo; their click prompts still work, and the "
            "official SAM checkpoints do this well."
        )
    return picture, note


@user_errors
def prompt_segment(
    image_path,
    points_json: str,
    box_json: str,
    model_name: str,
    multimask: bool,
    request: gr.Request,
):
    """The API: image + prompts as JSON -> (overlay, mask PNGs at the original size, scores).

    The prompts are replayed in order as clicks would be (the box first when it is given
    apart), so the masks are the ones clicking them in the tab gives.
    """
    prepared = load_input(image_path)
    prompts = parse_prompts(points_json, box_json, prepared.original_size)
    session = replay(prepared, prompts, model_name, _key(request), bool(multimask))
    step = session.current
    originals = [prepared.mask_to_original(m) for m in step.masks]
    files = [save_png(to_uint8_mask(m), f"prompt-mask-{k}") for k, m in enumerate(originals)]
    details = {
        "model": model_name,
        "scores": [round(s, 4) for s in step.scores],
        "best": int(np.argmax(step.scores)),
        "original_size": list(prepared.original_size),
        "mask_pixels": [int(m.sum()) for m in originals],
        "predict_ms": round(1000 * sum(s.seconds for s in session.steps), 1),
    }
    return _draw(prepared, session), files, details


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
                    label="Masks for a single click (estimated IoU); click one to choose it",
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
                        "Clicks above fill the first box with the prompts in click order, in "
                        "original-image pixels. The button sends them, with the image, to "
                        "`/prompt_segment` — what `gradio_client` calls, since it cannot "
                        "click — which replays them as clicks: the same masks come back."
                    )
                    points_json = gr.Textbox(
                        label="points [[x, y, label], ...] (1 = positive), or prompt objects"
                    )
                    box_json = gr.Textbox(label="box [x0, y0, x1, y1] (replayed first), or empty")
                    multimask = gr.Checkbox(value=True, label="three masks (multimask)")
                    run_json = gr.Button("Segment from JSON")
                    api_picture = result_image("Best mask and prompts")
                    api_files = gr.File(label="Masks (PNG, original size)", file_count="multiple")
                    api_details = gr.JSON(label="Scores")

        outputs = [state, canvas, gallery, cutout, mask_file, status, points_json, box_json]
        private = {"api_visibility": "private"}
        embed_group, click_group = queue_group("sam_embed"), queue_group("sam_click")
        image.upload(load_image, [image, model], outputs, **private, **embed_group)
        image.clear(lambda name: _outputs(new_state(model=name)), [model], outputs, **private)
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
        undo_button.click(undo, [state], outputs, **private)
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
