"""The prompted tab's one clickable picture: drop a photo on it, click on it, see the mask.

A click leaves the page as a few numbers, through one of the component's server functions (a
plain HTTP request beside Gradio's queue), and comes back as a small PNG of the mask, which the
page draws on a canvas over the photo; a first click's network mask also comes, as a draft,
while its refined mask is computed (``draft``, ``picture_drafts``). Nothing else travels per
click: the masks with their scores, the cut-out and the mask file are made once the clicks
pause (the component's ``input`` event), and the download buttons render the mask when pressed.

The same operations also run through Gradio's queue (``queued``, the component's ``select``
event), which is what the page falls back to, and says so, when the server functions cannot be
reached. Each page's state lives in ``picture_store.STORE`` under its token.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable
from pathlib import Path

import gradio as gr
from PIL import Image

from segdemo.budget import RENDERS
from segdemo.prompts import Click
from segdemo.tasks.prompted import ServerBusy
from segdemo.ui.common import USER_ERRORS, log_unexpected
from segdemo.ui.guard import client_of
from segdemo.ui.picture_drafts import DRAFTS
from segdemo.ui.picture_ops import draft_number, perform
from segdemo.ui.picture_store import (
    STORE,
    PictureError,
    checked_token,
    new_token,
    token_or_new,
)
from segdemo.ui.picture_view import cutout, data_url, mask_png, original_mask_png, view

HERE = Path(__file__).parent
TEMPLATE = (HERE / "prompt_picture.html").read_text()
SCRIPT = (HERE / "prompt_picture.js").read_text()
STYLE = (HERE / "prompt_picture.css").read_text()


# The server functions the page calls. Each takes one JSON payload and answers one JSON
# object; a failure a user can cause comes back as {"error": message}, never as a traceback.


def _message(err: Exception, where: str) -> str:
    """What the page shows for a failure: its own words for one a user can cause; anything
    else is a bug, logged, and named only by its type."""
    if isinstance(err, USER_ERRORS):
        return str(err)
    log_unexpected(where, err)
    return f"Something went wrong ({type(err).__name__}): try again."


def _answers_errors(fn: Callable[..., dict]) -> Callable[..., dict]:
    if inspect.iscoroutinefunction(fn):  # one that waits on the event loop

        @functools.wraps(fn)
        async def waiting(payload, request: gr.Request | None = None):
            try:
                return await fn(payload if isinstance(payload, dict) else {}, request)
            except Exception as err:
                return {"error": _message(err, fn.__name__)}

        return waiting

    @functools.wraps(fn)
    def wrapper(payload, request: gr.Request | None = None):
        try:
            return fn(payload if isinstance(payload, dict) else {}, request)
        except Exception as err:
            return {"error": _message(err, fn.__name__)}

    return wrapper


@_answers_errors
def start(payload: dict, request: gr.Request | None = None) -> dict:
    """A new page: its token. Nothing is stored until the page opens a photo."""
    return {"token": new_token()}


@_answers_errors
def operate(payload: dict, request: gr.Request | None = None) -> dict:
    """``{"token", "op", ...}`` (see ``picture_ops.perform``) -> the new view, with the
    server's time for the call in ``server_ms``."""
    began = time.perf_counter()
    token = checked_token(payload)
    page, new_photo = perform(token, payload, client_of(request))
    answer = view(page, token, with_photo=new_photo)
    return {**answer, "server_ms": round(1000 * (time.perf_counter() - began), 1)}


@_answers_errors
def export(payload: dict, request: gr.Request | None = None) -> dict:
    """``{"token", "what": "mask" | "cutout"}`` -> a PNG of the current mask, at the
    original size (the mask) or the working size (the cut-out), as it is now. Rendered
    outside the model turn; a mask at a big photo's size reserves its bytes first."""
    token = checked_token(payload)
    with STORE.turn(token):
        page = STORE.get(token)
    if payload.get("what") == "cutout":
        return {"name": "cutout.png", "data": data_url(Image.fromarray(cutout(page)))}
    mask = original_mask_png(page)
    data = RENDERS.run(
        2 * mask.nbytes, "a mask at this photo's full size", lambda: data_url(Image.fromarray(mask))
    )
    return {"name": "mask.png", "data": data}


@_answers_errors
def preview(payload: dict, request: gr.Request | None = None) -> dict:
    """``{"token", "x", "y"}`` -> the mask a first click there would give, before any click
    (the hover preview). Nothing is stored, and a preview never waits: when a model call is
    running it answers ``{"skipped": true}`` and the page asks again as the pointer moves."""
    token = checked_token(payload)
    session = STORE.get(token).require_session()
    if session.prompts:
        return {"skipped": True}
    (h, w), x, y = session.image.size, payload.get("x"), payload.get("y")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (x, y)):
        raise PictureError("A click must have numeric coordinates.")
    # The pointer may sit on the picture's last pixel edge: kept on the image.
    click = Click(min(max(float(x), 0.0), w - 1.0), min(max(float(y), 0.0), h - 1.0), True)
    try:
        clicked = session.click(click, wait=0)  # the click itself, in a session thrown away
    except ServerBusy:
        return {"skipped": True}
    return {"image": session.image.digest, "mask": mask_png(clicked.current.mask)}


@_answers_errors
async def draft(payload: dict, request: gr.Request | None = None) -> dict:
    """``{"token", "draft"}`` -> ``{"mask"}``: the network's own mask for the page's first
    click numbered ``draft`` (the number sent with that ``prompt``), as soon as the network
    has answered it; ``{"skipped": true}`` once the click is answered without one. The page
    draws it until the refined mask comes (``picture_drafts``). It waits on the event loop,
    holding no thread, and at most ``DRAFT_WAIT`` seconds."""
    token, number = checked_token(payload), draft_number(payload.get("draft"))
    if number is None:
        raise PictureError("A draft names its click by a number.")
    STORE.get(token).require_session()
    mask = await DRAFTS.wait(token, number)
    return {"skipped": True} if mask is None else {"mask": mask}


def queued(value, evt: gr.SelectData, request: gr.Request = None) -> dict:
    """The same operations through Gradio's queue: the page's fallback. The token is the
    component's value (a new one if the page could not get one). A failure comes back in
    the view's ``error``, so the page, waiting for this answer, always gets one."""
    payload = evt.value if isinstance(evt.value, dict) else {}
    answered = {"request": payload.get("request")}  # so the page knows its answer
    try:
        token = token_or_new(value)
    except PictureError as err:
        return {**answered, "error": str(err)}
    try:
        page, new_photo = perform(token, payload, client_of(request))
    except Exception as err:
        error = _message(err, "a queued picture operation")
        return {**view(STORE.get(token), token), **answered, "error": error}
    return {**view(page, token, with_photo=new_photo), **answered}


class PromptPicture(gr.HTML):
    """The picture: drop zone, photo, mask canvas, prompt marks and a small toolbar.

    Its value is ``{"token": ...}`` (and, on the queue fallback, the last view). Events:
    ``input`` when the clicks pause (the tab then renders the details), ``select`` for an
    operation sent through the queue.
    """

    def __init__(self, **kwargs):
        super().__init__(
            value={},
            html_template=TEMPLATE,
            css_template=STYLE,
            js_on_load=SCRIPT,
            server_functions=[start, operate, export, preview, draft],
            apply_default_css=False,
            **kwargs,
        )
