"""What every tab shares: the image input, the error policy and small output helpers."""

from __future__ import annotations

import base64
import functools
import io
import logging
import traceback
from collections.abc import Callable
from dataclasses import dataclass

import gradio as gr
import numpy as np
from PIL import Image, UnidentifiedImageError

from segdemo.budget import ServerBusyWithImages
from segdemo.imaging import (
    FORMAT_NAMES,
    FORMATS,
    MAX_INPUT_PIXELS,
    ImageInputError,
    PreparedImage,
    check_size,
    prepare_image,
    short,
)
from segdemo.prompts import PromptError
from segdemo.registry import ModelUnavailableError, UnknownModelError
from segdemo.tasks.finetune import LabelError
from segdemo.torch_threads import in_passing_thread
from segdemo.weights import WeightsError

log = logging.getLogger("segdemo")

# Errors whose message is written for the user; anything else is a bug and is logged.
USER_ERRORS = (
    ImageInputError,
    ServerBusyWithImages,
    LabelError,
    ModelUnavailableError,
    PromptError,
    UnknownModelError,
    WeightsError,
)


# Concurrency groups: events that run the same kind of model share one queue slot count.
# Two CPU cores, and torch already spreads one call over both: more heavy calls at once only
# slow each of them down, so heavy groups run one or two at a time. A queued click in the
# prompted tab (a SAM decoder on the page's embedding, or click_net on its zoom-in crop: tens
# of milliseconds) has its own group, so it never queues behind a multi-second embedding or
# "segment everything"; inside, every prompted model call takes the one model turn
# (``tasks.prompted.model_turn``).
CONCURRENCY_LIMITS = {
    "dense": 2,  # patch classifier, upsampling nets, UNets: tens of milliseconds each
    "maskrcnn": 1,  # up to seconds per image with the official ResNet-50 checkpoint
    "sam_embed": 1,  # image encoders: up to many seconds with the official ViTs
    "sam_click": 4,  # queued clicks and /prompt_segment: the model turn paces them
    "finetune": 1,  # "train on this image": up to 20 s of both cores per request
}


def queue_group(name: str) -> dict:
    """Keyword arguments that put an event listener into a concurrency group."""
    return {"concurrency_id": name, "concurrency_limit": CONCURRENCY_LIMITS[name]}


def image_input(label: str = "Image", **kwargs) -> gr.Image:
    """An upload box whose decoding failures become messages a user can act on.

    type="filepath": the app decodes the file itself (``imaging.prepare_image``), so EXIF,
    bit depth and size limits are handled in one place for the browser and the API alike.
    """
    # image_mode=None: Gradio then hands the file over as it is. With a mode set, it decodes
    # and converts the whole image itself, before any size check, and writes a copy.
    options = {
        "type": "filepath",
        "image_mode": None,
        "sources": ["upload", "clipboard"],
        "height": 360,
        **kwargs,
    }
    component = gr.Image(label=label, **options)
    # Gradio opens the upload with PIL before any handler runs, and a file that is not an image
    # would fail there with a generic error. Wrapping this one instance's method (rather than
    # subclassing gr.Image, which makes gradio write a .pyi stub beside this file) fixes that.
    component.preprocess = _readable_errors(component.preprocess)
    return component


@dataclass(frozen=True)
class PhotoInput:
    """A tab's photo, the button that runs the tab on it, and the examples that fill it."""

    image: gr.Image
    run: gr.Button
    examples: gr.Examples

    @classmethod
    def build(cls, button: str, examples: list) -> PhotoInput:
        image = image_input()
        run = gr.Button(button, variant="primary")
        return cls(image, run, gr.Examples(examples, inputs=[image], label="Examples"))

    def on_every_photo(self, fn: Callable, outputs: list, api_name: str) -> None:
        """Run ``fn`` on the photo when the button is pressed (the API's ``api_name``) and
        again on every upload and chosen example, which the API does not need to show."""
        dense = queue_group("dense")
        self.run.click(fn, [self.image], outputs, api_name=api_name, **dense)
        for event in (self.image.upload, self.examples.load_input_event.then):
            event(fn, [self.image], outputs, api_visibility="private", **dense)


NOT_AN_IMAGE = f"This file is not an image that can be read: upload a {FORMAT_NAMES}."
TOO_LARGE = (
    f"The image is too large (over {MAX_INPUT_PIXELS // 1_000_000} megapixels): resize it first."
)


def _user_error(message: str) -> gr.Error:
    """The message for the user; no traceback in the server's log for what a user did."""
    return gr.Error(message, print_exception=False)


def _readable_errors(preprocess: Callable) -> Callable:
    @functools.wraps(preprocess)
    def wrapper(payload):
        url = getattr(payload, "url", None)
        if isinstance(url, str) and url.startswith("data:"):
            _check_data_url(url)  # Gradio decodes and re-saves these whole
        try:
            return preprocess(payload)
        except Image.DecompressionBombError as err:
            raise _user_error(TOO_LARGE) from err
        except (UnidentifiedImageError, OSError, ValueError) as err:
            raise _user_error(NOT_AN_IMAGE) from err

    return wrapper


def _check_data_url(url: str) -> None:
    """Refuse an image sent inline that is not one of the app's formats or is too large,
    from its header, before anything decodes it."""
    try:
        data = base64.b64decode(url.split(",", 1)[1], validate=False)
        with Image.open(io.BytesIO(data), formats=FORMATS) as image:
            check_size(*image.size)
    except ImageInputError as err:
        raise _user_error(str(err)) from err
    except Image.DecompressionBombError as err:
        raise _user_error(TOO_LARGE) from err
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise _user_error(NOT_AN_IMAGE) from err


def result_image(label: str, **kwargs) -> gr.Image:
    """An output image sent as PNG: lossless, so masks and label maps stay exact."""
    return gr.Image(label=label, format="png", interactive=False, **kwargs)


def user_errors(fn: Callable) -> Callable:
    """Turn failures a user can cause into ``gr.Error`` messages; log and hide the rest.

    Either way the request ends cleanly and the server goes on serving everyone else. The
    handler runs on a thread that ends with it (``torch_threads.in_passing_thread``), so the
    torch threads it wakes do not slow every later click down.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return in_passing_thread(lambda: fn(*args, **kwargs))
        except gr.Error:
            raise
        except USER_ERRORS as err:
            raise _user_error(str(err)) from err
        except Exception as err:
            log_unexpected(fn.__name__, err)  # logged here, cut short; not again by Gradio
            raise gr.Error(
                f"Something went wrong while processing this request ({type(err).__name__}). "
                "Try another image; if it keeps happening, please report it.",
                print_exception=False,
            ) from err

    return wrapper


LOGGED_LINE = 300  # characters of any one logged line: a visitor's input may be megabytes


def log_unexpected(where: str, err: BaseException) -> None:
    """Log a failure that is a bug, with its traceback, each line cut to ``LOGGED_LINE``
    characters (the exception's message may carry what a visitor sent, whole)."""
    lines = "".join(traceback.format_exception(err)).splitlines()
    log.error("unexpected error in %s\n%s", where, "\n".join(short(x, LOGGED_LINE) for x in lines))


def load_input(path) -> PreparedImage:
    """The uploaded file as a working-size RGB image (raises ImageInputError)."""
    return prepare_image(path)


def notes_markdown(prepared: PreparedImage) -> str:
    return "\n".join(f"> ℹ️ {note}" for note in prepared.notes)


def percent(value: float) -> str:
    return f"{100 * value:.1f}%"


def to_uint8_mask(mask: np.ndarray) -> np.ndarray:
    """A boolean mask as a PNG-ready ``uint8`` image: 0 background, 255 foreground."""
    # uint8 from the start: np.where(mask, 255, 0) would first make an int64 copy, 8 bytes a
    # pixel, of a mask that may have the original photo's 50 megapixels.
    return np.multiply(mask, 255, dtype=np.uint8)
