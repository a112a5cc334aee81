"""Mask R-CNN: the detector's contract, training, COCO output and evaluation, shipped quality."""

import json

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO

from segdemo import registry
from segdemo.coco import CocoScorer, decode_mask, encode_mask
from segdemo.data.scenes import make_scene
from segdemo.evaluate import ValidationSet, instance_validation
from segdemo.imaging import PreparedImage, prepare_image
from segdemo.models import maskrcnn_views
from segdemo.models.maskrcnn import SCENE_CLASSES
from segdemo.tasks.instances import (
    Instance,
    InstanceResult,
    coco_json,
    scene_truth,
    segment_instances,
)
from segdemo.train.instances import DetectionLosses, scene_targets, total_loss

# The shipped architecture, trained and run at a small size.
TINY = dict(min_size=96, max_size=128, test_sizes=(96, 120))


@pytest.fixture(scope="module")
def untrained():
    torch.manual_seed(0)
    return registry.build_model("maskrcnn", **TINY).eval()


def test_output_dict_contract(untrained):
    with torch.no_grad():
        (out,) = untrained([torch.rand(3, 90, 120)])
    n = len(out["boxes"])
    assert 0 < n <= untrained.config.box_detections_per_img  # random weights still propose
    assert out["boxes"].shape == (n, 4) and out["boxes"].dtype == torch.float32
    assert out["labels"].shape == (n,) and out["labels"].dtype == torch.int64
    assert out["scores"].shape == (n,) and out["scores"].dtype == torch.float32
    assert out["masks"].shape == (n, 1, 90, 120) and out["masks"].dtype == torch.float32
    boxes = out["boxes"]
    assert (boxes[:, 0] <= boxes[:, 2]).all() and (boxes[:, 1] <= boxes[:, 3]).all()
    assert boxes[:, [0, 2]].max() <= 120 and boxes[:, [1, 3]].max() <= 90
    assert set(out["labels"].tolist()) <= {1, 2}  # person, purse; never background
    assert 0 <= out["masks"].min() and out["masks"].max() <= 1


def test_it_trains_at_the_training_scale_and_predicts_from_its_test_views():
    torch.manual_seed(0)
    model = registry.build_model("maskrcnn", **TINY)
    image = torch.rand(3, 96, 128)
    assert model.train().transform([image])[0].image_sizes == [(96, 128)]
    views = [(v.transform([image])[0].image_sizes[0], v.mirrored) for v in model.test_views]
    assert views == [((96, 128), False), ((96, 128), True), ((120, 160), False), ((120, 160), True)]
    with torch.no_grad():
        (out,) = model.eval()([image])
    assert out["masks"].shape[-2:] == (96, 128)  # results come back in the input's pixels
    assert out["boxes"][:, [0, 2]].max() <= 128 and out["boxes"][:, [1, 3]].max() <= 96


def test_fusion_joins_one_object_across_views_and_keeps_classes_apart():
    boxes = torch.tensor(
        [
            [10.0, 10, 50, 90],  # view 0: a person
            [12.0, 11, 52, 88],  # view 1: the same person
            [12.0, 11, 52, 88],  # view 1: a purse in the same place: another class
            [100.0, 10, 120, 30],  # view 1: something view 0 missed
        ]
    )
    scores, labels = torch.tensor([0.9, 0.8, 0.3, 0.6]), torch.tensor([1, 1, 2, 1])
    groups = maskrcnn_views.fuse(boxes, scores, labels, torch.tensor([0, 1, 1, 1]), views=2)
    assert groups == [[0, 1], [3], [2]]  # best first, one detection per view in a group


def test_a_mirrored_view_is_mapped_back_the_right_way_round(untrained):
    # The mirrored view of an image sees what the plain view of the mirrored image sees; its
    # boxes and masks, mapped back, must be that answer mirrored.
    plain, mirrored = untrained.test_views[:2]
    image = torch.rand(3, 96, 128)
    with torch.no_grad():
        seen = maskrcnn_views.predict(untrained, [mirrored], image, limit=50)
        expected = maskrcnn_views.predict(untrained, [plain], image.flip(-1), limit=50)
    assert len(expected["boxes"]) > 0
    torch.testing.assert_close(seen["scores"], expected["scores"])
    boxes = expected["boxes"]
    boxes = torch.stack([128 - boxes[:, 2], boxes[:, 1], 128 - boxes[:, 0], boxes[:, 3]], 1)
    torch.testing.assert_close(seen["boxes"], boxes, atol=1e-3, rtol=0)
    # Pasting rounds box corners to pixels, so mirrored pastes differ by a little at edges.
    difference = (seen["masks"] - expected["masks"].flip(-1)).abs().sum()
    assert difference < 0.05 * expected["masks"].sum()


def test_config_round_trips_through_json():
    model = registry.build_model("maskrcnn", fpn_channels=32)
    config = json.loads(json.dumps(model.config_dict()))
    rebuilt = registry.build_model("maskrcnn", **config)
    assert rebuilt.config == model.config
    assert rebuilt.state_dict().keys() == model.state_dict().keys()


def test_scene_targets_follow_torchvision_conventions():
    scene = make_scene(0, "train", (96, 128))
    target = scene_targets(scene)
    n = len(scene.instance_classes)
    assert target["boxes"].shape == (n, 4) and target["boxes"].dtype == torch.float32
    assert target["masks"].shape == (n, 96, 128) and target["masks"].dtype == torch.uint8
    for box, mask in zip(target["boxes"], target["masks"], strict=True):
        ys, xs = np.nonzero(mask.numpy())
        assert box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]  # x1 exclusive
    assert set(target["labels"].tolist()) <= {1, 2}


def test_a_few_training_steps_lower_the_loss():
    torch.manual_seed(0)
    model = DetectionLosses(registry.build_model("maskrcnn", **TINY)).train()
    scenes = [make_scene(k, "train", (96, 128)) for k in range(2)]
    batch = ([torch.from_numpy(s.image).permute(2, 0, 1) / 255.0 for s in scenes],)
    batch += ([scene_targets(s) for s in scenes],)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for step in range(8):
        torch.manual_seed(step)  # the same proposal sampling in every run of the test
        loss = total_loss(model(batch))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.isfinite(losses).all()
    assert np.mean(losses[-2:]) < 0.8 * np.mean(losses[:2]), losses


def test_instances_come_back_in_original_pixels(untrained):
    big = np.asarray(make_scene(0, "val", (1536, 2048)).image)
    prepared = prepare_image(big)  # working size 768×1024: half the original
    result = segment_instances(prepared, score_threshold=0.0, mask_threshold=0.0, model=untrained)
    assert result.instances, "random weights return some detections at threshold 0"
    working = segment_instances(
        prepare_image(prepared.pixels), score_threshold=0.0, mask_threshold=0.0, model=untrained
    )
    ours, theirs = result.instances[0], working.instances[0]
    np.testing.assert_allclose(ours.box, 2 * np.array(theirs.box), rtol=1e-5)
    assert ours.mask.shape == (768, 1024)
    ids = result.id_map()
    assert ids.shape == (1536, 2048) and ids.dtype == np.uint8
    assert ids.max() <= len(result.instances)


def synthetic_result(size=(60, 80), original=(120, 160)) -> InstanceResult:
    """Two overlapping instances on a working image half the original's size."""
    prepared = PreparedImage(np.zeros((*size, 3), np.uint8), original)
    a = np.zeros(size, bool)
    a[10:40, 5:20] = True
    b = np.zeros(size, bool)
    b[30:50, 15:60] = True
    return InstanceResult(
        "maskrcnn",
        prepared,
        [
            Instance((10.0, 20.0, 40.0, 80.0), 1, "person", 0.9, a),
            Instance((30.0, 60.0, 120.0, 100.0), 2, "purse", 0.6, b),
        ],
        SCENE_CLASSES,
    )


def test_coco_json_round_trips_through_pycocotools(tmp_path):
    result = synthetic_result()
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(coco_json(result, "street.png")))
    coco = COCO(str(path))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["person", "purse"]
    image = coco.loadImgs(1)[0]
    assert (image["height"], image["width"]) == (120, 160)
    anns = coco.loadAnns(coco.getAnnIds())
    assert [a["bbox"] for a in anns] == [[10, 20, 30, 60], [30, 60, 90, 40]]  # [x, y, w, h]
    for instance, mask, ann in zip(result.instances, result.original_masks(), anns, strict=True):
        assert mask.shape == (120, 160)
        np.testing.assert_array_equal(coco.annToMask(ann).astype(bool), mask)
        assert ann["area"] == mask.sum() and ann["category_id"] == instance.label
        assert ann["score"] == pytest.approx(instance.score)
    # The annotations double as a results list, as COCOeval's detections.
    assert len(coco.loadRes(coco_json(result)["annotations"]).getAnnIds()) == 2


def test_id_map_puts_the_more_confident_instance_on_top():
    result = synthetic_result()
    ids = result.id_map()
    assert ids.shape == (120, 160)
    assert ids[2 * 35, 2 * 17] == 1  # in both masks: instance 1 (score 0.9) wins
    assert ids[2 * 45, 2 * 50] == 2 and ids[0, 0] == 0


def test_rle_helpers_are_inverse():
    mask = np.random.default_rng(0).random((37, 53)) > 0.5
    rle = encode_mask(mask)
    assert isinstance(rle["counts"], str) and rle["size"] == [37, 53]
    np.testing.assert_array_equal(decode_mask(json.loads(json.dumps(rle))), mask)


def test_coco_scorer_gives_perfect_and_imperfect_scores():
    scene = make_scene(1, "val", (120, 160))  # 4 people and 3 purses
    masks, labels = scene_truth(scene)
    boxes, scores = scene_targets(scene)["boxes"].numpy(), np.ones(len(labels))
    perfect = CocoScorer(SCENE_CLASSES)
    perfect.add(list(masks), list(labels), boxes, labels, scores, masks)
    metrics = perfect.evaluate()
    assert metrics["mask_ap"] == pytest.approx(1.0) and metrics["box_ap"] == pytest.approx(1.0)
    # Half of each class found: recall 0.5 caps AP50 at about 0.5.
    keep = np.concatenate([np.flatnonzero(labels == c)[::2] for c in (1, 2)])
    half = CocoScorer(SCENE_CLASSES)
    half.add(list(masks), list(labels), boxes[keep], labels[keep], scores[keep], masks[keep])
    metrics = half.evaluate()
    assert 0.3 < metrics["mask_ap50"] < 0.7 and 0.3 < metrics["box_ap50_person"] < 0.7


def test_coco_scorer_splits_ap50_by_visible_size():
    scene = make_scene(1, "val", (240, 320))  # instances of 43 and 87 px, four over 400
    masks, labels = scene_truth(scene)
    areas = masks.sum((1, 2))
    assert (areas < 100).sum() == 2 and (areas >= 400).sum() == 4
    found = np.flatnonzero(areas >= 100)  # the small ones missed, the rest perfect
    boxes = scene_targets(scene)["boxes"].numpy()[found]
    scorer = CocoScorer(SCENE_CLASSES)
    scorer.add(list(masks), list(labels), boxes, labels[found], np.ones(len(found)), masks[found])
    metrics = scorer.evaluate()
    assert metrics["mask_ap50_under100px"] == 0.0 and metrics["box_ap50_under100px"] == 0.0
    assert metrics["mask_ap50_over400px"] == pytest.approx(1.0)
    assert 0.0 < metrics["mask_ap50"] < 1.0


# Fresh validation scenes: after the indices the weights' metadata was measured on.
FRESH_SCENES = ValidationSet(start=1000, count=60, size=(240, 320))


@pytest.fixture(scope="module")
def fresh_metrics():
    if not registry.is_available("maskrcnn"):
        pytest.fail("weights/maskrcnn.safetensors is missing: python -m segdemo.train maskrcnn")
    return instance_validation("maskrcnn", data=FRESH_SCENES)


def test_shipped_weights_keep_their_measured_quality_on_fresh_scenes(fresh_metrics):
    # The shipped weights measure mask AP50 0.79, box AP50 0.86 and person mask AP50 0.83 on
    # their 200 validation scenes, and 0.74 / 0.86 / 0.82 on these 60 (purses are few here, so
    # the overall mask figure moves most); the floors sit a few points below.
    assert fresh_metrics["val_mask_ap50"] >= 0.69, fresh_metrics
    assert fresh_metrics["val_box_ap50"] >= 0.82, fresh_metrics
    assert fresh_metrics["val_mask_ap50_person"] >= 0.77, fresh_metrics


def test_instances_of_400_visible_pixels_or_more_reach_the_target(fresh_metrics):
    # The gap to 0.9 is in small and mostly hidden instances. Mask AP50 by visible area on
    # these scenes: 0.22 under 100 pixels, 0.73 from 100 to 400, 0.94 from 400 up (on the 200
    # validation scenes 0.27 / 0.76 / 0.98).
    assert fresh_metrics["val_mask_ap50_over400px"] >= 0.9, fresh_metrics


@pytest.mark.xfail(
    strict=True,
    reason="the issue's target is mask AP50 0.9; the shipped weights reach 0.79 (see README)",
)
def test_shipped_weights_reach_the_target_mask_ap50(fresh_metrics):
    assert fresh_metrics["val_mask_ap50"] >= 0.9, fresh_metrics
