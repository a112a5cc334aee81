"""Example images: the app's own, made by the project's generators, and a few real photos.

The real photos are scikit-image's sample images (an astronaut, a cup of coffee, a cat, a
rocket), read from the installed package: they have no masks, and are there to try the
prompted tab on what a user would upload.

``python -m segdemo.examples`` rewrites them. Each example has its ground truth beside it;
``ground_truth(pixels)`` finds it again from the image content, so an example still gets its
IoU after a round trip through the browser (which renames files but keeps pixels).
"""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

from segdemo.data.flowers import make_flowers
from segdemo.data.scenes import make_scene
from segdemo.imaging import pixel_digest

EXAMPLES_DIR = Path(__file__).resolve().parent / "assets" / "examples"
FLOWER_EXAMPLES = {  # file stem: (index in the generator's "example" split, (height, width))
    "flowers_0": (0, (240, 320)),
    "flowers_1": (1, (240, 320)),
    "flowers_2": (2, (300, 400)),
    "flowers_3": (3, (480, 640)),
}


SCENE_EXAMPLES = {  # file stem: (index in the scene generator's "example" split, (height, width))
    "scene_0": (0, (240, 320)),
    "scene_1": (1, (240, 320)),
    "scene_2": (2, (240, 320)),
    "scene_3": (3, (480, 640)),
}


def flower_examples() -> list[str]:
    """Paths of the flower example images, for ``gr.Examples``."""
    return [str(EXAMPLES_DIR / f"{stem}.png") for stem in FLOWER_EXAMPLES]


def scene_examples() -> list[str]:
    """Paths of the street-scene example images, for ``gr.Examples``."""
    return [str(EXAMPLES_DIR / f"{stem}.png") for stem in SCENE_EXAMPLES]


PHOTO_EXAMPLES = ("astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg")


def photo_examples() -> list[str]:
    """Paths of the real example photos inside the installed scikit-image (no masks)."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        return []
    folder = Path(spec.submodule_search_locations[0]) / "data"
    return [str(folder / name) for name in PHOTO_EXAMPLES if (folder / name).is_file()]


@cache
def _truth_by_digest() -> dict[str, Path]:
    index = {}
    for image_path in EXAMPLES_DIR.glob("*.png"):
        truth = image_path.with_name(image_path.stem + "_truth.png")
        if not image_path.stem.endswith("_truth") and truth.is_file():
            pixels = np.asarray(Image.open(image_path).convert("RGB"))
            index[pixel_digest(pixels)] = truth
    return index


def ground_truth(pixels: np.ndarray) -> np.ndarray | None:
    """The ground-truth label map (``HxW uint8``) of a shipped example, else None."""
    path = _truth_by_digest().get(pixel_digest(pixels))
    return None if path is None else np.asarray(Image.open(path))


def scene_ground_truth(pixels: np.ndarray) -> np.ndarray | None:
    """The class-index label map (``HxW uint8``, 0..5) of a shipped scene example, else None.

    Flower examples have ground truth too, but theirs is a 0/1 mask, not scene classes.
    """
    path = _truth_by_digest().get(pixel_digest(pixels))
    if path is None or path.stem.removesuffix("_truth") not in SCENE_EXAMPLES:
        return None
    return np.asarray(Image.open(path))


def write_examples() -> None:
    EXAMPLES_DIR.mkdir(parents=True, exist_ok=True)
    for stem, (index, size) in FLOWER_EXAMPLES.items():
        sample = make_flowers(index, "example", size)
        Image.fromarray(sample.image).save(EXAMPLES_DIR / f"{stem}.png")
        Image.fromarray(sample.mask.astype(np.uint8)).save(EXAMPLES_DIR / f"{stem}_truth.png")
        print(f"wrote {EXAMPLES_DIR / stem}.png and its ground truth")
    for stem, (index, size) in SCENE_EXAMPLES.items():
        scene = make_scene(index, "example", size)
        Image.fromarray(scene.image).save(EXAMPLES_DIR / f"{stem}.png")
        Image.fromarray(scene.labels).save(EXAMPLES_DIR / f"{stem}_truth.png")
        print(f"wrote {EXAMPLES_DIR / stem}.png and its label map")


if __name__ == "__main__":
    write_examples()
