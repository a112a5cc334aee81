"""Pictures of model outputs: colour maps, overlays, label palettes, zooms and panels.

Every function takes and returns numpy arrays (``HxWx3 uint8`` for pictures) so the tabs and
the documentation draw the same way.
"""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps
from PIL import Image, ImageDraw, ImageFont

MASK_COLOUR = (255, 40, 200)  # magenta stands out on the greens and greys of the examples


def colour_map(values: np.ndarray, name: str = "magma", low: float = 0.0, high: float = 1.0):
    """``HxW`` floats -> ``HxWx3 uint8`` through a matplotlib colour map over [low, high]."""
    scaled = np.clip((np.asarray(values, np.float64) - low) / max(high - low, 1e-12), 0.0, 1.0)
    lut = (colormaps[name](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)
    return lut[np.round(scaled * 255).astype(np.uint8)]


def logit_map(logits: np.ndarray, limit: float = 8.0) -> np.ndarray:
    """Logits on a diverging map (blue = background, red = foreground), clipped at ±limit."""
    return colour_map(logits, "RdBu_r", -limit, limit)


def stretched(values: np.ndarray, name: str = "viridis") -> np.ndarray:
    """A colour map over the array's own range, so small variations (patterns) stay visible."""
    return colour_map(values, name, float(values.min()), float(values.max()))


def overlay(image: np.ndarray, weight: np.ndarray, colour=MASK_COLOUR, alpha: float = 0.55):
    """Tint ``image`` towards ``colour`` in proportion to ``weight`` (a mask or probability)."""
    w = alpha * np.clip(np.asarray(weight, np.float32), 0.0, 1.0)[..., None]
    tinted = image.astype(np.float32) * (1 - w) + np.array(colour, np.float32) * w
    return tinted.round().astype(np.uint8)


def outline(image: np.ndarray, mask: np.ndarray, colour=(255, 255, 255)) -> np.ndarray:
    """Draw the one-pixel boundary of a boolean mask onto a copy of ``image``."""
    mask = np.asarray(mask, bool)
    edge = np.zeros_like(mask)
    edge[:-1] |= mask[:-1] != mask[1:]
    edge[:, :-1] |= mask[:, :-1] != mask[:, 1:]
    result = image.copy()
    result[edge] = colour
    return result


def colourise_labels(labels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """``HxW`` class indices -> ``HxWx3 uint8`` using ``palette[class]``."""
    return np.asarray(palette, np.uint8)[np.asarray(labels, np.intp)]


def zoom(image: np.ndarray, factor: int) -> np.ndarray:
    """Enlarge by an integer factor with nearest-neighbour, so single pixels stay visible."""
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def draw_box(image: np.ndarray, box: tuple[int, int, int, int], colour=(255, 255, 0), width=2):
    """A copy of ``image`` with a rectangle ``(x0, y0, x1, y1)`` drawn on it."""
    canvas = Image.fromarray(image)
    ImageDraw.Draw(canvas).rectangle(box, outline=colour, width=width)
    return np.asarray(canvas)


def side_by_side(images: list[np.ndarray], gap: int = 4, background: int = 255) -> np.ndarray:
    """Place ``HxWx3`` images in a row, top-aligned, with a gap between them."""
    height = max(i.shape[0] for i in images)
    width = sum(i.shape[1] for i in images) + gap * (len(images) - 1)
    panel = np.full((height, width, 3), background, np.uint8)
    x = 0
    for image in images:
        panel[: image.shape[0], x : x + image.shape[1]] = image
        x += image.shape[1] + gap
    return panel


# Instance colours: distinct hues that stay apart from each other in a crowd (matplotlib tab10
# without its grey), cycled when there are more instances.
INSTANCE_COLOURS = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (188, 189, 34), (23, 190, 207),
)  # fmt: skip


def instance_colour(k: int) -> tuple[int, int, int]:
    return INSTANCE_COLOURS[k % len(INSTANCE_COLOURS)]


def draw_instances(
    image: np.ndarray,
    masks: list[np.ndarray],
    boxes: list[tuple[float, float, float, float]],
    captions: list[str],
    alpha: float = 0.5,
) -> np.ndarray:
    """Instances in the style of the Mask R-CNN paper's figures: each in its own colour, a
    translucent mask with its outline, the box, and a caption tag at the box's top-left.

    ``image`` ``HxWx3 uint8``; ``masks`` ``HxW bool`` each; ``boxes`` ``(x0, y0, x1, y1)`` in
    ``image``'s pixels (x1, y1 exclusive). The first instance is drawn on top.
    """
    order = range(len(masks) - 1, -1, -1)
    blend = image.astype(np.float32)
    for k in order:  # blending only the mask's pixels keeps many instances cheap
        m = np.asarray(masks[k], bool)
        blend[m] = (1 - alpha) * blend[m] + alpha * np.array(instance_colour(k), np.float32)
    picture = blend.round().astype(np.uint8)
    for k in order:
        picture = outline(picture, masks[k], instance_colour(k))
    canvas = Image.fromarray(picture)
    draw = ImageDraw.Draw(canvas)
    size = max(10, round(min(image.shape[:2]) / 24))
    font = ImageFont.load_default(size=size)
    line = max(1, size // 8)
    for k in order:
        x0, y0, x1, y1 = boxes[k]
        colour = instance_colour(k)
        draw.rectangle((x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)), outline=colour, width=line)
        left, top, right, bottom = draw.textbbox((0, 0), captions[k], font=font)
        tx, ty = max(0.0, x0), max(0.0, y0 - (bottom - top) - 2 * line)
        draw.rectangle((tx, ty, tx + right + 2 * line, ty + bottom + line), fill=colour)
        draw.text((tx + line, ty), captions[k], fill=(255, 255, 255), font=font)
    return np.asarray(canvas)
