"""The prompted tab's one clickable picture: drop a photo on it, click on it, see the mask.

A click leaves the page as a few numbers, through one of the component's server functions (a
plain HTTP request beside Gradio's queue), and comes back as a small PNG of the mask, which the
page draws on a canvas over the photo. Nothing else travels per click: the three masks with
their scores, the cut-out and the mask file are made once the clicks pause
(``prompted_tab.details``), and the download buttons render the mask when pressed.

Each page holds a secret token that the server issues (``start``); every user's image, prompts
and masks live in ``STORE`` under that token, so no call can reach another page's masks. The
same operations also run through Gradio's queue (``queued``), which is what the page falls back
to, and says so, when the server functions cannot be reached.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import io
import itertools
import logging
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import gradio as gr
import numpy as np
from gradio.utils import get_upload_folder, is_in_or_equal
from PIL import Image
from scipy import ndimage

from segdemo.imaging import PreparedImage
from segdemo.tasks import prompt_session
from segdemo.tasks.prompt_session import PromptSession
from segdemo.tasks.prompted import PromptError, embed
from segdemo.ui.common import USER_ERRORS, load_input, notes_markdown, to_uint8_mask

log = logging.getLogger("segdemo")

HERE = Path(__file__).parent
TEMPLATE = (HERE / "prompt_picture.html").read_text()
SCRIPT = (HERE / "prompt_picture.js").read_text()
STYLE = (HERE / "prompt_picture.css").read_text()

DEFAULT_MODEL = "click_net"
MAX_PAGES = 64  # pages whose image and prompts are kept; the least recently used go first
BUSY_SECONDS = 5.0  # a page's call waits this long for its previous one, then is refused
# Two CPU cores, and torch already spreads one model call over both: more calls at once only
# slow each one down, so clicks of different users take turns.
MODEL_SLOTS = threading.BoundedSemaphore(1)
TOKEN = re.compile(r"[0-9a-f]{32}")
# What the page draws: palette index 1 is the mask's fill, 2 its outline; 0 is transparent.
MASK_PALETTE = [0, 0, 0, 30, 144, 255, 255, 255, 255]
MASK_ALPHA = bytes([0, 120, 255])


class PictureError(PromptError):
    """A call the page cannot make now; the message says what to do."""


# One counter for all pages: a page whose picture was dropped and opened again still gets
# versions above those it has shown.
VERSIONS = itertools.count(1)


@dataclass(frozen=True)
class Picture:
    """One page's picture: the image, the prompt session on it, and the uploaded file.

    ``version`` grows with every change, so the page can tell which details are current.
    """

    prepared: PreparedImage | None = None
    session: PromptSession = PromptSession(DEFAULT_MODEL)
    source: str | None = None
    version: int = 0

    def changed(self, **changes) -> Picture:
        return replace(self, version=next(VERSIONS), **changes)


@contextmanager
def waited(lock, refusal: str) -> Iterator[None]:
    """Hold ``lock``, waiting at most ``BUSY_SECONDS``; then refuse with ``refusal``."""
    if not lock.acquire(timeout=BUSY_SECONDS):
        raise PictureError(refusal)
    try:
        yield
    finally:
        lock.release()


class PictureStore:
    """Token -> ``Picture``, bounded, with one lock per page so that one page's calls take
    turns (a flood of clicks waits, then is refused) while other pages go on."""

    def __init__(self, max_pages: int = MAX_PAGES):
        self.max_pages = max_pages
        self._pictures: OrderedDict[str, Picture] = OrderedDict()
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def get(self, token: str) -> Picture:
        """The page's picture (an empty one, not stored, for a page that has none yet)."""
        with self._lock:
            picture = self._pictures.get(token)
            if picture is None:
                return Picture()
            self._pictures.move_to_end(token)
            return picture

    def _put(self, token: str, picture: Picture) -> None:
        with self._lock:
            self._pictures[token] = picture
            self._pictures.move_to_end(token)
            while len(self._pictures) > self.max_pages:
                old, _ = self._pictures.popitem(last=False)
                self._locks.pop(old, None)

    def turn(self, token: str):
        """This page's turn (a context manager), or a refusal after ``BUSY_SECONDS``."""
        with self._lock:
            lock = self._locks.setdefault(token, threading.Lock())
        return waited(lock, "Still working on your previous clicks: wait a moment.")

    def update(self, token: str, change: Callable[[Picture], Picture]) -> Picture:
        """Apply ``change`` to the page's picture; stored only if it succeeds."""
        with self.turn(token):
            picture = change(self.get(token))
            self._put(token, picture)
            return picture

    def __len__(self) -> int:
        return len(self._pictures)


STORE = PictureStore()


SECRET = secrets.token_bytes(32)  # per server process: tokens of an earlier run are refused


def _signature(nonce: str) -> str:
    return hmac.new(SECRET, nonce.encode(), hashlib.sha256).hexdigest()[:16]


def new_token() -> str:
    """A page's token: a random part and the server's signature of it, so that only tokens
    the server issued open a picture."""
    nonce = secrets.token_hex(8)
    return nonce + _signature(nonce)


def checked_token(value) -> str:
    """The page's token from a call's payload or the component's value."""
    token = value.get("token") if isinstance(value, dict) else None
    if not (isinstance(token, str) and TOKEN.fullmatch(token)) or not hmac.compare_digest(
        token[16:], _signature(token[:16])
    ):
        raise PictureError("This page lost its session with the server: reload the page.")
    return token


# Operations: a Picture and the page's token in, a new Picture out.


def open_image(picture: Picture, path: str, token: str) -> Picture:
    """A new image, prepared for the model now so that the first click answers at once."""
    prepared = load_input(path)
    embed(prepared, picture.session.model, token)
    session = PromptSession(picture.session.model)
    return picture.changed(prepared=prepared, session=session, source=str(path))


def add_prompt(picture: Picture, prompt: dict, token: str, image: str | None = None) -> Picture:
    """A point ``{"kind": "point", "x", "y", "label"}`` or a box ``{"kind": "box", "box"}``
    in working pixels, as the page measures them, added to the session. ``image``: the digest
    of the photo the page clicked, when it says; a click on a photo that has since been
    replaced is refused."""
    prepared = require_image(picture)
    if image is not None and image != prepared.digest:
        raise PictureError("The photo changed before that click arrived: click again.")
    prompt = _to_original(prompt, prepared)
    with model_turn():
        session = prompt_session.click(picture.session, prepared, prompt, token)
    return picture.changed(session=session)


def undo(picture: Picture, token: str) -> Picture:
    return picture.changed(session=prompt_session.undo(picture.session))


def clear(picture: Picture, token: str) -> Picture:
    return picture.changed(session=prompt_session.clear(picture.session))


def choose(picture: Picture, index: int, token: str) -> Picture:
    return picture.changed(session=prompt_session.choose(picture.session, index))


def change_model(picture: Picture, model: str, token: str) -> Picture:
    """The image prepared for ``model`` and the prompts replayed with it."""
    if picture.prepared is None:
        return picture.changed(session=PromptSession(model))
    embed(picture.prepared, model, token)
    with model_turn():
        session = prompt_session.change_model(picture.session, picture.prepared, model, token)
    return picture.changed(session=session)


def model_turn():
    return waited(MODEL_SLOTS, "The server is busy with other users' clicks: click again.")


def require_image(picture: Picture) -> PreparedImage:
    if picture.prepared is None:
        raise PictureError("Drop a photo on the picture, upload one, or pick an example first.")
    return picture.prepared


def _number(value, limit: int) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value):
        raise PictureError("A click must have numeric coordinates.")
    return float(np.clip(value, 0, limit - 1))


def _to_original(prompt, prepared: PreparedImage) -> dict:
    """A prompt in working pixels, checked, as a prompt in original pixels."""
    (h, w), (oh, ow) = prepared.size, prepared.original_size
    kind = prompt.get("kind") if isinstance(prompt, dict) else None
    if kind == "point":
        xy = [[_number(prompt.get("x"), w), _number(prompt.get("y"), h)]]
        ((x, y),) = prepared.to_original(xy)
        positive = prompt.get("label") in (1, True)
        return prompt_session.point(min(x, ow - 1), min(y, oh - 1), positive)
    if kind == "box" and isinstance(prompt.get("box"), list) and len(prompt["box"]) == 4:
        x0, y0, x1, y1 = prompt["box"]
        corners = [[_number(x0, w), _number(y0, h)], [_number(x1, w), _number(y1, h)]]
        (a, b), (c, d) = prepared.to_original(corners)
        if abs(c - a) < 2 or abs(d - b) < 2:
            raise PictureError("That box is too small: drag across the object.")
        return prompt_session.box(a, b, min(c, ow - 1), min(d, oh - 1))
    raise PictureError("A prompt is a point or a box.")


# What goes back to the page.


def data_url(image: Image.Image, format: str = "PNG", **options) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    mime = "image/png" if format == "PNG" else "image/jpeg"
    return f"data:{mime};base64,{base64.b64encode(buffer.getvalue()).decode()}"


def mask_png(mask: np.ndarray) -> str:
    """``HxW bool`` as a palette PNG the page draws as is: fill inside, a white outline on
    the mask's own edge pixels (so every non-transparent pixel is a mask pixel)."""
    inner = ndimage.binary_erosion(mask, iterations=2, border_value=1)
    indices = np.where(mask, np.where(inner, 1, 2), 0).astype(np.uint8)
    image = Image.fromarray(indices, mode="P")
    image.putpalette(MASK_PALETTE)
    return data_url(image, transparency=MASK_ALPHA, optimize=False, compress_level=1)


def photo_url(prepared: PreparedImage) -> str:
    # Only for showing the photo: JPEG is a tenth of the PNG's size. Masks stay PNG.
    return data_url(Image.fromarray(prepared.pixels), "JPEG", quality=92)


def status_line(picture: Picture) -> str:
    session, step = picture.session, picture.session.current
    if picture.prepared is None:
        return "Drop a photo here, upload one, or pick an example."
    if step is None:
        return f"`{session.model}` is ready: click on the object you want."
    return (
        f"{len(session.prompts)} prompt(s) · {session.model} {1000 * step.seconds:.0f} ms · "
        f"estimated IoU {step.scores[step.chosen]:.2f} · {int(step.mask.sum()):,} pixels"
    )


def view(picture: Picture, token: str, with_photo: bool = False) -> dict:
    """What the page draws: the mask, the prompts in working pixels, the status line; and
    the photo itself when ``with_photo`` (a new image)."""
    prepared = picture.prepared
    shown = {"token": token, "version": picture.version, "status": status_line(picture)}
    if prepared is None:
        return {**shown, "image": None, "prompts": [], "mask": None}
    step = picture.session.current
    prompts = []
    for prompt in picture.session.prompts:
        if prompt["kind"] == "point":
            ((x, y),) = prepared.to_working([[prompt["x"], prompt["y"]]])
            prompts.append({"kind": "point", "x": x, "y": y, "label": prompt["label"]})
        else:
            box = prepared.to_working(np.reshape(prompt["box"], (2, 2))).ravel()
            prompts.append({"kind": "box", "box": [float(v) for v in box]})
    shown.update(
        image=prepared.digest,
        size=[prepared.size[1], prepared.size[0]],
        prompts=prompts,
        mask=None if step is None else mask_png(step.mask),
    )
    if with_photo:
        shown["photo"] = photo_url(prepared)
    return shown


def current_mask(picture: Picture) -> np.ndarray:
    """The mask on screen, ``HxW bool`` at the working size."""
    step = picture.session.current
    if step is None:
        raise PictureError("Click on the picture first: there is no mask yet.")
    return step.mask


def original_mask(picture: Picture) -> np.ndarray:
    """The current mask at the uploaded image's size, ``HxW bool``."""
    mask = current_mask(picture)
    return require_image(picture).mask_to_original(mask)


def cutout(picture: Picture) -> np.ndarray:
    """The working image with the current mask as its alpha channel, ``HxWx4 uint8``."""
    mask = current_mask(picture)
    return np.dstack([require_image(picture).pixels, to_uint8_mask(mask)])


# The server functions the page calls. Each takes one JSON payload and answers one JSON
# object; a failure a user can cause comes back as {"error": message}, never as a traceback.


def _message(err: Exception, where: str) -> str:
    """What the page shows for a failure: its own words for one a user can cause; anything
    else is a bug, logged, and named only by its type."""
    if isinstance(err, USER_ERRORS):
        return str(err)
    log.exception("unexpected error in %s", where)
    return f"Something went wrong ({type(err).__name__}): try again."


def _answers_errors(fn: Callable[[dict], dict]) -> Callable[[dict], dict]:
    @functools.wraps(fn)
    def wrapper(payload):
        try:
            return fn(payload if isinstance(payload, dict) else {})
        except Exception as err:
            return {"error": _message(err, fn.__name__)}

    return wrapper


@_answers_errors
def start(payload: dict) -> dict:
    """A new page: its token."""
    return {"token": new_token()}


def _uploaded(path) -> str:
    # Only files that Gradio's upload route wrote: a page cannot open the server's own files.
    if not isinstance(path, str) or not is_in_or_equal(path, get_upload_folder()):
        raise PictureError("Upload the photo through the page, then try again.")
    return path


def perform(token: str, payload: dict) -> tuple[Picture, bool]:
    """Apply the operation a payload names; returns the new picture and whether its photo
    is new."""
    operation = payload.get("op")
    if operation == "open":
        path = _uploaded(payload.get("path"))
        return STORE.update(token, lambda p: open_image(p, path, token)), True
    if operation == "prompt":
        prompt, image = payload.get("prompt"), payload.get("image")
        return STORE.update(token, lambda p: add_prompt(p, prompt, token, image)), False
    if operation in ("undo", "clear"):
        change = undo if operation == "undo" else clear
        return STORE.update(token, lambda p: change(p, token)), False
    raise PictureError(f"Unknown operation {operation!r}.")


@_answers_errors
def operate(payload: dict) -> dict:
    """``{"token", "op": "open" | "prompt" | "undo" | "clear", ...}`` -> the new view."""
    began = time.perf_counter()
    token = checked_token(payload)
    picture, new_photo = perform(token, payload)
    answer = view(picture, token, with_photo=new_photo)
    return {**answer, "server_ms": round(1000 * (time.perf_counter() - began), 1)}


@_answers_errors
def export(payload: dict) -> dict:
    """``{"token", "what": "mask" | "cutout"}`` -> a PNG of the current mask, at the
    original size (the mask) or the working size (the cut-out), as it is now."""
    token = checked_token(payload)
    with STORE.turn(token):
        picture = STORE.get(token)
        if payload.get("what") == "cutout":
            return {"name": "cutout.png", "data": data_url(Image.fromarray(cutout(picture)))}
        mask = to_uint8_mask(original_mask(picture))
        return {"name": "mask.png", "data": data_url(Image.fromarray(mask))}


@_answers_errors
def preview(payload: dict) -> dict:
    """``{"token", "x", "y"}`` -> the mask a first click there would give, before any click
    (the hover preview). Nothing is stored, and a preview never waits: when a model call is
    running it answers ``{"skipped": true}`` and the page asks again as the pointer moves."""
    token = checked_token(payload)
    picture = STORE.get(token)
    prepared = require_image(picture)
    if picture.session.prompts:
        return {"skipped": True}
    point = _to_original({**payload, "kind": "point", "label": 1}, prepared)
    if not MODEL_SLOTS.acquire(blocking=False):
        return {"skipped": True}
    try:
        session = prompt_session.click(PromptSession(picture.session.model), prepared, point, token)
    finally:
        MODEL_SLOTS.release()
    return {"image": prepared.digest, "mask": mask_png(session.current.mask)}


def queued(value, evt: gr.SelectData) -> dict:
    """The same operations through Gradio's queue: the page's fallback. The token is the
    component's value (a new one if the page could not get one). A failure comes back in
    the view's ``error``, so the page, waiting for this answer, always gets one."""
    payload = evt.value if isinstance(evt.value, dict) else {}
    token = token_or_new(value)
    answered = {"request": payload.get("request")}  # so the page knows its answer
    try:
        picture, new_photo = perform(token, payload)
    except Exception as err:
        error = _message(err, "a queued picture operation")
        return {**view(STORE.get(token), token), **answered, "error": error}
    return {**view(picture, token, with_photo=new_photo), **answered}


def token_or_new(value) -> str:
    """The component value's token, or a new one for a page that could not get one."""
    try:
        return checked_token(value)
    except PictureError:
        return new_token()


def picture_component(**kwargs) -> gr.HTML:
    """The picture: drop zone, photo, mask canvas, prompt marks and a small toolbar."""
    return gr.HTML(
        value={},
        html_template=TEMPLATE,
        css_template=STYLE,
        js_on_load=SCRIPT,
        server_functions=[start, operate, export, preview],
        apply_default_css=False,
        **kwargs,
    )


def notes(picture: Picture) -> str:
    return "" if picture.prepared is None else notes_markdown(picture.prepared)
