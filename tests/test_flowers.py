"""The flower generator: deterministic, split-disjoint, with masks that match the picture."""

import numpy as np
import pytest

from segdemo.data.flowers import make_flowers


def test_same_seed_same_image():
    a, b = make_flowers(5, "train", (96, 128)), make_flowers(5, "train", (96, 128))
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)


def test_indices_and_splits_differ():
    base = make_flowers(3, "train").image
    assert not np.array_equal(base, make_flowers(4, "train").image)
    assert not np.array_equal(base, make_flowers(3, "val").image)
    assert not np.array_equal(base, make_flowers(3, "example").image)


@pytest.mark.parametrize("size", [(96, 96), (97, 131), (240, 320)])
def test_shapes_and_types(size):
    sample = make_flowers(0, "val", size)
    assert sample.image.shape == (*size, 3) and sample.image.dtype == np.uint8
    assert sample.mask.shape == size and sample.mask.dtype == bool


def test_masks_cover_flowers_but_not_everything():
    coverage = [make_flowers(i, "val", (128, 128)).mask.mean() for i in range(30)]
    assert 0.03 < np.mean(coverage) < 0.5
    assert sum(c > 0 for c in coverage) >= 27  # almost every image shows a flower


def test_flowers_differ_from_background_in_colour_only_partly():
    # Clutter sometimes takes flower colours, so colour alone cannot separate the classes:
    # the mean colour distance between classes is real but much smaller than the spread.
    sample = make_flowers(1, "val", (192, 256))
    pixels = sample.image.reshape(-1, 3).astype(float)
    inside, outside = pixels[sample.mask.ravel()], pixels[~sample.mask.ravel()]
    assert len(inside) and len(outside)
    assert np.linalg.norm(inside.mean(0) - outside.mean(0)) < 3 * outside.std(0).mean() + 60


def test_unknown_split_is_refused():
    with pytest.raises(ValueError, match="unknown split"):
        make_flowers(0, "test")
