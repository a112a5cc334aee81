"""/prompt_segment through gradio_client: what the tab does by clicking, done from code."""

import json

import numpy as np
import pytest
from gradio_client import handle_file
from PIL import Image

from segdemo import registry
from segdemo.clicks import first_click
from segdemo.data.scenes import make_scene


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """A fresh street scene (validation split) with its largest person, saved as PNG."""
    sample = make_scene(7, "val", (240, 320))
    ids, areas = np.unique(sample.instances[sample.instances > 0], return_counts=True)
    truth = sample.instances == ids[np.argmax(areas)]
    path = tmp_path_factory.mktemp("scene") / "scene.png"
    Image.fromarray(sample.image).save(path)
    return path, truth


def read_mask(path) -> np.ndarray:
    mask = np.asarray(Image.open(path))
    assert set(np.unique(mask)) <= {0, 255}
    return mask > 0


def inner_point(truth: np.ndarray) -> list[int]:
    click = first_click(truth)
    return [click.x, click.y, 1]


def test_one_click_gives_three_scored_masks(client, scene):
    path, truth = scene
    picture, files, details = client.predict(
        handle_file(str(path)),
        json.dumps([inner_point(truth)]),
        "",
        "sam_tiny",
        True,
        api_name="/prompt_segment",
    )
    assert len(files) == 3 and len(details["scores"]) == 3
    assert details["best"] == int(np.argmax(details["scores"]))
    masks = [read_mask(f) for f in files]
    assert all(m.shape == (240, 320) for m in masks)
    assert np.asarray(Image.open(picture)).shape[:2] == (240, 320)
    best = masks[details["best"]]
    assert best[truth].mean() > 0.5  # most of the person is in the chosen mask


def test_points_and_box_give_one_mask(client, scene):
    path, truth = scene
    ys, xs = np.nonzero(truth)
    box = [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())]
    _, files, details = client.predict(
        handle_file(str(path)),
        json.dumps([inner_point(truth), [2, 2, 0]]),
        json.dumps(box),
        "sam_tiny",
        False,
        api_name="/prompt_segment",
    )
    assert len(files) == 1 and len(details["scores"]) == 1
    mask = read_mask(files[0])
    outside = np.ones_like(truth)
    outside[box[1] : box[3] + 1, box[0] : box[2] + 1] = False
    assert mask[outside].mean() < 0.05  # the box keeps the mask inside it


def test_points_are_in_original_pixels_of_a_downscaled_upload(client, scene, tmp_path):
    path, truth = scene
    big = tmp_path / "big.png"
    Image.open(path).resize((2560, 1920), Image.NEAREST).save(big)  # 8×: downscaled to 1024
    x, y, _ = inner_point(truth)
    _, files, details = client.predict(
        handle_file(str(big)),
        json.dumps([[8 * x + 4, 8 * y + 4, 1]]),
        "",
        "sam_tiny",
        True,
        api_name="/prompt_segment",
    )
    assert details["original_size"] == [1920, 2560]
    mask = read_mask(files[details["best"]])
    assert mask.shape == (1920, 2560)
    big_truth = np.repeat(np.repeat(truth, 8, axis=0), 8, axis=1)
    assert mask[big_truth].mean() > 0.5


@pytest.mark.parametrize(
    "points, box, message",
    [
        ("[[1, 2]]", "", "list of \\[x, y, label\\]"),
        ("[[5, 5, 2]]", "", "label is 1"),
        ("[[9999, 5, 1]]", "", "outside the 320×240 image"),
        ("not json", "", "not valid JSON"),
        ("", "", "at least one point or a box"),
        ("", "[1, 2, 3]", "box must be"),
    ],
)
def test_bad_prompts_get_a_clear_message(client, scene, points, box, message):
    path, _ = scene
    with pytest.raises(Exception, match=message):
        client.predict(
            handle_file(str(path)), points, box, "sam_tiny", True, api_name="/prompt_segment"
        )


def test_missing_official_checkpoint_is_named(client, scene):
    if registry.is_available("sam_vit_h"):
        pytest.skip("the ViT-H checkpoint is on this machine")
    path, _ = scene
    with pytest.raises(Exception, match="sam_vit_h_4b8939.pth"):
        client.predict(
            handle_file(str(path)), "[[5, 5, 1]]", "", "sam_vit_h", True, api_name="/prompt_segment"
        )
