"""The UNets: shapes for any input size, the one-hot and IoU maths, and the shipped quality.

The quality tests score the shipped weights on validation scenes at indices after the ones
used to write the weights' metadata, so the scenes are new to every step of the pipeline.
"""

import numpy as np
import pytest
import torch

from segdemo.data.scenes import CLASS_NAMES, LECTURE_GRID
from segdemo.evaluate import ValidationSet, scene_validation
from segdemo.models.unet import ConvBNReLU, UNet
from segdemo.registry import build_model
from segdemo.tasks.semantic import (
    ConfusionMatrix,
    boundary_band,
    one_hot,
    pixel_cross_entropy,
    score,
)
from segdemo.train.scenes import CROP, cross_entropy_dice, scene_batch

FRESH = ValidationSet(start=1000, count=24, size=(240, 320))
NAMES = ("unet", "unet_noskip")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("size", [(64, 80), (97, 131), (33, 47), (17, 200), (240, 320), (5, 3)])
def test_output_has_one_score_per_class_at_every_pixel(name, size):
    model = build_model(name).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, *size))
    assert out.shape == (2, len(CLASS_NAMES), *size)
    assert torch.isfinite(out).all()


def test_padding_does_not_leak_between_images_of_a_batch():
    model = build_model("unet").eval()
    images = torch.rand(2, 3, 50, 70)
    with torch.no_grad():
        both = model(images)
        first = model(images[:1])
    torch.testing.assert_close(both[:1], first, atol=1e-5, rtol=1e-5)


def test_inference_folds_batch_norm_without_changing_the_result(as_trained):
    torch.manual_seed(0)
    model = as_trained(build_model("unet")).eval()
    images = torch.rand(2, 3, 45, 61)
    with torch.no_grad():
        folded = model(images)
        for module in model.modules():  # batch norm as its own layer, default layout
            if isinstance(module, ConvBNReLU):
                module.forward = lambda x, m=module: torch.relu(m[1](m[0](x)))
        reference = model(images)
    torch.testing.assert_close(folded, reference, atol=1e-4, rtol=1e-4)


def test_skips_change_only_the_decoder_inputs():
    with_skips, without = build_model("unet"), build_model("unet_noskip")
    assert with_skips.config.skips and not without.config.skips
    assert with_skips.config.widths == without.config.widths
    first, plain = with_skips.up[-1].fuse[0][0], without.up[-1].fuse[0][0]
    assert first.in_channels == 2 * plain.in_channels  # the concatenated encoder features


def test_config_rebuilds_the_model():
    model = UNet(widths=[4, 8, 16], skips=False, classes=3)
    again = UNet(**vars(model.config))
    assert again.config == model.config and again.stride == 4
    assert set(again.state_dict()) == set(model.state_dict())


def test_one_hot_of_the_lecture_grid():
    slices = one_hot(LECTURE_GRID)
    assert slices.shape == (len(CLASS_NAMES), 12, 19) and slices.dtype == np.uint8
    assert (slices.sum(0) == 1).all()  # every pixel has exactly one class
    np.testing.assert_array_equal(slices.argmax(0), LECTURE_GRID)
    assert slices[0].sum() == 0  # the slide uses classes 1..5 only
    assert slices[2].sum() == (LECTURE_GRID == 2).sum() == 5


def test_confusion_matrix_iou():
    truth = np.array([[0, 0, 1, 1], [0, 0, 1, 2]])
    pred = np.array([[0, 1, 1, 1], [0, 0, 1, 1]])
    matrix = ConfusionMatrix(classes=4)
    matrix.add(pred, truth)
    iou = matrix.iou
    np.testing.assert_allclose(iou[:3], [3 / 4, 3 / 5, 0.0])
    assert np.isnan(iou[3])  # absent everywhere: not counted in the mean
    assert matrix.mean_iou == pytest.approx((3 / 4 + 3 / 5) / 3)


def test_boundary_band_and_score():
    truth = np.zeros((20, 20), np.uint8)
    truth[:, 10:] = 4
    band = boundary_band(truth, radius=2)
    assert band[:, 7:13].all() and not band[:, :7].any() and not band[:, 13:].any()
    perfect = score(truth, truth)
    assert perfect.miou == perfect.boundary_miou == 1.0
    assert perfect.iou["person"] is None and perfect.iou["sidewalk"] == 1.0
    shifted = np.roll(truth, 2, axis=1)
    shifted[:, :2] = 0
    worse = score(shifted, truth)
    assert worse.boundary_miou < worse.miou < 1.0


def test_pixel_cross_entropy_is_the_training_loss():
    logits = torch.randn(6, 9, 11)
    labels = torch.randint(0, 6, (9, 11))
    per_pixel = pixel_cross_entropy(logits.numpy(), labels.numpy())
    expected = torch.nn.functional.cross_entropy(logits[None], labels[None])
    assert per_pixel.shape == (9, 11) and (per_pixel >= 0).all()
    assert per_pixel.mean() == pytest.approx(expected.item(), rel=1e-5)


def test_training_batches_are_deterministic_crops():
    images, labels = scene_batch(3, scenes=1)
    assert images.shape == (2, 3, *CROP) and labels.shape == (2, *CROP)
    assert labels.dtype == torch.int64 and 0 <= labels.min() and labels.max() < 6
    again, _ = scene_batch(3, scenes=1)
    assert torch.equal(images, again)
    loss = cross_entropy_dice(torch.randn(2, 6, *CROP, requires_grad=True), labels)
    loss.backward()
    assert loss.item() > 0


@pytest.fixture(scope="module")
def fresh_scores():
    return {name: scene_validation(name, data=FRESH) for name in NAMES}


def test_shipped_unet_reaches_miou_085(fresh_scores):
    assert fresh_scores["unet"]["val_miou"] >= 0.85


def test_skip_connections_buy_miou_and_boundaries(fresh_scores):
    skip, plain = fresh_scores["unet"], fresh_scores["unet_noskip"]
    assert skip["val_miou"] > plain["val_miou"]
    assert skip["val_boundary_miou"] > plain["val_boundary_miou"]
    assert plain["val_miou"] > 0.4  # the hourglass alone has learned the scene layout
