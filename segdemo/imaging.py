"""Every input image passes through here before a model sees it.

``prepare_image`` turns whatever a user uploads into an RGB ``uint8`` array the models can
take: it applies EXIF orientation, flattens transparency, maps 16-bit, palette, grayscale and
CMYK images to RGB, refuses what cannot be read with a sentence a user can act on, and
downscales large photos to a working size. The returned ``PreparedImage`` carries the
coordinate mapping that goes with that resize, so clicks and masks travel between the
original image's pixels and the working image's pixels.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, UnidentifiedImageError

from segdemo.budget import RENDERS, ServerBusyWithImages

MAX_SIDE = 1024  # working resolution: every model here is fast and accurate at this size
MIN_SIDE = 32  # the patch classifier's window; smaller images hold nothing to segment
# A full decode of this many pixels costs 50-250 MB (by mode), and a mask at this size a few
# bytes per pixel: what one upload may cost a server that many people share. Larger images
# are refused from their header, before any pixel is decoded.
MAX_INPUT_PIXELS = 50_000_000
# Pillow's own bomb check: it refuses twice this from the header, even where this module's
# check is not on the path (the upload components' own look at a file).
Image.MAX_IMAGE_PIXELS = MAX_INPUT_PIXELS
# The formats the app documents. Pillow would otherwise also try EPS and PostScript (which it
# hands to Ghostscript, an external interpreter) and dozens of rarely used decoders. The JPEG
# opener also opens the multi-picture JPEGs many phones write (Pillow calls them MPO).
FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF")
FORMAT_NAMES = "PNG, JPEG, WebP, BMP or TIFF"
MAX_PATH = 4096  # longer "paths" are not files a user uploaded
DOWNLOAD_SECONDS = 15 * 60  # the PNGs written for downloads are deleted after this


class ImageInputError(ValueError):
    """The input cannot be used as an image; the message tells the user what to do."""


@dataclass(frozen=True)
class PreparedImage:
    """A working-size RGB image and the mapping back to the uploaded image's pixels.

    ``pixels`` is ``HxWx3 uint8``; ``original_size`` is ``(height, width)`` of the upload
    after EXIF orientation. Coordinates are ``(x, y)`` in pixels.
    """

    pixels: np.ndarray
    original_size: tuple[int, int]
    notes: tuple[str, ...] = ()

    @property
    def size(self) -> tuple[int, int]:
        return self.pixels.shape[0], self.pixels.shape[1]

    @property
    def scale_xy(self) -> tuple[float, float]:
        """Working pixels per original pixel along x and y (1.0 when not resized)."""
        (h, w), (oh, ow) = self.size, self.original_size
        return w / ow, h / oh

    @property
    def resized(self) -> bool:
        return self.size != self.original_size

    def to_working(self, points: np.ndarray) -> np.ndarray:
        """``Nx2`` (x, y) in original pixels -> working pixels."""
        sx, sy = self.scale_xy
        return np.asarray(points, dtype=np.float64) * np.array([sx, sy])

    def to_original(self, points: np.ndarray) -> np.ndarray:
        """``Nx2`` (x, y) in working pixels -> original pixels."""
        sx, sy = self.scale_xy
        return np.asarray(points, dtype=np.float64) / np.array([sx, sy])

    def mask_to_original(self, mask: np.ndarray) -> np.ndarray:
        """A working-size ``HxW`` mask or label map resized (nearest) to the original size."""
        if not self.resized:
            return mask
        oh, ow = self.original_size
        per_pixel = mask.itemsize * (mask.shape[2] if mask.ndim == 3 else 1)
        # Pillow's resized copy and the array made from it, both at the original size.
        return RENDERS.run(
            2 * per_pixel * oh * ow,
            "a mask at this photo's full size",
            lambda: np.asarray(Image.fromarray(mask).resize((ow, oh), Image.NEAREST)),
        )

    def mask_to_working(self, mask: np.ndarray) -> np.ndarray:
        """An ``HxW`` mask or label map (the upload's size) resized (nearest) to the working
        size, so labels stay labels."""
        if mask.shape == self.size:
            return mask
        h, w = self.size
        return np.asarray(Image.fromarray(mask).resize((w, h), Image.NEAREST))

    @functools.cached_property
    def digest(self) -> str:
        """The pixels' content hash, computed once per image (the pixels never change)."""
        return pixel_digest(self.pixels)


def pixel_digest(pixels: np.ndarray) -> str:
    """A content hash of an image array, independent of the file it came from."""
    h = hashlib.sha1(str(pixels.shape).encode())
    h.update(np.ascontiguousarray(pixels).tobytes())
    return h.hexdigest()


def prepare_image(source, max_side: int = MAX_SIDE) -> PreparedImage:
    """Read a file path, PIL image or ``HxW[xC]`` array into a ``PreparedImage``.

    Raises ImageInputError for anything a user could upload that is not a usable image,
    including a file whose decode would exceed ``MAX_INPUT_PIXELS``.
    """
    if source is None:
        raise ImageInputError("No image was given: upload an image or pick an example.")
    if isinstance(source, np.ndarray):
        image = _array_to_pil(source)
    elif isinstance(source, Image.Image):
        image = source
    else:
        image = open_image_file(source)
    try:
        # Reading EXIF may already touch a damaged file: inside the same net as the decode.
        orientation = image.getexif().get(0x0112, 1) if hasattr(image, "getexif") else 1
    except (OSError, ValueError, SyntaxError, EOFError) as err:
        raise _damaged(err) from err
    width, height = image.size
    if orientation in (5, 6, 7, 8):  # these EXIF orientations swap width and height
        width, height = height, width
    check_size(width, height)
    if image.format in ("JPEG", "MPO") and max(width, height) > 2 * max_side:
        image.draft("RGB", (max_side, max_side))  # decode a smaller JPEG directly: fast, low memory
    try:
        # Shrunk first, turned after: turning a full-size image would copy all of it.
        rgb, notes = RENDERS.run(
            decode_bytes(image, max_side),
            "a photo this large",
            lambda: _to_rgb(_upright(_shrink_early(image, max_side), orientation)),
        )
    except (OSError, ValueError, SyntaxError, EOFError) as err:
        if isinstance(err, ImageInputError | ServerBusyWithImages):
            raise
        raise _damaged(err) from err
    rgb, resize_note = _limit_size(rgb, (height, width), max_side)
    return PreparedImage(np.asarray(rgb), (height, width), notes + resize_note)


# EXIF orientation -> the transpose that shows the image upright (as ``ImageOps.exif_transpose``).
UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _upright(image: Image.Image, orientation) -> Image.Image:
    method = UPRIGHT.get(orientation)
    return image if method is None else image.transpose(method)


def _damaged(err: Exception) -> ImageInputError:
    return ImageInputError(
        f"The image file is damaged or truncated and could not be decoded ({short(err)})."
    )


def short(value, limit: int = 200) -> str:
    """``str(value)`` cut to ``limit`` characters: visitors' input goes into messages and logs."""
    text = str(value)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text):,} characters)"


def decode_bytes(image: Image.Image, max_side: int = MAX_SIDE) -> int:
    """An upper estimate of the memory ``prepare_image`` needs to decode ``image`` (after any
    JPEG draft): the full decode in its own mode, a converted copy where the early shrink
    must convert, and the working-size copies."""
    width, height = image.size
    pixels = width * height
    per_pixel = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2}.get(image.mode, 4)
    converts = image.mode not in ("L", "RGB", "RGBA", "I", "F")
    return pixels * (per_pixel + (4 if converts else 0)) + 16 * 4 * max_side * max_side


def _shrink_early(image: Image.Image, max_side: int) -> Image.Image:
    """Box-reduce a huge image by an integer factor before any mode conversion.

    Converting first would triple the memory of a 20000×20000 grayscale or palette image; the
    exact resize to the working size happens later, on the smaller image.
    """
    factor = max(image.size) // (2 * max_side)
    if factor < 2:
        return image
    if image.mode not in ("L", "RGB", "RGBA", "I", "F"):
        image = image.convert("RGBA" if "A" in image.mode or image.mode == "P" else "L")
    return image.reduce(factor)


def checked_path(source) -> Path:
    """``source`` as the path of an existing, non-empty file, or an ImageInputError."""
    text = os.fspath(source) if isinstance(source, str | os.PathLike) else None
    if not isinstance(text, str) or "\0" in text or len(text) > MAX_PATH:
        raise ImageInputError("That is not the path of an uploaded file: upload the image again.")
    path = Path(text)
    try:
        if not path.is_file():
            raise ImageInputError(f"The file {short(path.name, 80)} does not exist.")
        empty = path.stat().st_size == 0
    except OSError as err:  # a name too long for the file system, a loop of links...
        raise ImageInputError("That file cannot be read: upload the image again.") from err
    if empty:
        raise ImageInputError(f"The file is empty (0 bytes): upload a {FORMAT_NAMES} image.")
    return path


def open_image_file(source) -> Image.Image:
    """A lazily decoded image of one of ``FORMATS`` (nothing decoded yet), or an
    ImageInputError that says what to upload instead."""
    path = checked_path(source)
    try:
        return Image.open(path, formats=FORMATS)
    except Image.DecompressionBombError as err:
        raise ImageInputError(_too_large_message()) from err
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as err:
        raise ImageInputError(
            f"This file is not an image that can be read: upload a {FORMAT_NAMES}."
        ) from err


def _too_large_message(width: int | None = None, height: int | None = None) -> str:
    size = f"{width}×{height} pixels, " if width and height else ""
    return (
        f"The image is too large ({size}over {MAX_INPUT_PIXELS // 1_000_000} megapixels): "
        "resize it first."
    )


def check_size(width: int, height: int) -> None:
    if width * height > MAX_INPUT_PIXELS:
        raise ImageInputError(_too_large_message(width, height))
    if min(width, height) < MIN_SIDE:
        raise ImageInputError(
            f"The image is {width}×{height} pixels; segdemo needs at least "
            f"{MIN_SIDE}×{MIN_SIDE} pixels to find anything in it."
        )


def _array_to_pil(array: np.ndarray) -> Image.Image:
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ImageInputError(f"An image array must be HxW, HxWx3 or HxWx4, not {array.shape}.")
    if array.dtype != np.uint8:
        array = _to_uint8(array.astype(np.float64))
    return Image.fromarray(array)


def _to_uint8(values: np.ndarray) -> np.ndarray:
    """Map a high-bit-depth or float image to 0..255, keeping its contrast."""
    if not np.isfinite(values).all():
        values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
    top = values.max(initial=0.0)
    if top <= 1.0:
        scale = 255.0  # floats in [0, 1]
    elif top <= 255.0:
        scale = 1.0
    else:
        scale = 255.0 / 65535.0 if top <= 65535.0 else 255.0 / top
    return np.clip(values * scale + 0.5, 0, 255).astype(np.uint8)


def _to_rgb(image: Image.Image) -> tuple[Image.Image, tuple[str, ...]]:
    notes: tuple[str, ...] = ()
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        return Image.fromarray(_to_uint8(np.asarray(image, dtype=np.float64))).convert("RGB"), (
            "High-bit-depth image mapped to 8 bits per channel.",
        )
    if image.mode in ("P", "PA"):
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        if rgba.getextrema()[3][0] < 255:
            notes = ("Transparent areas were flattened onto white.",)
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB"), notes
    return image.convert("RGB"), notes


def _limit_size(
    image: Image.Image, original_size: tuple[int, int], max_side: int
) -> tuple[Image.Image, tuple[str, ...]]:
    height, width = original_size
    longest = max(image.size)
    if longest <= max_side and image.size == (width, height):
        return image, ()
    factor = min(1.0, max_side / max(width, height))
    target = (max(1, round(width * factor)), max(1, round(height * factor)))
    if image.size != target:
        image = image.resize(target, Image.BILINEAR, reducing_gap=2.0)
    note = (
        f"Downscaled from {width}×{height} to {target[0]}×{target[1]} pixels for processing; "
        "downloads are in the original image's pixels.",
    )
    return image, note


def read_mask(path, what: str = "mask") -> np.ndarray:
    """A mask image (white = marked) as ``HxW bool``; raises ImageInputError naming ``what``."""
    unreadable = f"The {what} is not an image that can be read: upload a PNG."
    try:
        image = open_image_file(path)
    except ImageInputError as err:
        raise ImageInputError(unreadable) from err
    with image:
        check_size(*image.size)
        try:
            return RENDERS.run(
                decode_bytes(image) + image.size[0] * image.size[1],
                what,
                lambda: np.asarray(image.convert("L")) > 127,
            )
        except (OSError, ValueError, SyntaxError, EOFError) as err:
            if isinstance(err, ServerBusyWithImages):
                raise
            raise ImageInputError(unreadable) from err


def downloads_folder() -> Path:
    """Where the files offered for download are written (one folder per server process,
    removed when the process exits)."""
    return _downloads_folder()


@functools.cache
def _downloads_folder() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="segdemo-downloads-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def _remove_old_downloads(folder: Path, age: float = DOWNLOAD_SECONDS) -> None:
    # Gradio copies each returned file into its own cache (cleaned by ``delete_cache``): the
    # file here is only needed until then, so anything older than ``age`` goes.
    limit = time.time() - age
    for old in folder.glob("segdemo-*"):
        try:
            if old.stat().st_mtime < limit:
                old.unlink()
        except OSError:  # removed by another thread meanwhile
            pass


def _new_download(stem: str, suffix: str, mode: str = "wb") -> IO:
    """A fresh file in ``downloads_folder()``, open for writing; files written there more
    than ``DOWNLOAD_SECONDS`` ago are removed first, so the folder stays bounded."""
    folder = downloads_folder()
    _remove_old_downloads(folder)
    return tempfile.NamedTemporaryFile(
        mode, prefix=f"segdemo-{stem}-", suffix=suffix, delete=False, dir=folder
    )


def save_png(array: np.ndarray, stem: str = "mask") -> str:
    """Write an array as a lossless PNG in a fresh download file and return its path."""

    def write() -> str:
        with _new_download(stem, ".png") as f:
            Image.fromarray(array).save(f, format="PNG")
            return f.name

    # Pillow's copy of the array, and the encoder's buffers.
    return RENDERS.run(2 * array.nbytes, "a PNG this large", write)


def save_json(data: dict, stem: str) -> str:
    """Write ``data`` as JSON in a fresh download file and return its path."""
    with _new_download(stem, ".json", "w") as f:
        json.dump(data, f)
        return f.name
