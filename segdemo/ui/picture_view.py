"""What the picture shows: the view the page draws (JSON with a small mask PNG), the status
line, and the pictures and files made from the mask. Everything here is read from a ``Page``;
nothing changes it. Coordinates are the working image's pixels, as the page draws them.
"""

from __future__ import annotations

import base64
import io

import cv2
import numpy as np
from PIL import Image, ImageDraw

from segdemo import viz
from segdemo.prompts import Click, to_json
from segdemo.tasks.prompt_session import PromptSession
from segdemo.ui.common import notes_markdown, to_uint8_mask
from segdemo.ui.picture_store import Page, PictureError

# What the page draws: palette index 1 is the mask's fill, 2 its outline; 0 is transparent.
MASK_PALETTE = [0, 0, 0, 30, 144, 255, 255, 255, 255]
MASK_ALPHA = bytes([0, 120, 255])
OUTLINE_STEP = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
POSITIVE, NEGATIVE, BOX = (40, 220, 90), (235, 50, 50), (255, 215, 0)


def data_url(image: Image.Image, format: str = "PNG", **options) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    mime = "image/png" if format == "PNG" else "image/jpeg"
    return f"data:{mime};base64,{base64.b64encode(buffer.getvalue()).decode()}"


def mask_png(mask: np.ndarray) -> str:
    """``HxW bool`` as a palette PNG the page draws as is: fill inside, a white outline on
    the mask's own edge pixels (so every non-transparent pixel is a mask pixel)."""
    # The outline: mask pixels within two 4-neighbour steps of the background; the photo's
    # border is no edge of the mask. (OpenCV's erosion: a fortieth of SciPy's time here.)
    inner = cv2.erode(
        mask.astype(np.uint8),
        OUTLINE_STEP,
        iterations=2,
        borderType=cv2.BORDER_CONSTANT,
        borderValue=1,
    ).astype(bool)
    indices = np.where(mask, np.where(inner, 1, 2), 0).astype(np.uint8)
    image = Image.fromarray(indices, mode="P")
    image.putpalette(MASK_PALETTE)
    return data_url(image, transparency=MASK_ALPHA, optimize=False, compress_level=1)


def photo_url(pixels: np.ndarray) -> str:
    # Only for showing the photo: JPEG is a tenth of the PNG's size. Masks stay PNG.
    return data_url(Image.fromarray(pixels), "JPEG", quality=92)


def score_name(session: PromptSession) -> str:
    """What the current step's scores are: several refined masks are ranked by how well their
    outlines follow the photo's edges (``refine.edge_contrast``); otherwise each is the
    model's own estimate of its IoU."""
    several = session.current is not None and len(session.current.masks) > 1
    return "edge contrast" if session.refined and several else "estimated IoU"


def status_line(page: Page) -> str:
    session = page.session
    if session is None:
        return "Drop a photo here, upload one, or pick an example."
    step = session.current
    kind = "refined on the photo" if session.refined else "network alone"
    if step is None:
        return f"`{session.model}` ({kind}) is ready: click on the object you want."
    return (
        f"{len(session.prompts)} prompt(s) · {session.model}, {kind} "
        f"{1000 * step.seconds:.0f} ms · {score_name(session)} {step.scores[step.chosen]:.2f} · "
        f"{int(step.mask.sum()):,} pixels"
    )


def view(page: Page, token: str, with_photo: bool = False) -> dict:
    """What the page draws: the mask, the prompts, the status line, whether masks are
    refined on the photo; and the photo itself when ``with_photo`` (a new image)."""
    shown = {
        "token": token,
        "version": page.version,
        "status": status_line(page),
        "refined": page.refined,
    }
    session = page.session
    if session is None:
        return {**shown, "image": None, "prompts": [], "mask": None}
    image, step = session.image, session.current
    shown.update(
        image=image.digest,
        size=[image.size[1], image.size[0]],
        prompts=[to_json(p) for p in session.prompts],
        mask=None if step is None else mask_png(step.mask),
    )
    if with_photo:
        shown["photo"] = photo_url(image.pixels)
    return shown


def current_mask(page: Page) -> np.ndarray:
    """The mask on screen, ``HxW bool`` at the working size."""
    step = None if page.session is None else page.session.current
    if step is None:
        raise PictureError("Click on the picture first: there is no mask yet.")
    return step.mask


def cutout(page: Page) -> np.ndarray:
    """The working image with the current mask as its alpha channel, ``HxWx4 uint8``."""
    mask = current_mask(page)
    return np.dstack([page.session.image.pixels, to_uint8_mask(mask)])


def original_mask_png(page: Page) -> np.ndarray:
    """The current mask at the uploaded image's size, ``HxW uint8`` (0 or 255)."""
    current_mask(page)  # says "no mask yet" before anything else
    return to_uint8_mask(page.session.original_mask())


def drawn(session: PromptSession) -> np.ndarray:
    """The working image with the chosen mask, its outline, the points and the box."""
    image = session.image
    picture = image.pixels
    if session.current is not None:
        mask = session.current.mask
        picture = viz.outline(viz.overlay(picture, mask), mask)
    canvas = Image.fromarray(picture)
    draw = ImageDraw.Draw(canvas)
    r = max(4, round(max(image.size) / 110))
    for prompt in session.prompts:
        if isinstance(prompt, Click):
            x, y = prompt.x, prompt.y
            colour = POSITIVE if prompt.positive else NEGATIVE
            draw.ellipse((x - r, y - r, x + r, y + r), fill=colour, outline="white", width=2)
        else:
            corners = (prompt.x0, prompt.y0, prompt.x1, prompt.y1)
            draw.rectangle(corners, outline=BOX, width=max(2, r // 2))
    return np.asarray(canvas)


def notes(page: Page) -> str:
    return "" if page.session is None else notes_markdown(page.session.image)
