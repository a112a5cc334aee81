"""Tab: prompted masks — one picture to drop a photo on and click; the same through
/prompt_segment.

The picture (``prompt_picture.PromptPicture``) answers clicks itself, beside the queue. The
handlers here do what may wait for a pause: the masks with their scores, the cut-out and the
mask file, a change of model, an example, "segment everything" and the JSON API. Every change
to the page's picture goes through ``picture_ops.perform``, under the token the picture's value
carries.
"""

from __future__ import annotations

import gradio as gr
import numpy as np
from PIL import Image

from segdemo import viz
from segdemo.examples import flower_examples, photo_examples, scene_examples
from segdemo.imaging import PreparedImage, save_png
from segdemo.prompted_eval import curve_path
from segdemo.prompts import parse_prompts
from segdemo.registry import get_spec, is_available, list_models
from segdemo.tasks.prompt_session import PromptSession, working_prompts
from segdemo.tasks.prompted import segment_everything
from segdemo.tasks.sam_prompter import EVERYTHING_MIN_IOU
from segdemo.ui.common import (
    image_input,
    load_input,
    queue_group,
    result_image,
    to_uint8_mask,
    user_errors,
)
from segdemo.ui.guard import client_of
from segdemo.ui.picture_ops import perform
from segdemo.ui.picture_store import DEFAULT_MODEL, STORE, checked_token, token_or_new
from segdemo.ui.picture_view import (
    cutout,
    drawn,
    notes,
    original_mask_png,
    score_name,
    status_line,
    view,
)
from segdemo.ui.prompt_picture import PromptPicture, queued

# The mean IoU after each click of every pipeline in the table below, as the last run of
# ``python -m segdemo.evaluate click_net sam_tiny --data ../shared/data/coco_mval`` drew it.
MVAL_CURVE = curve_path("coco_mval")

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
  working size: small objects are looked at closely, large ones whole. A first click, with
  nothing to zoom on yet, gets **two proposals**: the whole picture's view and a close-up
  around the click (for a small object).

**Corrections.** A negative click removes what spilled over, another positive click adds what
was missed; the previous mask goes back into the model each time. A box becomes the region
the model looks at (with a click at its centre), and nothing outside it is in the mask. The
spot you click always keeps the label you gave it: a small disc around it, which stops at the
edge of the mask shown, so a correction beside a thin outline cannot spill across it.

**Refine on the photo.** Both small models were trained from scratch on generated pictures
only: they know roughly what "the thing under the click" looks like, not the colours of *this*
object or where *its* edges run. So the network only **proposes**; then one **graph cut** on
this photo decides: the network's belief as a soft prior, colour models of this object and its
background fitted to this photo, and a boundary that prefers the photo's edges, with every
clicked spot a hard label, a box a hard limit, and the object one piece around your positive
clicks (star-convex). Where there are several masks, the one whose outline follows the
photo's edges best is shown (**edge contrast**). For `click_net`'s first click that is the
better of its two masks on four objects in five; always the better one would give 0.59 IoU
after one click instead of 0.51, so when the first mask has the wrong size, look at the other
below the picture. Switch the refinement off to see the network alone. A first click takes
longest to refine (each of its masks gets a cut of its own), so the network's mask shows at
once, faded, until the refined one replaces it: the two stages, one after the other.

**What that buys, measured** on 160 real photos never trained on (COCO MVal): the IoU after
one click, and the clicks needed for 85% and 90% IoU (of 20):

| pipeline | 1 click: IoU | 85% IoU | 90% IoU |
|---|---|---|---|
| `click_net` + refinement (default) | 0.51 | 6.6 | 8.9 |
| `click_net` alone | 0.31 | 14.5 | 17.4 |
| `sam_tiny` + refinement | 0.45 | 6.9 | 9.4 |
| the same graph cut from the clicks alone | 0.44 | 7.1 | 9.5 |
| random walker (classical) | 0.34 | 10.1 | 13.7 |

The photo is what the networks lacked; what learning adds on top is small (about six tenths
of a click at 90% IoU, against the graph cut from the clicks alone). The official SAM
checkpoints, which learned from 11 million photos, follow object boundaries far better.
Below: each pipeline's mean IoU after every click on the same photos.
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


def _thumbnails(session: PromptSession) -> list[tuple[np.ndarray, str]]:
    step, name = session.current, score_name(session)
    small = Image.fromarray(session.image.pixels)
    small.thumbnail((220, 220))
    pixels, items = np.asarray(small), []
    for k, (mask, score) in enumerate(zip(step.masks, step.scores, strict=True)):
        shrunk = np.asarray(Image.fromarray(mask).resize(small.size, Image.NEAREST))
        chosen = " · chosen" if k == step.chosen else ""
        items.append(
            (viz.overlay(pixels, shrunk), f"mask {k + 1}: {name} {score:.2f}{chosen}")
        )
    return items


@user_errors
def details(value):
    """(masks gallery, cut-out, mask file, status, prompts JSON, version) of the page's
    current mask: what the page asks for once its clicks pause."""
    page = STORE.get(checked_token(value))
    session, status = page.session, status_line(page)
    step = None if session is None else session.current
    if step is None:
        return [], None, None, f"{status}\n\n{notes(page)}", "", page.version
    return (
        _thumbnails(session),
        cutout(page),
        save_png(original_mask_png(page), "prompt-mask"),
        f"**{status}** · mask {step.chosen + 1} of {len(step.masks)}\n\n{notes(page)}",
        session.original_prompts_json(),
        page.version,
    )


def _performed(value, payload: dict, request: gr.Request | None) -> dict:
    """``perform`` on the page of the picture's value, answered with the new view."""
    token = token_or_new(value)  # a page on the queue fallback may have no token yet
    page, new_photo = perform(token, payload, client_of(request))
    return view(page, token, with_photo=new_photo)


@user_errors
def load_example(path, value, request: gr.Request = None):
    """An example picked below the picture: opened as an upload would be."""
    return _performed(value, {"op": "open", "path": path}, request)


@user_errors
def change_model(value, model_name: str, request: gr.Request = None):
    """Prepare the photo for the chosen model and replay the current prompts with it."""
    return _performed(value, {"op": "model", "model": model_name}, request)


@user_errors
def set_refinement(value, refined: bool, request: gr.Request = None):
    """Show the masks refined on the photo, or the network's own, for the same prompts."""
    return _performed(value, {"op": "refine", "refined": bool(refined)}, request)


@user_errors
def choose_mask(value, evt: gr.SelectData, request: gr.Request = None):
    """Pick one of the masks of a single click."""
    checked_token(value)  # choosing needs a page that has clicked
    chosen = _performed(value, {"op": "choose", "index": int(evt.index)}, request)
    return chosen, *details(value)


@user_errors
def everything(value, progress=gr.Progress()):  # noqa: B008
    """Every object the model is sure of, from a grid of single-point prompts."""
    page = STORE.get(checked_token(value))
    session = page.require_session()
    progress(0.0, desc="prompting a grid of points")
    result = segment_everything(
        session.prompter,
        session.state,
        session.image.pixels,
        progress=lambda f: progress(f, desc="prompting a grid of points"),
        refine_on_photo=session.refined,  # the page's "Refine on the photo"
    )
    rng = np.random.default_rng(0)
    picture = session.image.pixels.copy()
    for mask in result.masks:  # largest first: small masks stay visible on top
        colour = tuple(int(c) for c in rng.integers(40, 256, 3))
        picture = viz.outline(viz.overlay(picture, mask, colour, alpha=0.6), mask)
    note = (
        f"**{len(result.masks)} masks** from {result.points} point prompts in "
        f"{result.seconds:.1f} s (`{session.model}`; estimated IoU ≥ {EVERYTHING_MIN_IOU}, "
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
    refine: bool = True,
):
    """The API: image + prompts as JSON -> (overlay, mask PNGs at the original size, scores).

    The prompts are replayed in order as clicks would be (the box first when it is given
    apart), so the masks are the ones clicking them in the tab gives; ``refine``: refined on
    the photo (the picture's default) or the network's own.
    """
    image = load_input(image_path)
    return _replayed(image, points_json, box_json, model_name, multimask, refine)


def _replayed(image: PreparedImage, points_json, box_json, model_name, multimask, refine):
    prompts = parse_prompts(points_json, box_json, image.original_size)
    session = PromptSession.open(image, model_name, bool(refine)).replay(
        working_prompts(prompts, image), bool(multimask)
    )
    step = session.current
    files, pixels = [], []
    for k, mask in enumerate(step.masks):  # one original-size mask at a time
        original = image.mask_to_original(mask)
        pixels.append(int(original.sum()))
        files.append(save_png(to_uint8_mask(original), f"prompt-mask-{k}"))
    details = {
        "model": model_name,
        "refined": session.refined,
        "scores": [round(s, 4) for s in step.scores],
        "best": int(np.argmax(step.scores)),
        "original_size": list(image.original_size),
        "mask_pixels": pixels,
        "predict_ms": round(1000 * sum(s.seconds for s in session.steps), 1),
    }
    return drawn(session), files, details


@user_errors
def prompt_segment_of_picture(value, points_json, box_json, model_name, multimask, refine):
    """The JSON prompts replayed on the picture's photo (the button below the picture)."""
    session = STORE.get(checked_token(value)).require_session()
    return _replayed(session.image, points_json, box_json, model_name, multimask, refine)


@user_errors
def send_as_label(value, targets: int):
    """The photo and its current mask, for the "train on this image" sections of other tabs:
    per target tab its photo, its opened section, its mask label."""
    page = STORE.get(checked_token(value))
    if page.session is None or page.session.current is None:
        raise gr.Error("Upload an image and click on it first: there is no mask to send.")
    mask = save_png(original_mask_png(page), "prompt-mask")
    gr.Info("The mask is now the label in tabs 1 and 2: open one and press Fine-tune.")
    return [page.source, gr.Accordion(open=True), mask] * targets


def build_tab(label_targets: list[list[gr.components.Component]] = ()) -> None:
    """The tab; ``label_targets`` are other tabs' ``[photo, section, mask label]`` to which a
    button sends this tab's photo and mask (the "train on this image" sections)."""
    with gr.Tab("Prompted masks (SAM-style)", id="prompted", elem_id="prompted-tab"):
        with gr.Row():
            with gr.Column(scale=3):
                picture = PromptPicture(elem_id="prompted-picture")
                # The examples' photo, and the JSON API's; the page shows the picture.
                photo_file = image_input("Photo", visible=False)
                examples = gr.Examples(
                    flower_examples() + scene_examples(),
                    inputs=[photo_file],
                    label="Generated examples",
                )
                photos = gr.Examples(
                    photo_examples(),
                    inputs=[photo_file],
                    label="Real photos (scikit-image's sample images; no masks)",
                )
            with gr.Column(scale=2):
                model = gr.Dropdown(model_choices(), value=DEFAULT_MODEL, label="Model")
                refine = gr.Checkbox(
                    value=True,
                    label="Refine on the photo",
                    info="On: the network proposes, this photo's colours and edges decide. "
                    "Off: the network's own mask.",
                    elem_id="prompted-refine",
                )
                with gr.Group(elem_id="prompted-details"):
                    status = gr.Markdown(elem_id="prompted-status")
                    gallery = gr.Gallery(
                        label="Masks for a single click and their scores; click one to choose it",
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
                if MVAL_CURVE.is_file():
                    gr.Image(
                        str(MVAL_CURVE),
                        label="Mean IoU after each click, 160 COCO MVal photos",
                        format="png",
                        interactive=False,
                        elem_id="prompted-mval-curve",
                    )
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
            multimask = gr.Checkbox(value=True, label="several masks for a lone click (multimask)")
            run_json = gr.Button("Segment from JSON")
            api_trigger = gr.Button(visible=False)
            api_picture = result_image("Best mask and prompts")
            api_files = gr.File(label="Masks (PNG, original size)", file_count="multiple")
            api_details = gr.JSON(label="Scores")

        private = {"api_visibility": "private"}
        shown = [gallery, cutout, mask_file, status, points_json, details_version]
        # The details are stale from the moment the picture's mask changes until the details
        # answered for the version on screen (the picture's value says which) arrive.
        stale = "() => document.getElementById('prompted-details').classList.add('sd-stale')"
        fresh = (
            "(version, value) => { if (value && value.shown === version) document"
            ".getElementById('prompted-details').classList.remove('sd-stale'); }"
        )
        picture.change(None, None, None, js=stale, **private)
        picture.input(details, [picture], shown, trigger_mode="always_last", **private).then(
            None, [details_version, picture], None, js=fresh, **private
        )
        picture.select(
            queued, [picture], [picture], **private, **queue_group("sam_click")
        )
        embed_group = queue_group("sam_embed")
        for gallery_of_examples in (examples, photos):
            gallery_of_examples.load_input_event.then(
                load_example, [photo_file, picture], [picture], **private, **embed_group
            )
        model.change(change_model, [picture, model], [picture], **private, **embed_group)
        refine.change(set_refinement, [picture, refine], [picture], **private, **embed_group)
        gallery.select(choose_mask, [picture], [picture, *shown], **private)
        everything_button.click(
            everything,
            [picture],
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
            [picture, points_json, box_json, model, multimask, refine],
            api_results,
            **private,
            **queue_group("sam_click"),
        )
        # The API: the same with the photo as a file, for gradio_client (which cannot click).
        api_trigger.click(
            prompt_segment,
            [photo_file, points_json, box_json, model, multimask, refine],
            api_results,
            api_name="prompt_segment",
            **queue_group("sam_click"),
        )
