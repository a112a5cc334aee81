"""The pinned torch / torchvision pair imports and runs torchvision's compiled ops on CPU."""

import torch
import torchvision
from torchvision.ops import box_iou, nms, roi_align


def test_torchvision_ops_run_on_cpu():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0], [50.0, 50.0, 60.0, 60.0]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    assert nms(boxes, scores, iou_threshold=0.5).tolist() == [0, 2]
    assert box_iou(boxes[:1], boxes[:1]).item() == 1.0
    features = torch.arange(16.0).view(1, 1, 4, 4)
    pooled = roi_align(
        features, [torch.tensor([[0.0, 0.0, 4.0, 4.0]])], output_size=1, aligned=True
    )
    assert pooled.shape == (1, 1, 1, 1)
    assert abs(pooled.item() - 7.5) < 1e-5  # the mean of 0..15


def test_versions_are_the_pinned_pair():
    assert torch.__version__.startswith("2.12.1")
    assert torchvision.__version__.startswith("0.27.1")
