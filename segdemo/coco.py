"""COCO format and COCO's own evaluation (pycocotools) for instance segmentation.

Conventions: boxes in this project are ``(x0, y0, x1, y1)`` pixels with ``x1, y1`` exclusive;
COCO's ``bbox`` is ``[x, y, width, height]`` in the same pixels. Masks travel as compressed
RLE (``pycocotools.mask.encode``, column-major) with ``counts`` as an ASCII string, so the
JSON is plain text. Average precision comes from ``COCOeval`` unchanged: AP is the mean over
IoU thresholds 0.50:0.05:0.95 and over categories, AP50 the same at IoU 0.5 only.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

# Visible-area ranges (pixels) for AP50 by instance size. COCO's own small/medium/large split at
# 32² and 96² pixels, which would put nearly every instance of a 240×320 scene in "small".
# COCOeval's ranges include both ends and areas are whole pixels, hence the half-pixel edges.
SIZE_RANGES = {"under100px": (0, 99.5), "100to400px": (99.5, 399.5), "over400px": (399.5, 1e10)}


def encode_mask(mask: np.ndarray) -> dict:
    """``HxW bool`` -> compressed RLE ``{"size": [H, W], "counts": str}``."""
    rle = mask_utils.encode(np.asfortranarray(np.asarray(mask, np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def decode_mask(rle: dict) -> np.ndarray:
    """Compressed RLE (counts as str or bytes) -> ``HxW bool``."""
    counts = rle["counts"]
    counts = counts.encode("ascii") if isinstance(counts, str) else counts
    return mask_utils.decode({"size": rle["size"], "counts": counts}).astype(bool)


def mask_box(mask: np.ndarray) -> list[float]:
    """COCO ``[x, y, width, height]`` around a boolean mask's pixels."""
    rle = mask_utils.encode(np.asfortranarray(np.asarray(mask, np.uint8)))
    return [float(v) for v in mask_utils.toBbox(rle)]


def xyxy_to_xywh(box) -> list[float]:
    """``(x0, y0, x1, y1)`` -> COCO ``[x, y, width, height]``, rounded to 1/100 pixel."""
    x0, y0, x1, y1 = (float(v) for v in box)
    return [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)]


def categories(classes: tuple[str, ...]) -> list[dict]:
    """COCO categories of a detector's class list: index = id; background and "N/A" left out."""
    return [{"id": k, "name": n} for k, n in enumerate(classes) if k > 0 and n != "N/A"]


class CocoScorer:
    """Collects ground truth and detections image by image, then runs ``COCOeval``.

    Usage: ``add(...)`` once per image, then ``evaluate()`` for mask and box AP / AP50.
    """

    def __init__(self, classes: tuple[str, ...]):
        self.classes = classes
        self.images: list[dict] = []
        self.truth: list[dict] = []
        self.masks: list[dict] = []  # detections for iouType "segm"
        self.boxes: list[dict] = []  # detections for iouType "bbox"

    def add(
        self,
        truth_masks: list[np.ndarray],
        truth_labels: list[int],
        boxes: np.ndarray,
        labels: np.ndarray,
        scores: np.ndarray,
        masks: np.ndarray,
    ) -> None:
        """One image: true ``HxW bool`` masks and class indices; detections as ``Nx4 (x0, y0,
        x1, y1)`` boxes, ``N`` labels, ``N`` scores and ``NxHxW bool`` masks."""
        image_id = len(self.images) + 1
        h, w = masks.shape[1:] if len(masks) else truth_masks[0].shape if truth_masks else (1, 1)
        self.images.append({"id": image_id, "height": int(h), "width": int(w)})
        for mask, label in zip(truth_masks, truth_labels, strict=True):
            self.truth.append(
                {
                    "id": len(self.truth) + 1,
                    "image_id": image_id,
                    "category_id": int(label),
                    "segmentation": encode_mask(mask),
                    "area": float(mask.sum()),
                    "bbox": mask_box(mask),
                    "iscrowd": 0,
                }
            )
        for box, label, score, mask in zip(boxes, labels, scores, masks, strict=True):
            common = {"image_id": image_id, "category_id": int(label), "score": float(score)}
            self.boxes.append({**common, "bbox": xyxy_to_xywh(box)})
            self.masks.append({**common, "segmentation": encode_mask(mask)})

    def evaluate(self, min_area: int = 0) -> dict[str, float]:
        """``mask_ap``, ``mask_ap50``, ``box_ap``, ``box_ap50``, AP50 per class and AP50 per
        ``SIZE_RANGES`` size of the true instances (all 0..1).

        True instances of fewer than ``min_area`` visible pixels are marked ``iscrowd``, which
        COCOeval treats as "ignore": they count neither as misses nor, when detected, as
        false positives (the way Cityscapes' benchmark ignores regions under 100 pixels).
        """
        truth = COCO()
        truth.dataset = {
            "images": self.images,
            "annotations": [{**t, "iscrowd": int(t["area"] < min_area)} for t in self.truth],
            "categories": categories(self.classes),
        }
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints as it goes
            truth.createIndex()
        metrics: dict[str, float] = {}
        for prefix, iou_type, found in (("mask", "segm", self.masks), ("box", "bbox", self.boxes)):
            if not found:
                metrics.update({f"{prefix}_ap": 0.0, f"{prefix}_ap50": 0.0})
                continue
            with contextlib.redirect_stdout(io.StringIO()):
                # loadRes adds fields to the dicts it is given, so it gets copies
                evaluation = COCOeval(truth, truth.loadRes([dict(d) for d in found]), iou_type)
                # Index 0 stays "all"; summarize() still labels the others small/medium/large.
                evaluation.params.areaRng = [[0, 1e10], *map(list, SIZE_RANGES.values())]
                evaluation.evaluate()
                evaluation.accumulate()
                evaluation.summarize()
            metrics[f"{prefix}_ap"] = round(float(evaluation.stats[0]), 4)
            metrics[f"{prefix}_ap50"] = round(float(evaluation.stats[1]), 4)
            # precision: [IoU threshold, recall, category, area range, max detections];
            # at IoU 0.5 and the most detections: [recall, category, area range]
            at_50 = evaluation.eval["precision"][0, :, :, :, -1]
            for k, cat in enumerate(evaluation.params.catIds):
                name = self.classes[cat].split("/")[0]
                metrics[f"{prefix}_ap50_{name}"] = _mean_precision(at_50[:, k, 0])
            for a, label in enumerate(SIZE_RANGES, start=1):
                metrics[f"{prefix}_ap50_{label}"] = _mean_precision(at_50[:, :, a])
        return metrics


def _mean_precision(precision: np.ndarray) -> float:
    """COCOeval's average over the entries it filled (-1 marks a class or range with no truth)."""
    valid = precision[precision > -1]
    return round(float(valid.mean()) if valid.size else 0.0, 4)
