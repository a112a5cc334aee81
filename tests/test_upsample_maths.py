"""The upsampling tab's maths: shape formulas, the conv-matrix example, the checkerboard score."""

import numpy as np
import pytest
import torch

from segdemo.tasks.upsample import (
    checkerboard_score,
    conv_matrix_example,
    conv_output_size,
    conv_transpose_output_size,
)
from segdemo.ui.upsample_tab import shape_arithmetic


@pytest.mark.parametrize("n, k, s, p", [(8, 3, 2, 1), (7, 3, 1, 0), (32, 4, 2, 1), (5, 5, 3, 2)])
def test_shape_formulas_match_torch(n, k, s, p):
    x = torch.zeros(1, 1, n, n)
    out = torch.nn.Conv2d(1, 1, k, s, p)(x)
    assert out.shape[-1] == conv_output_size(n, k, s, p)
    back = torch.nn.ConvTranspose2d(1, 1, k, s, p)(out)
    assert back.shape[-1] == conv_transpose_output_size(out.shape[-1], k, s, p)


def test_calculator_explains_rounding():
    assert "restores the input size" in shape_arithmetic(8, 3, 2, 1, 1)
    assert "output_padding=1 would restore it" in shape_arithmetic(8, 3, 2, 1, 0)
    assert "smaller than the stride" in shape_arithmetic(8, 3, 2, 1, 2)


@pytest.mark.parametrize("size, stride", [(4, 1), (5, 2)])
def test_transposed_convolution_is_the_transposed_matrix(size, stride):
    ex = conv_matrix_example(size=size, kernel_size=3, stride=stride)
    reference = torch.nn.functional.conv2d(
        torch.from_numpy(ex.image)[None, None],
        torch.from_numpy(ex.kernel)[None, None],
        stride=stride,
    )[0, 0].numpy()
    np.testing.assert_allclose(ex.output, reference)
    np.testing.assert_allclose(ex.transposed, ex.torch_transposed)
    assert ex.transposed.shape == ex.image.shape


def test_checkerboard_score_separates_periodic_from_smooth():
    yy, xx = np.mgrid[0:64, 0:64]
    smooth = np.exp(-((yy - 32) ** 2 + (xx - 30) ** 2) / 200.0) * 10
    checker = smooth + 0.8 * ((yy % 2) ^ (xx % 2))
    assert checkerboard_score(smooth) < 0.01
    assert checkerboard_score(checker) > 10 * checkerboard_score(smooth)
    assert checkerboard_score(np.zeros((16, 16))) == 0.0
