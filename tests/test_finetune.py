"""Train on your own photo: fine-tuned copies learn from strokes; the shipped models stay put."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gradio_client import handle_file
from PIL import Image

from segdemo.data.flowers import make_flowers
from segdemo.metrics import iou
from segdemo.registry import load_model
from segdemo.tasks.finetune import (
    FLOWER_MODELS,
    LabelError,
    finetune,
    grid_strokes,
    labels_from_mask,
    probability,
    strokes_from_colours,
)
from segdemo.ui.finetune_section import _from_state, _to_state


def unfamiliar_flowers(index: int = 3):
    """A validation flower image with inverted colours — nothing like the training data, so
    the shipped models fail on it — and its true mask."""
    sample = make_flowers(index, "val", (192, 256))
    return 255 - sample.image, sample.mask


def state_of(name: str) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in load_model(name).state_dict().items()}


def test_tuned_copies_beat_the_shipped_models_and_leave_them_unchanged():
    image, mask = unfamiliar_flowers()
    foreground, background = grid_strokes(mask)
    before = {name: state_of(name) for name in FLOWER_MODELS}
    tuned = finetune(image, foreground, background, steps=80)
    for name in FLOWER_MODELS:
        shipped = iou(probability(name, image) >= 0.5, mask)
        mine = iou(probability(name, image, tuned.models[name]) >= 0.5, mask)
        # Measured: 0.03 → 0.71, 0.11 → 0.72, 0.15 → 0.74 on this image with 1 busy thread.
        assert mine > shipped + 0.3, (name, shipped, mine)
        assert tuned.seconds[name] <= 20 / 3 + 2  # the time budget holds, whatever the steps
        for key, value in load_model(name).state_dict().items():
            torch.testing.assert_close(value, before[name][key], rtol=0, atol=0)


def test_sessions_keep_their_own_tuned_models():
    image, mask = unfamiliar_flowers()
    fg, bg = grid_strokes(mask)
    alice = _to_state(finetune(image, fg, bg, ("upsample_bilinear",), steps=15))
    alice_sees = probability("upsample_bilinear", image, _from_state(alice)["upsample_bilinear"])
    bob = _to_state(finetune(image, bg, fg, ("upsample_bilinear",), steps=15))  # opposite labels
    bob_sees = probability("upsample_bilinear", image, _from_state(bob)["upsample_bilinear"])
    again = probability("upsample_bilinear", image, _from_state(alice)["upsample_bilinear"])
    np.testing.assert_array_equal(again, alice_sees)  # Bob's training did not touch Alice's
    assert iou(alice_sees >= 0.5, mask) > iou(bob_sees >= 0.5, mask)


def test_brush_colours_and_mask_labels():
    layer = np.zeros((4, 4, 4), np.uint8)
    layer[0, 0] = (0, 200, 83, 255)  # green: foreground
    layer[1, 1] = (213, 0, 0, 255)  # red: background
    fg, bg = strokes_from_colours(layer)
    assert fg.sum() == 1 and fg[0, 0] and bg.sum() == 1 and bg[1, 1]
    mask = np.zeros((40, 40), bool)
    mask[10:30, 10:30] = True
    fg, bg = labels_from_mask(mask, margin=3)
    assert fg.sum() == 14 * 14 and not (fg & ~mask).any()
    assert not (bg & mask).any() and bg.sum() == 40 * 40 - 26 * 26 + 4 * 6  # corners rounded
    assert not bg[7:33, 10:30].any() and not bg[10:30, 7:33].any()  # 3 px unlabelled outside


@pytest.mark.parametrize("missing", ["foreground", "background"])
def test_both_kinds_of_strokes_are_needed(missing):
    image, mask = unfamiliar_flowers()
    fg, bg = grid_strokes(mask)
    fg, bg = (np.zeros_like(fg), bg) if missing == "foreground" else (fg, np.zeros_like(bg))
    with pytest.raises(LabelError, match=f"Mark some {missing}"):
        finetune(image, fg, bg)


def test_train_on_image_endpoint(client, tmp_path):
    image, mask = unfamiliar_flowers(5)
    fg, bg = grid_strokes(mask)
    paths = {}
    for name, array in (("image", image), ("fg", fg * 255), ("bg", bg * 255)):
        paths[name] = tmp_path / f"{name}.png"
        Image.fromarray(array.astype(np.uint8)).save(paths[name])
    gallery, summary, details = client.predict(
        handle_file(str(paths["image"])),
        handle_file(str(paths["fg"])),
        handle_file(str(paths["bg"])),
        40,
        api_name="/train_on_image",
    )
    assert len(gallery) == 2 * len(FLOWER_MODELS)
    assert set(details) == set(FLOWER_MODELS)
    for numbers in details.values():
        assert 0 < numbers["steps"] <= 40 and numbers["seconds"] < 20
        assert numbers["fine-tuned"]["stroke_agreement"] > numbers["shipped"]["stroke_agreement"]
    assert "loss first → last" in summary
    small = tmp_path / "small.png"
    Image.new("L", (40, 40)).save(small)
    with pytest.raises(Exception, match="must be the image's size"):
        client.predict(
            handle_file(str(paths["image"])),
            handle_file(str(paths["fg"])),
            handle_file(str(small)),
            10,
            api_name="/train_on_image",
        )


@pytest.mark.parametrize("where", ["layer", "composite"])
def test_editor_strokes_train_the_tab_models(where):
    from segdemo.ui.finetune_section import train_on_editor

    image, mask = unfamiliar_flowers()
    fg, bg = grid_strokes(mask)
    photo = np.dstack([image, np.full(mask.shape, 255, np.uint8)])
    paint = np.zeros_like(photo)
    paint[fg] = (0, 200, 83, 255)  # the editor's green brush
    paint[bg] = (213, 0, 0, 255)  # and its red one
    composite = np.where(paint[..., 3:] > 0, paint, photo)
    editor = {
        "background": photo,
        "layers": [paint] if where == "layer" else [],
        "composite": composite,
    }
    train = train_on_editor(("upsample_bilinear",))
    state, labels, items, summary = train(editor, None, 30, progress=lambda *a, **k: None)
    assert set(state) == {"upsample_bilinear"} and len(items) == 2
    # The picture of the labels shows each marked pixel where it was painted.
    assert labels.shape == photo.shape[:2] + (3,)
    assert (labels[fg] == (0, 200, 83)).all() and (labels[bg] == (213, 0, 0)).all()
    assert "upsample_bilinear" in summary


def test_sending_a_mask_before_there_is_one_says_what_to_do():
    import gradio as gr

    from segdemo.ui.picture_store import new_token
    from segdemo.ui.prompted_tab import send_as_label

    with pytest.raises(gr.Error, match="click on it first"):
        send_as_label({"token": new_token()}, targets=2)  # a page with no photo yet
    with pytest.raises(gr.Error, match="reload the page"):
        send_as_label({}, targets=2)
