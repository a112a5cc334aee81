"""The UNet tab's endpoint through gradio_client, as an outside user would call it."""

import numpy as np
import pytest
from gradio_client import handle_file
from PIL import Image

from segdemo.data.scenes import CLASS_NAMES
from segdemo.examples import scene_examples

EXAMPLE = scene_examples()[1]  # 240×320, with its label map shipped beside it


def image_size(path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.height, image.width


def test_unet_segment_on_an_example(client):
    (
        annotated,
        unet_map,
        noskip_map,
        truth_map,
        unet_loss,
        noskip_loss,
        slices,
        summary,
        label_files,
        details,
    ) = client.predict(handle_file(EXAMPLE), api_name="/unet_segment")
    assert image_size(annotated["image"]) == (240, 320)
    labels_shown = {a["label"] for a in annotated["annotations"]}
    assert labels_shown and labels_shown <= set(CLASS_NAMES)
    for path in (unet_map, noskip_map, truth_map, unet_loss, noskip_loss):
        assert image_size(path) == (240, 320)
    assert [s["caption"].split(":")[0] for s in slices] == [
        f"{c} {name}" for c, name in enumerate(CLASS_NAMES)
    ]
    one_hot = np.stack([np.asarray(Image.open(s["image"]).convert("L")) for s in slices])
    assert set(np.unique(one_hot)) <= {0, 255}
    assert ((one_hot > 0).sum(0) == 1).all()  # each pixel lies in exactly one slice
    assert len(label_files) == 2
    unet_labels = np.asarray(Image.open(label_files[0]))
    assert unet_labels.shape == (240, 320) and unet_labels.max() < len(CLASS_NAMES)
    np.testing.assert_array_equal(unet_labels, one_hot.argmax(0))
    models = details["models"]
    assert set(models) == {"unet", "unet_noskip"}
    assert models["unet"]["miou"] > 0.7
    assert models["unet"]["boundary_miou"] is not None
    assert "mIoU" in summary and "boundary mIoU" in summary


def test_upload_without_ground_truth_downloads_labels_at_the_original_size(client, tmp_path):
    big = Image.open(EXAMPLE).resize((1500, 1125))
    path = tmp_path / "big.png"
    big.save(path)
    result = client.predict(handle_file(str(path)), api_name="/unet_segment")
    truth_map, unet_loss, summary, label_files, details = (
        result[3],
        result[4],
        result[7],
        result[8],
        result[9],
    )
    assert truth_map is None and unet_loss is None
    assert "Downscaled from 1500×1125" in summary
    assert details["input_size"] == [768, 1024] and details["models"]["unet"]["miou"] is None
    for label_file in label_files:
        assert image_size(label_file) == (1125, 1500)


def test_bad_upload_gets_a_clear_message(client, tmp_path):
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"\x00not an image at all")
    with pytest.raises(Exception, match="not an image that can be read"):
        client.predict(handle_file(str(junk)), api_name="/unet_segment")
