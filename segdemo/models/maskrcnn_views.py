"""Test-time augmentation for torchvision's Mask R-CNN: several views of an image, one answer.

The detector looks at the image at each test scale, as it is and mirrored. Each view runs
torchvision's own transform, backbone, RPN and box head; its boxes, mapped back to the
image's pixels, are then fused across views: boxes of one class that overlap (IoU ≥ 0.5), at
most one per view, are one object. Its box is their mean and its score their sum over the
number of views, so an object every view finds keeps its score and one a single view finds
is discounted. The mask head then runs on every fused box in every view, and the 28×28 mask
probabilities are averaged before they are pasted into the image once (Detectron2's recipe):
the views' masks are aligned exactly, and no view's full-size masks are ever held.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.roi_heads import maskrcnn_inference, paste_masks_in_image
from torchvision.models.detection.transform import GeneralizedRCNNTransform, resize_boxes
from torchvision.ops import box_iou

FUSE_IOU = 0.5  # boxes of one class overlapping at least this much are one object


@dataclass(frozen=True)
class View:
    transform: GeneralizedRCNNTransform  # scales and normalises the image as torchvision does
    mirrored: bool


@dataclass
class ViewDetections:
    features: dict[str, torch.Tensor]
    size: tuple[int, int]  # the view's image size after the transform (H, W)
    boxes: torch.Tensor  # Nx4 in the original image's pixels
    scores: torch.Tensor
    labels: torch.Tensor


def make_views(model: MaskRCNN, sizes: tuple[int, ...], mirror: bool) -> list[View]:
    """One view per short side in ``sizes`` (the long side keeps the model's ratio), each
    also mirrored when ``mirror``."""
    t = model.transform
    views = []
    for size in sizes:
        long_side = round(size * t.max_size / t.min_size[0])
        # eval(): the views are not submodules, so the model's eval() does not reach them.
        transform = GeneralizedRCNNTransform(size, long_side, t.image_mean, t.image_std).eval()
        views += [View(transform, mirrored) for mirrored in ((False, True) if mirror else (False,))]
    return views


def _mirror_boxes(boxes: torch.Tensor, width: int) -> torch.Tensor:
    return torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], 1)


def _detect(model: MaskRCNN, view: View, image: torch.Tensor) -> ViewDetections:
    """Boxes, scores and labels of one view, the boxes in ``image``'s pixels."""
    batch, _ = view.transform([image.flip(-1) if view.mirrored else image])
    features = model.backbone(batch.tensors)
    proposals, _ = model.rpn(batch, features)
    heads, sizes = model.roi_heads, batch.image_sizes
    box_features = heads.box_head(heads.box_roi_pool(features, proposals, sizes))
    logits, regression = heads.box_predictor(box_features)
    (boxes,), (scores,), (labels,) = heads.postprocess_detections(
        logits, regression, proposals, sizes
    )
    original = tuple(image.shape[-2:])
    boxes = resize_boxes(boxes, sizes[0], original)
    if view.mirrored:
        boxes = _mirror_boxes(boxes, original[1])
    return ViewDetections(features, sizes[0], boxes, scores, labels)


def _mask_probabilities(model, view: View, seen: ViewDetections, boxes, labels, original):
    """``Nx1x28x28``: the view's mask probabilities for ``boxes`` (image pixels), in the
    boxes' own frame as the image shows them (mirrored views are mirrored back)."""
    if view.mirrored:
        boxes = _mirror_boxes(boxes, original[1])
    boxes = resize_boxes(boxes, original, seen.size)
    heads = model.roi_heads
    features = heads.mask_head(heads.mask_roi_pool(seen.features, [boxes], [seen.size]))
    (probabilities,) = maskrcnn_inference(heads.mask_predictor(features), [labels])
    return probabilities.flip(-1) if view.mirrored else probabilities


def fuse(boxes, scores, labels, view_ids, views: int) -> list[list[int]]:
    """Group detections of several views into objects: lists of indices, highest score first.

    Each group starts at the best remaining detection and takes, from every other view, the
    remaining detection of the same class that overlaps it most (if IoU ≥ ``FUSE_IOU``).
    """
    overlap = box_iou(boxes, boxes)
    taken = torch.zeros(len(boxes), dtype=torch.bool)
    groups = []
    for lead in torch.argsort(scores, descending=True).tolist():
        if taken[lead]:
            continue
        group, taken[lead] = [lead], True
        for view in range(views):
            if view == view_ids[lead]:
                continue
            fits = (view_ids == view) & (labels == labels[lead]) & ~taken
            fits &= overlap[lead] >= FUSE_IOU
            if fits.any():
                best = int(torch.where(fits, overlap[lead], -1.0).argmax())
                group.append(best)
                taken[best] = True
        groups.append(group)
    return groups


def predict(model: MaskRCNN, views: list[View], image: torch.Tensor, limit: int) -> dict:
    """torchvision's eval-mode result for one ``3xHxW`` image, from all ``views`` fused: at
    most ``limit`` detections, best first, masks ``Nx1xHxW`` probabilities."""
    original = tuple(image.shape[-2:])
    seen = [_detect(model, view, image) for view in views]
    boxes = torch.cat([s.boxes for s in seen])
    scores = torch.cat([s.scores for s in seen])
    labels = torch.cat([s.labels for s in seen])
    view_ids = torch.cat([torch.full((len(s.boxes),), k) for k, s in enumerate(seen)])
    # Grouping is a greedy loop over a few dozen boxes: on the CPU, not one GPU sync per step.
    groups = fuse(boxes.cpu(), scores.cpu(), labels.cpu(), view_ids, len(views))
    fused_scores = torch.stack([scores[g].sum() / len(views) for g in groups]) if groups else scores
    order = torch.argsort(fused_scores, descending=True)[:limit].tolist()
    groups = [groups[k] for k in order]
    fused = {
        "boxes": torch.stack([boxes[g].mean(0) for g in groups]) if groups else boxes[:0],
        "labels": labels[[g[0] for g in groups]],
        "scores": fused_scores[order],
    }
    probabilities = torch.stack(
        [
            _mask_probabilities(model, view, s, fused["boxes"], fused["labels"], original)
            for view, s in zip(views, seen, strict=True)
        ]
    ).mean(0)
    fused["masks"] = paste_masks_in_image(probabilities, fused["boxes"], original)
    return fused
