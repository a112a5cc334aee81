"""The Mask R-CNN tab's endpoints, called through gradio_client as an outside user would."""

import json

import numpy as np
import pytest
from gradio_client import handle_file
from PIL import Image
from pycocotools.coco import COCO

from segdemo import registry
from segdemo.examples import scene_examples

EXAMPLE = scene_examples()[0]  # 240×320, several people


def image_size(path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.height, image.width


def call(client, path, model="maskrcnn", score=0.5, mask=0.5):
    return client.predict(handle_file(path), model, score, mask, api_name="/maskrcnn_instances")


def test_instances_table_picture_and_downloads(client):
    picture, summary, table, id_map, coco_file, details = call(client, EXAMPLE)
    assert image_size(picture) == (480, 640)  # small images are drawn enlarged ×2
    rows = table["data"]
    assert details["instances"] == len(rows) >= 2  # the example has several people
    assert f"**{len(rows)} instances**" in summary
    assert {row[1] for row in rows} <= {"person", "purse"}
    assert all(row[2] >= 0.5 for row in rows)
    ids = np.asarray(Image.open(id_map))
    assert ids.shape == (240, 320) and ids.dtype == np.uint8
    assert set(np.unique(ids)) <= set(range(len(rows) + 1))
    coco = COCO(coco_file)
    anns = coco.loadAnns(coco.getAnnIds())
    assert len(anns) == len(rows)
    for k, (row, ann) in enumerate(zip(rows, anns, strict=True), 1):
        mask = coco.annToMask(ann).astype(bool)
        assert mask.shape == (240, 320) and mask.sum() == row[7] == ann["area"]
        assert mask[ids == k].all()  # id k only inside mask k (overlaps go to the best score)
        x0, y0, x1, y1 = row[3:7]
        assert ann["bbox"] == pytest.approx([x0, y0, x1 - x0, y1 - y0], abs=0.1)


def test_thresholds_filter_instances(client):
    low = call(client, EXAMPLE, score=0.05)[-1]["instances"]
    high = call(client, EXAMPLE, score=0.95)[-1]["instances"]
    assert low >= high


def test_downloads_use_original_pixels(client, tmp_path):
    big = Image.open(EXAMPLE).resize((1600, 1200))
    path = tmp_path / "big.png"
    big.save(path)
    picture, summary, table, id_map, coco_file, details = call(client, str(path))
    assert "Downscaled from 1600×1200" in summary
    assert image_size(picture) == (768, 1024)
    assert image_size(id_map) == (1200, 1600)
    data = json.loads(open(coco_file).read())
    assert data["images"][0]["height"] == 1200 and data["images"][0]["width"] == 1600
    for row, ann in zip(table["data"], data["annotations"], strict=True):
        assert ann["segmentation"]["size"] == [1200, 1600]
        assert max(row[3], row[5]) <= 1600 and max(row[4], row[6]) <= 1200


def test_unavailable_official_model_says_how_to_get_it(client):
    if registry.is_available("maskrcnn_resnet50_fpn_coco"):
        pytest.skip("the official checkpoint is installed here")
    with pytest.raises(Exception, match="maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth"):
        call(client, EXAMPLE, model="maskrcnn_resnet50_fpn_coco")


def test_bad_upload_gets_a_clear_message(client, tmp_path):
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"\x00not an image at all")
    with pytest.raises(Exception, match="not an image that can be read"):
        call(client, str(junk))
    assert call(client, EXAMPLE)[-1]["instances"] >= 1  # the server goes on


def test_semantic_vs_instance(client):
    semantic, instances, note = client.predict(
        handle_file(EXAMPLE), 0.5, api_name="/semantic_vs_instance"
    )
    assert image_size(semantic) == image_size(instances) == (480, 640)
    assert "separate people" in note
