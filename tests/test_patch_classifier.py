"""Segmentation as classification: the dense classifier and its fully convolutional twin."""

import torch

from segdemo.models.patch_classifier import PATCH, STRIDE, output_size
from segdemo.registry import build_model


def _trained_looking_model():
    torch.manual_seed(0)
    model = build_model("patch_classifier")
    for module in model.modules():  # non-trivial batch-norm statistics, as after training
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return model.eval()


def test_converted_net_matches_dense_net_on_a_patch():
    model = _trained_looking_model()
    patches = torch.rand(8, 3, PATCH, PATCH)
    dense = model(patches)
    conv = model.to_fully_convolutional()(patches)
    assert conv.shape == (8, 1, 1, 1)
    torch.testing.assert_close(conv.flatten(), dense.flatten(), atol=1e-5, rtol=1e-5)


def test_converted_net_is_an_exact_sliding_window():
    model = _trained_looking_model()
    image = torch.rand(1, 3, 75, 91)
    dense_map = model.to_fully_convolutional()(image)[0, 0]
    for i, j in [(0, 0), (3, 7), (dense_map.shape[0] - 1, dense_map.shape[1] - 1)]:
        y, x = STRIDE * i, STRIDE * j
        window = image[..., y : y + PATCH, x : x + PATCH]
        torch.testing.assert_close(dense_map[i, j], model(window)[0, 0], atol=1e-5, rtol=1e-5)


def test_any_size_gives_a_map_about_four_times_smaller():
    fcn = _trained_looking_model().to_fully_convolutional()
    for h, w in [(32, 32), (480, 640), (97, 131)]:
        out = fcn(torch.rand(1, 3, h, w))
        assert out.shape[-2:] == (output_size(h), output_size(w))
    assert (output_size(480), output_size(640)) == (113, 153)
    assert abs(480 / output_size(480) - 4) < 0.5


def test_conversion_shares_features_and_copies_dense_weights():
    model = _trained_looking_model()
    fcn = model.to_fully_convolutional()
    assert fcn.features is model.features
    assert fcn.dense.weight.shape[-2:] == (5, 5)
    assert torch.equal(fcn.dense.weight.flatten(1), model.dense.weight)
