"""Every endpoint of the running app, called through gradio_client as an outside user would."""

import json

import numpy as np
import pytest
from gradio_client import handle_file
from PIL import Image

from segdemo.examples import flower_examples
from segdemo.models.patch_classifier import output_size

EXAMPLE = flower_examples()[0]  # 240×320


def image_size(path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.height, image.width


def test_import_app_starts_nothing():
    import app

    assert hasattr(app, "build_app") and hasattr(app, "main")


def test_classify_segment(client):
    low_res, picture, mask_file, summary, details = client.predict(
        handle_file(EXAMPLE), api_name="/classify_segment"
    )
    assert image_size(low_res) == (output_size(240), output_size(320))
    assert image_size(picture) == (240, 320)
    mask = np.asarray(Image.open(mask_file))
    assert mask.shape == (240, 320) and set(np.unique(mask)) <= {0, 255}
    map_size = (output_size(240), output_size(320))
    assert map_size == (53, 73)
    assert f"240×320 input → {map_size[0]}×{map_size[1]} output" in summary
    assert details["output_size"] == list(map_size)
    assert 0.0 < details["iou"] <= 1.0  # examples carry their ground truth


def test_upsample_compare(client):
    *pictures, summary, mask_files, details = client.predict(
        handle_file(EXAMPLE), api_name="/upsample_compare"
    )
    assert len(pictures) == 6
    for path in pictures[:2] + pictures[3:5]:
        assert image_size(path) == (240, 320)
    assert image_size(pictures[2]) == (256, 256)  # the 32×32 crop zoomed ×8
    assert len(mask_files) == 2
    models = details["models"]
    assert set(models) == {"upsample_transposed", "upsample_bilinear"}
    for name, result in models.items():
        assert 0.0 <= result["checkerboard"] <= 1.0
        assert result["iou"] > 0.5, name
    assert "checkerboard score" in summary


def test_mask_downloads_use_original_pixels(client, tmp_path):
    big = Image.open(EXAMPLE).resize((2400, 1800))
    path = tmp_path / "big.png"
    big.save(path)
    *_, summary, mask_files, _ = client.predict(
        handle_file(str(path)), api_name="/upsample_compare"
    )
    assert "Downscaled from 2400×1800" in summary
    for mask_file in mask_files:
        assert image_size(mask_file) == (1800, 2400)


def test_shape_calculator_and_matrix_example(client):
    text = client.predict(8, 3, 2, 1, 1, api_name="/conv_shapes")
    assert "**4**" in text and "**8**" in text
    matrix = client.predict(2, api_name="/conv_matrix")
    assert "same matrix: **yes**" in matrix


def test_models_table(client):
    table = client.predict(api_name="/models")
    names = [row[0] for row in table["data"]]
    assert {"patch_classifier", "upsample_transposed", "upsample_bilinear"} <= set(names)


@pytest.mark.parametrize("endpoint", ["/classify_segment", "/upsample_compare"])
def test_bad_upload_gets_a_clear_message_and_the_server_goes_on(client, tmp_path, endpoint):
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"\x00not an image at all")
    with pytest.raises(Exception, match="not an image that can be read"):
        client.predict(handle_file(str(junk)), api_name=endpoint)
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (1, 1)).save(tiny)
    with pytest.raises(Exception, match="at least 32×32"):
        client.predict(handle_file(str(tiny)), api_name=endpoint)
    result = client.predict(handle_file(EXAMPLE), api_name=endpoint)
    assert json.dumps(result[-1])  # a normal answer right after the failures
