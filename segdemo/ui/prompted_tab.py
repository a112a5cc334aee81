"""Tab: prompted masks — one picture to drop a photo on and click; the same through
/prompt_segment.

The picture (``prompt_picture``) answers clicks itself, beside the queue. The handlers here do
what may wait for a pause: the three masks with their scores, the cut-out and the mask file,
a change of model, an example, "segment everything" and the JSON API. Each reads the page's
picture from ``prompt_picture.STORE`` under the token the picture's value carries.
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
from segdemo.tasks.prompt_session import PromptSession, Step, parse_prompts, replay
from segdemo.tasks.prompted import EVERYTHING_MIN_IOU, segment_everything
from segdemo.ui import prompt_picture
from segdemo.ui.common import (
    image_input,
    load_input,
    queue_group,
    result_image,
    to_uint8_mask,
    user_errors,
)
from segdemo.ui.prompt_picture import STORE, checked_token, view

DEFAULT_MODEL = prompt_picture.DEFAULT_MODEL
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
a blob of about the same size on any object. A `click_net` click costs about 15 ms on the
server (the whole network, every click), a `sam_tiny` click about 22 ms after a 48 ms
embedding; here the mask shows about 80 ms after your click, because only the click and the
mask travel (the masks' details follow when you pause). The official
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


def _key(request: gr.Request | None) -> str:
    # Browser and gradio_client calls both carry a session hash; anything else gets a private
    # key of its own, so nothing is ever shared by accident.
    return getattr(request, "session_hash", None) or f"anonymous-{uuid.uuid4().hex}"


def _draw(prepared: PreparedImage, session: PromptSession) -> np.ndarray:
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


@user_errors
def details(value):
    """(masks gallery, cut-out, mask file, status, prompts JSON, version) of the page's
    current mask: what the page asks for once its clicks pause."""
    token = checked_token(value)
    picture = STORE.get(token)
    step = picture.session.current
    status = prompt_picture.status_line(picture)
    notes = prompt_picture.notes(picture)
    if step is None:
        return [], None, None, f"{status}\n\n{notes}", "", picture.version
    mask = to_uint8_mask(prompt_picture.original_mask(picture))
    return (
        _thumbnails(picture.prepared, step),
        prompt_picture.cutout(picture),
        save_png(mask, "prompt-mask"),
        f"**{status}** · mask {step.chosen + 1} of {len(step.masks)}\n\n{notes}",
        picture.session.to_json(),
        picture.version,
    )


@user_errors
def load_example(path, value):
    """An example picked below the picture: opened as an upload would be."""
    token = prompt_picture.token_or_new(value)  # a page on the queue fallback may have none
    picture = STORE.update(token, lambda p: prompt_picture.open_image(p, path, token))
    return view(picture, token, with_photo=True)


@user_errors
def change_model(value, model_name: str):
    """Prepare the image for the chosen model and replay the current prompts with it."""
    token = prompt_picture.token_or_new(value)
    picture = STORE.update(token, lambda p: prompt_picture.change_model(p, model_name, token))
    return view(picture, token)


@user_errors
def choose_mask(value, evt: gr.SelectData):
    """Pick one of the masks of a single click."""
    token = checked_token(value)
    picture = STORE.update(token, lambda p: prompt_picture.choose(p, int(evt.index), token))
    return view(picture, token), *details(value)


@user_errors
def everything(value, model_name: str, progress=gr.Progress()):  # noqa: B008
    """Every object the model is sure of, from a grid of single-point prompts."""
    token = checked_token(value)
    prepared = prompt_picture.require_image(STORE.get(token))
    progress(0.0, desc="preparing the image")
    result = segment_everything(
        prepared,
        model_name,
        token,
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
    return _replayed(image_path, points_json, box_json, model_name, multimask, _key(request))


def _replayed(image_path, points_json, box_json, model_name, multimask, key: str):
    prepared = load_input(image_path)
    prompts = parse_prompts(points_json, box_json, prepared.original_size)
    session = replay(prepared, prompts, model_name, key, bool(multimask))
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


@user_errors
def prompt_segment_of_picture(value, points_json, box_json, model_name, multimask):
    """The JSON prompts replayed on the picture's photo (the button below the picture)."""
    token = checked_token(value)
    picture = STORE.get(token)
    if picture.source is None:
        raise gr.Error("Upload a photo or pick an example first.")
    return _replayed(picture.source, points_json, box_json, model_name, multimask, token)


@user_errors
def send_as_label(value, targets: int):
    """The photo and its current mask, for the "train on this image" sections of other tabs:
    per target tab its photo, its opened section, its mask label."""
    picture = STORE.get(checked_token(value))
    if picture.source is None or picture.session.current is None:
        raise gr.Error("Upload an image and click on it first: there is no mask to send.")
    mask = save_png(to_uint8_mask(prompt_picture.original_mask(picture)), "prompt-mask")
    gr.Info("The mask is now the label in tabs 1 and 2: open one and press Fine-tune.")
    return [picture.source, gr.Accordion(open=True), mask] * targets


def build_tab(label_targets: list[list[gr.components.Component]] = ()) -> None:
    """The tab; ``label_targets`` are other tabs' ``[photo, section, mask label]`` to which a
    button sends this tab's photo and mask (the "train on this image" sections)."""
    with gr.Tab("Prompted masks (SAM-style)", id="prompted", elem_id="prompted-tab"):
        with gr.Row():
            with gr.Column(scale=3):
                picture = prompt_picture.picture_component(elem_id="prompted-picture")
                # The examples' photo, and the JSON API's; the page shows the picture.
                photo_file = image_input("Photo", visible=False)
                examples = gr.Examples(
                    flower_examples() + scene_examples(), inputs=[photo_file], label="Examples"
                )
            with gr.Column(scale=2):
                model = gr.Dropdown(model_choices(), value=DEFAULT_MODEL, label="Model")
                with gr.Group(elem_id="prompted-details"):
                    status = gr.Markdown(elem_id="prompted-status")
                    gallery = gr.Gallery(
                        label="Masks for a single click (estimated IoU); click one to choose it",
                        columns=3,
                        height=200,
                        allow_preview=False,
                    )
                    with gr.Row():
                        cutout = result_image("Cut-out (transparent PNG)", height=200)
                        mask_file = gr.File(label="Binary mask, original size (PNG)")
                    details_version = gr.Number(visible=False, elem_id="prompted-version")
                if label_targets:
                    send = gr.Button("Train tabs 1 and 2 on this mask (Train on this image)")
                gr.Markdown(EXPLANATION)
        with gr.Accordion("Segment everything", open=False):
            everything_button = gr.Button("Segment everything", variant="primary")
            everything_image = result_image("Automatic masks")
            everything_note = gr.Markdown()
        with gr.Accordion("Prompts as JSON: the /prompt_segment API", open=False):
            gr.Markdown(
                "Clicks on the picture fill the first box with the prompts in click order, in "
                "original-image pixels. The button sends them, with the photo, to "
                "`/prompt_segment` — what `gradio_client` calls, since it cannot click — "
                "which replays them as clicks: the same masks come back."
            )
            points_json = gr.Textbox(
                label="points [[x, y, label], ...] (1 = positive), or prompt objects",
                elem_id="prompted-points-json",
            )
            box_json = gr.Textbox(label="box [x0, y0, x1, y1] (replayed first), or empty")
            multimask = gr.Checkbox(value=True, label="three masks (multimask)")
            run_json = gr.Button("Segment from JSON")
            api_trigger = gr.Button(visible=False)
            api_picture = result_image("Best mask and prompts")
            api_files = gr.File(label="Masks (PNG, original size)", file_count="multiple")
            api_details = gr.JSON(label="Scores")

        private = {"api_visibility": "private"}
        shown = [gallery, cutout, mask_file, status, points_json, details_version]
        # Once the page's details are those of the mask on screen, they are no longer stale.
        fresh = (
            "(version) => { const p = document.querySelector('#prompted-picture .sd-picture');"
            " if (p && p.dataset.version === String(version)) document.getElementById("
            "'prompted-details').classList.remove('sd-stale'); }"
        )
        picture.input(details, [picture], shown, trigger_mode="always_last", **private).then(
            None, [details_version], None, js=fresh, **private
        )
        picture.select(
            prompt_picture.queued, [picture], [picture], **private, **queue_group("sam_click")
        )
        embed_group = queue_group("sam_embed")
        examples.load_input_event.then(
            load_example, [photo_file, picture], [picture], **private, **embed_group
        )
        model.change(change_model, [picture, model], [picture], **private, **embed_group)
        gallery.select(choose_mask, [picture], [picture, *shown], **private)
        everything_button.click(
            everything,
            [picture, model],
            [everything_image, everything_note],
            **private,
            **embed_group,
        )
        if label_targets:
            send.click(
                lambda value: send_as_label(value, len(label_targets)),
                [picture],
                [component for target in label_targets for component in target],
                **private,
            )
        api_results = [api_picture, api_files, api_details]
        run_json.click(
            prompt_segment_of_picture,
            [picture, points_json, box_json, model, multimask],
            api_results,
            **private,
            **queue_group("sam_click"),
        )
        # The API: the same with the photo as a file, for gradio_client (which cannot click).
        api_trigger.click(
            prompt_segment,
            [photo_file, points_json, box_json, model, multimask],
            api_results,
            api_name="prompt_segment",
            **queue_group("sam_click"),
        )
