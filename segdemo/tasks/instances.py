"""Instance segmentation with Mask R-CNN: instances, an instance-id map and COCO-format JSON.

An instance is one object: a box, a class, a confidence and a mask of its own, so two people
side by side are two masks even where a semantic map would show one "person" blob. Boxes are
``(x0, y0, x1, y1)`` in pixels with ``x1, y1`` exclusive (a one-pixel mask at column 3 has
``x0 = 3, x1 = 4``), which is both torchvision's and pycocotools' convention.

The COCO-format download (see ``segdemo.coco``) uses the detector's class index as
``category_id``; for torchvision's COCO models that index *is* the COCO category id.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from segdemo.coco import categories, encode_mask, xyxy_to_xywh
from segdemo.data.scenes import INSTANCE_CLASSES, Scene, make_scene
from segdemo.imaging import PreparedImage
from segdemo.models.maskrcnn import class_names
from segdemo.registry import build_model, load_model
from segdemo.tasks.common import to_tensor

SCORE_THRESHOLD = 0.5
MASK_THRESHOLD = 0.5
MAX_INSTANCES = 255  # the instance-id PNG is 8-bit; every registered model returns fewer


@dataclass(frozen=True)
class Detections:
    """Raw detector output on one image, sorted by score (highest first), working pixels.

    boxes ``Nx4 float32`` ``(x0, y0, x1, y1)``; labels ``N int64`` class indices; scores
    ``N float32`` in [0, 1]; masks ``NxHxW float32`` mask probabilities in [0, 1].
    """

    boxes: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    masks: np.ndarray
    seconds: float = 0.0  # wall time of the forward pass


@torch.no_grad()
def detect(model: torch.nn.Module, pixels: np.ndarray) -> Detections:
    """Run a torchvision-style Mask R-CNN on ``HxWx3 uint8`` pixels."""
    device = next(model.parameters()).device
    began = time.perf_counter()
    out = model([to_tensor(pixels)[0].to(device)])[0]
    seconds = time.perf_counter() - began
    order = torch.argsort(out["scores"], descending=True)[:MAX_INSTANCES]
    return Detections(
        boxes=out["boxes"][order].float().cpu().numpy(),
        labels=out["labels"][order].cpu().numpy().astype(np.int64),
        scores=out["scores"][order].float().cpu().numpy(),
        masks=out["masks"][order, 0].float().cpu().numpy(),
        seconds=seconds,
    )


@dataclass(frozen=True)
class Instance:
    """One detected object.

    box: ``(x0, y0, x1, y1)`` in the ORIGINAL image's pixels (floats, x1/y1 exclusive).
    mask: ``HxW bool`` at the WORKING size (see ``InstanceResult.prepared``).
    """

    box: tuple[float, float, float, float]
    label: int
    name: str
    score: float
    mask: np.ndarray


@dataclass(frozen=True)
class InstanceResult:
    model: str
    prepared: PreparedImage
    instances: list[Instance] = field(default_factory=list)  # highest score first
    classes: tuple[str, ...] = ()
    seconds: float = 0.0

    def id_map(self) -> np.ndarray:
        """``HxW uint8`` at the ORIGINAL size: 0 background, k = ``instances[k-1]``.

        Where masks overlap the more confident instance wins.
        """
        h, w = self.prepared.size
        ids = np.zeros((h, w), np.uint8)
        for k in range(len(self.instances), 0, -1):  # the best instance is painted last
            ids[self.instances[k - 1].mask] = k
        return self.prepared.mask_to_original(ids)

    def original_masks(self):
        """Each instance's mask at the ORIGINAL size (``HxW bool``), one at a time."""
        for instance in self.instances:
            yield self.prepared.mask_to_original(instance.mask.astype(np.uint8)) > 0


def segment_instances(
    prepared: PreparedImage,
    name: str = "maskrcnn",
    score_threshold: float = SCORE_THRESHOLD,
    mask_threshold: float = MASK_THRESHOLD,
    model: torch.nn.Module | None = None,
) -> InstanceResult:
    """Every instance with score >= ``score_threshold``; masks are probability >= the mask
    threshold. Instances whose mask is empty at that threshold are dropped."""
    model = model if model is not None else load_model(name, task="instances")
    found = detect(model, prepared.pixels)
    names = class_names(name)
    instances = []
    rows = zip(found.boxes, found.labels, found.scores, found.masks, strict=True)
    for box, label, score, prob in rows:
        mask = prob >= mask_threshold
        if score < score_threshold or not mask.any():
            continue
        (x0, y0), (x1, y1) = prepared.to_original(box.reshape(2, 2).astype(np.float64))
        instances.append(
            Instance(
                box=(float(x0), float(y0), float(x1), float(y1)),
                label=int(label),
                name=names[label] if label < len(names) else str(label),
                score=float(score),
                mask=mask,
            )
        )
    return InstanceResult(name, prepared, instances, names, found.seconds)


def coco_json(result: InstanceResult, file_name: str = "image.png", image_id: int = 1) -> dict:
    """The result as a COCO dataset dict (``images``, ``categories``, ``annotations``).

    Every annotation also carries its ``score``, so ``annotations`` doubles as a COCO results
    list for ``COCO.loadRes``. Masks are at the original image's size.
    """
    oh, ow = result.prepared.original_size
    annotations = []
    for k, (instance, mask) in enumerate(
        zip(result.instances, result.original_masks(), strict=True), 1
    ):
        annotations.append(
            {
                "id": k,
                "image_id": image_id,
                "category_id": instance.label,
                "bbox": xyxy_to_xywh(instance.box),
                "score": round(instance.score, 4),
                "area": int(mask.sum()),
                "segmentation": encode_mask(mask),
                "iscrowd": 0,
            }
        )
    return {
        "info": {"description": f"segdemo instance segmentation, model {result.model}"},
        "images": [{"id": image_id, "file_name": file_name, "height": oh, "width": ow}],
        "categories": categories(result.classes),
        "annotations": annotations,
    }


def scene_truth(scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    """A street scene's instances as ``NxHxW bool`` masks and ``N int64`` detector labels
    (1 person, 2 purse), in instance-id order."""
    ids = sorted(scene.instance_classes)
    masks = (
        np.stack([scene.instances == i for i in ids])
        if ids
        else np.zeros((0, *scene.instances.shape), bool)
    )
    labels = np.array(
        [INSTANCE_CLASSES.index(scene.instance_classes[i]) + 1 for i in ids], np.int64
    )
    return masks, labels


def median_ms(model: torch.nn.Module, pixels: np.ndarray, repeats: int = 5) -> float:
    """Median wall time in ms of ``detect`` on ``pixels``, after one warm-up call."""
    detect(model, pixels)
    return 1000 * float(np.median([detect(model, pixels).seconds for _ in range(repeats)]))


def bench_maskrcnn(size: tuple[int, int] = (480, 640), repeats: int = 5) -> dict[str, float]:
    """ms per image (median) at ``size`` (HxW) of the shipped ``maskrcnn`` and of torchvision's
    ``maskrcnn_resnet50_fpn`` (random init: the same compute as the COCO checkpoint, whose own
    transform upsizes the image to 800 pixels on the short side), on one validation scene.

    Runs on the threads torch is set to use (the benchmarks use 2).
    """
    pixels = make_scene(0, "val", size).image
    torch.manual_seed(0)
    reference = build_model("maskrcnn_resnet50_fpn_coco").eval()
    return {
        "maskrcnn": round(median_ms(load_model("maskrcnn"), pixels, repeats), 1),
        "maskrcnn_resnet50_fpn": round(median_ms(reference, pixels, repeats), 1),
    }
