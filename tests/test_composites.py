"""The dead-leaves generator: deterministic, split-disjoint, labels that match the layers."""

import numpy as np
import pytest

from segdemo.data.composites import make_composite


def test_same_index_same_image():
    a, b = make_composite(4, "train", (96, 128)), make_composite(4, "train", (96, 128))
    assert np.array_equal(a.image, b.image) and np.array_equal(a.objects, b.objects)


def test_splits_and_indices_differ():
    base = make_composite(2, "train").image
    assert not np.array_equal(base, make_composite(3, "train").image)
    assert not np.array_equal(base, make_composite(2, "val").image)


@pytest.mark.parametrize("size", [(64, 64), (97, 131), (384, 512)])
def test_shapes_and_types(size):
    c = make_composite(0, "val", size)
    assert c.image.shape == (*size, 3) and c.image.dtype == np.uint8
    assert c.objects.shape == size and c.parts.shape == size


def test_every_part_lies_in_one_object():
    for index in range(10):
        c = make_composite(index, "val", (128, 128))
        for part in np.unique(c.parts[c.parts > 0]):
            owners = np.unique(c.objects[c.parts == part])
            assert len(owners) == 1 and owners[0] > 0
        assert (c.objects[c.parts == 0] == 0).all()  # the background layer has no parts


def test_several_visible_objects_of_varied_size():
    counts, areas = [], []
    for index in range(20):
        c = make_composite(index, "val", (256, 256))
        ids, sizes = np.unique(c.objects, return_counts=True)
        counts.append(len(ids))
        areas += list(sizes / c.objects.size)
    assert np.median(counts) >= 5
    assert min(areas) < 0.005 and max(areas) > 0.3  # tiny shapes and large ones
