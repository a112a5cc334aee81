"""The shipped weights reach their quality on fresh validation images they never saw.

These images come from the generator's validation split at indices after the ones used to
write the weights' metadata, so they are new to every step of the pipeline.
"""

import pytest

from segdemo.evaluate import ValidationSet, flower_validation

FRESH = ValidationSet(start=1000, count=24, size=(160, 224))


@pytest.fixture(scope="module")
def iou():
    names = ("patch_classifier", "upsample_transposed", "upsample_bilinear")
    return {name: flower_validation(name, data=FRESH)["val_iou"] for name in names}


# The shipped decoders score about 0.85 on validation flowers (docs/evaluation.md). Their errors
# sit on thin petal edges and on flowers against backgrounds of the same hue; 0.80 leaves room
# for the sampling noise of 24 images while failing any net that lost its boundaries.
UPSAMPLING_IOU = 0.80


@pytest.mark.parametrize("name", ["upsample_transposed", "upsample_bilinear"])
def test_upsampling_nets_reach_their_iou(iou, name):
    assert iou[name] >= UPSAMPLING_IOU


def test_patch_classifier_is_coarser_than_full_resolution_decoders(iou):
    # The lecture's point: a 4× coarser map loses boundaries and image borders.
    assert iou["patch_classifier"] < min(iou["upsample_transposed"], iou["upsample_bilinear"])
    assert iou["patch_classifier"] > 0.3  # but it has learned what a flower is
