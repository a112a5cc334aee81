"""Everything a user can get wrong, sent to every image endpoint through gradio_client.

Each input either gets a clear message (``gr.Error``, matched below) or a correct result: a
mask at the size of the image the user sees (EXIF orientation applied). After every case the
server must still answer a normal request.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass

import numpy as np
import pytest
from gradio_client import handle_file
from PIL import Image

from segdemo import registry
from segdemo.examples import scene_examples

EXAMPLE = scene_examples()[0]  # 240×320


@dataclass(frozen=True)
class Endpoint:
    """How to call one endpoint with an image and where its original-size mask comes back."""

    name: str
    extra: tuple  # the arguments after the image (prompts are filled in per image)
    mask_output: int | None  # index of a PNG (or list of PNGs) at the original size

    @property
    def label(self) -> str:
        model = self.extra[2] if self.name == "/prompt_segment" else ""
        return self.name.strip("/") + (f"-{model}" if model else "")


ENDPOINTS = [
    Endpoint("/classify_segment", (), 2),
    Endpoint("/upsample_compare", (), -2),
    Endpoint("/unet_segment", (), -2),
    Endpoint("/maskrcnn_instances", ("maskrcnn", 0.5, 0.5), 3),
    Endpoint("/semantic_vs_instance", (0.5,), None),
    # Refined on the photo, as the tab's default: the refinement meets every bad input too.
    Endpoint("/prompt_segment", ("POINT", "", "click_net", True, True), 1),
    Endpoint("/prompt_segment", ("POINT", "", "sam_tiny", True, True), 1),
]


def _jpeg_bytes(image: Image.Image, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", **kwargs)
    return buffer.getvalue()


def _scene() -> Image.Image:
    return Image.open(EXAMPLE).convert("RGB")


def _exif_rotated(path):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display": stored 320 wide, shown 240 wide
    _scene().save(path, format="JPEG", exif=exif)


def _sixteen_bit(path):
    grey = np.asarray(_scene().convert("L"), np.uint16) * 257
    Image.fromarray(grey).save(path)  # mode I;16


# name -> (writer(path), file suffix, expected (height, width) or the expected error text)
VALID_OR_NOT = {
    "not_an_image": (lambda p: p.write_text("just some notes"), ".png", "not an image"),
    "truncated_jpeg": (
        lambda p: p.write_bytes(_jpeg_bytes(_scene())[:3000]),
        ".jpg",
        "damaged or truncated|not an image",
    ),
    "zero_bytes": (lambda p: p.write_bytes(b""), ".png", "empty|not an image"),
    "one_pixel": (lambda p: Image.new("RGB", (1, 1)).save(p), ".png", "at least 32×32"),
    "grayscale": (lambda p: _scene().convert("L").save(p), ".png", (240, 320)),
    "rgba": (lambda p: _scene().convert("RGBA").save(p), ".png", (240, 320)),
    "sixteen_bit": (_sixteen_bit, ".png", (240, 320)),
    "palette": (
        lambda p: _scene().convert("P", palette=Image.ADAPTIVE).save(p),
        ".png",
        (240, 320),
    ),
    "cmyk_jpeg": (lambda p: _scene().convert("CMYK").save(p, format="JPEG"), ".jpg", (240, 320)),
    "exif_rotated": (_exif_rotated, ".jpg", (320, 240)),
    "huge": (lambda p: Image.new("L", (8000, 8000), 90).save(p), ".png", "too large"),
    "large": (lambda p: Image.new("L", (7000, 7000), 90).save(p), ".png", (7000, 7000)),
}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad-input")
    paths = {}
    for name, (write, suffix, _) in VALID_OR_NOT.items():
        paths[name] = folder / f"{name}{suffix}"
        write(paths[name])
    return paths


def arguments(endpoint: Endpoint, path, size: tuple[int, int]) -> list:
    h, w = size
    centre = json.dumps([[w // 2, h // 2, 1]])
    return [handle_file(str(path)), *(centre if a == "POINT" else a for a in endpoint.extra)]


def mask_size(result, index: int) -> tuple[int, int]:
    path = result[index]
    path = path[0] if isinstance(path, list | tuple) else path
    with Image.open(path) as mask:
        assert mask.format == "PNG"
        return mask.height, mask.width


def server_still_answers(client) -> None:
    assert "**4**" in client.predict(8, 3, 2, 1, 1, api_name="/conv_shapes")


@pytest.mark.parametrize("case", VALID_OR_NOT)
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.label)
def test_image_inputs(client, inputs, endpoint, case):
    expected = VALID_OR_NOT[case][2]
    size = expected if isinstance(expected, tuple) else (240, 320)
    call = arguments(endpoint, inputs[case], size)
    if isinstance(expected, str):
        with pytest.raises(Exception, match=expected):
            client.predict(*call, api_name=endpoint.name)
    else:
        result = client.predict(*call, api_name=endpoint.name)
        if endpoint.mask_output is not None:
            assert mask_size(result, endpoint.mask_output) == expected
        if endpoint.name == "/prompt_segment":
            assert result[2]["refined"] is True
    server_still_answers(client)


PROMPT_MISTAKES = {
    "point_outside": ("[[400, 10, 1]]", "", "outside the 320×240 image"),
    "negative_coordinates": ("[[-5, 10, 1]]", "", "outside the 320×240 image"),
    "nan": ("[[NaN, 10, 1]]", "", "not a number"),
    "bad_label": ("[[10, 10, 2]]", "", "label is 1"),
    "not_json": ("[[10, 10", "", "not valid JSON"),
    "no_prompt": ("", "", "at least one point or a box"),
    "box_outside": ("", "[0, 0, 500, 100]", "outside the 320×240 image"),
    "empty_box": ("", "[50, 50, 50, 90]", "no area"),
}


@pytest.mark.parametrize("case", PROMPT_MISTAKES)
def test_prompt_mistakes(client, case):
    points, box, message = PROMPT_MISTAKES[case]
    with pytest.raises(Exception, match=re.escape(message) if "|" not in message else message):
        client.predict(
            handle_file(EXAMPLE), points, box, "click_net", True, True, api_name="/prompt_segment"
        )
    server_still_answers(client)


@pytest.mark.parametrize("model", ["click_net", "sam_tiny"])
def test_a_box_drawn_from_its_far_corner_is_the_same_box(client, model):
    def masks(box):
        _, files, _ = client.predict(
            handle_file(EXAMPLE), "", json.dumps(box), model, False, api_name="/prompt_segment"
        )
        return np.asarray(Image.open(files[0]))

    np.testing.assert_array_equal(masks([200, 150, 40, 30]), masks([40, 30, 200, 150]))


@pytest.mark.parametrize(
    "endpoint, arguments",
    [
        ("/maskrcnn_instances", ("no_such_model", 0.5, 0.5)),
        ("/maskrcnn_instances", ("unet", 0.5, 0.5)),  # a model of another kind
        ("/prompt_segment", ("[[100, 100, 1]]", "", "no_such_model", True)),
        ("/prompt_segment", ("[[100, 100, 1]]", "", "maskrcnn", True)),
    ],
)
def test_wrong_model_names(client, endpoint, arguments):
    # The model menus only take their own choices: gradio refuses anything else by name.
    with pytest.raises(Exception, match="not in the list of choices"):
        client.predict(handle_file(EXAMPLE), *arguments, api_name=endpoint)
    server_still_answers(client)


@pytest.mark.parametrize(
    "endpoint, model, arguments",
    [
        (
            "/maskrcnn_instances",
            "maskrcnn_resnet50_fpn_coco",
            ("maskrcnn_resnet50_fpn_coco", 0.5, 0.5),
        ),
        ("/prompt_segment", "sam_vit_h", ("[[100, 100, 1]]", "", "sam_vit_h", True)),
    ],
)
def test_an_official_checkpoint_that_is_not_here(client, endpoint, model, arguments):
    if registry.is_available(model):
        pytest.skip("the official checkpoint is installed on this machine")
    with pytest.raises(Exception, match="official checkpoint .* SEGDEMO_DOWNLOAD=1"):
        client.predict(handle_file(EXAMPLE), *arguments, api_name=endpoint)
    server_still_answers(client)
