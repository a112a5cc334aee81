import numpy as np
import pytest

from segdemo.data.scenes import (
    CLASS_NAMES,
    INSTANCE_CLASSES,
    LECTURE_GRID,
    SPLIT_TAGS,
    make_scene,
)

SIZE = (96, 128)


@pytest.fixture(scope="module")
def many_scenes():
    return [make_scene(i, "train", (192, 256)) for i in range(30)]


def check_consistent(scene, size):
    h, w = size
    assert scene.image.shape == (h, w, 3) and scene.image.dtype == np.uint8
    assert scene.labels.shape == (h, w) and scene.labels.dtype == np.uint8
    assert scene.instances.shape == (h, w) and scene.instances.dtype == np.int32
    assert scene.labels.max() < len(CLASS_NAMES)
    countable = np.isin(scene.labels, INSTANCE_CLASSES)
    np.testing.assert_array_equal(scene.instances > 0, countable)
    ids = sorted(scene.instance_classes)
    assert ids == list(range(1, len(ids) + 1))
    assert set(np.unique(scene.instances).tolist()) - {0} == set(ids)
    for inst_id, cls in scene.instance_classes.items():
        assert cls in INSTANCE_CLASSES
        assert np.all(scene.labels[scene.instances == inst_id] == cls)


def test_deterministic():
    a, b = make_scene(3, "train", SIZE), make_scene(3, "train", SIZE)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.instances, b.instances)
    assert a.instance_classes == b.instance_classes


def test_index_and_split_change_the_scene():
    base = make_scene(3, "train", SIZE).image
    assert not np.array_equal(base, make_scene(4, "train", SIZE).image)
    assert not np.array_equal(base, make_scene(3, "val", SIZE).image)
    assert len(set(SPLIT_TAGS.values())) == len(SPLIT_TAGS)


@pytest.mark.parametrize("size", [(64, 64), (97, 131), (192, 256), (131, 97), (480, 640)])
def test_labels_consistent_across_sizes(size):
    for index in range(2):
        check_consistent(make_scene(index, "val", size), size)


def test_every_class_appears(many_scenes):
    for scene in many_scenes:
        check_consistent(scene, (192, 256))
    seen = set()
    for scene in many_scenes:
        seen.update(np.unique(scene.labels).tolist())
    assert seen == set(range(len(CLASS_NAMES)))
    persons = [list(s.instance_classes.values()).count(1) for s in many_scenes]
    purses = [list(s.instance_classes.values()).count(2) for s in many_scenes]
    assert max(persons) >= 2
    assert max(purses) >= 1


def test_unknown_split_raises():
    with pytest.raises(ValueError):
        make_scene(0, "test")
    with pytest.raises(ValueError):
        make_scene(-1, "train")


def test_lecture_grid():
    assert LECTURE_GRID.shape == (12, 19)
    assert LECTURE_GRID.dtype == np.uint8
    assert set(np.unique(LECTURE_GRID).tolist()) == {1, 2, 3, 4, 5}
