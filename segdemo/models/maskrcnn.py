"""Mask R-CNN: torchvision's detector with a light trunk, and the official COCO checkpoints.

Mask R-CNN (He et al., 2017) is Faster R-CNN plus one small branch. A region proposal network
suggests boxes; for each one, RoIAlign cuts a fixed-size feature grid out of the feature
pyramid, and three heads run on it *in parallel*: classification, box regression and a tiny
fully convolutional net that predicts a 28×28 mask per class. Instance segmentation is then
object detection (which thing, where) plus semantic segmentation inside each box.

``maskrcnn`` is ``torchvision.models.detection.MaskRCNN`` unchanged in its logic; only the
parts are sized for this project: a small ResNet-like trunk whose FPN starts at stride 2 (32
channels, BatchNorm as in torchvision's v2 models), anchors from 8 to 128 pixels (purses to
people in 240×320 street scenes), trained at 240×320 and predicting from four views of the
image (240×320 and 300×400, each also mirrored) whose detections are fused. Its config
dataclass is stored in the weights file, which therefore rebuilds its own model.

``maskrcnn_resnet50_fpn_coco`` (and ``_v2``) are torchvision's COCO-trained ResNet-50 FPN
models with their 91 COCO category slots, loaded from the official ``.pth`` files.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection import maskrcnn_resnet50_fpn as _tv_maskrcnn_resnet50_fpn
from torchvision.models.detection import maskrcnn_resnet50_fpn_v2 as _tv_maskrcnn_v2
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.rpn import RPNHead
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from segdemo.data.scenes import CLASS_NAMES, INSTANCE_CLASSES
from segdemo.models import maskrcnn_views
from segdemo.registry import register_model
from segdemo.weights import config_dict

# Detector class 0 is background, as in torchvision; 1.. are the scene's countable classes.
SCENE_CLASSES = ("background",) + tuple(CLASS_NAMES[c] for c in INSTANCE_CLASSES)

# The 91 COCO slots torchvision's checkpoints predict ("N/A" marks ids COCO never used).
COCO_CATEGORIES = (
    "__background__", "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train",
    "truck", "boat", "traffic light", "fire hydrant", "N/A", "stop sign", "parking meter",
    "bench", "bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra",
    "giraffe", "N/A", "backpack", "umbrella", "N/A", "N/A", "handbag", "tie", "suitcase",
    "frisbee", "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove",
    "skateboard", "surfboard", "tennis racket", "bottle", "N/A", "wine glass", "cup", "fork",
    "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange", "broccoli", "carrot",
    "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant", "bed", "N/A",
    "dining table", "N/A", "N/A", "toilet", "N/A", "tv", "laptop", "mouse", "remote",
    "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "N/A",
    "book", "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip


@dataclass
class MaskRCNNConfig:
    """Everything that shapes the network; saved with the weights (lists survive JSON)."""

    # Small people's limbs and most purses are 2-5 pixels wide in a 240×320 scene, so the
    # finest pyramid level has stride 2 (ResNet's is 4): RoIAlign then samples masks from
    # features fine enough to see them. Levels: strides 2, 4, 8, 16, and a pooled 32.
    widths: tuple[int, ...] = (16, 32, 64, 128)  # trunk channels, finest level first
    first_stride: int = 2  # stride of the finest level (2 or 4); each next level doubles it
    # Most of the compute is in the FPN's and the RPN head's 3×3 convolutions on the finest
    # level, so their width is the main speed knob.
    fpn_channels: int = 32
    norm_heads: bool = True  # BatchNorm in the FPN and the mask head, as torchvision's v2
    representation: int = 256  # box head MLP width
    mask_convs: int = 4  # 3×3 convolutions in the mask branch, as in the paper's FPN head
    mask_width: int = 64  # their channels: wider than the FPN, masks need the capacity
    num_classes: int = len(SCENE_CLASSES)
    # The transform scales every image so its short side is min_size (long side <= max_size):
    # training scenes are 240×320.
    min_size: int = 240
    max_size: int = 320
    # At inference the image is seen at the training scale and at 1.25× it, each as it is and
    # mirrored, and the four views' detections are fused (``maskrcnn_views``). The larger
    # scale lets the mask branch sample finer features of small people and purses. On the
    # validation scenes mask AP50 goes from 0.72 (one view at 240) and 0.75 (one at 300) to
    # 0.79 with the four, purses gaining most, for about 4× the time of one view. An empty
    # tuple runs torchvision's own single view at min_size.
    test_sizes: tuple[int, ...] = (240, 300)
    test_mirror: bool = True
    anchor_sizes: tuple[int, ...] = (8, 16, 32, 64, 128)  # one size per pyramid level
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)  # height / width; people are tall
    # A scene holds at most about ten instances, so a few hundred proposals are plenty.
    rpn_pre_nms_top_n_train: int = 600  # per pyramid level
    rpn_post_nms_top_n_train: int = 300
    rpn_pre_nms_top_n_test: int = 200
    rpn_post_nms_top_n_test: int = 100
    box_batch_size_per_image: int = 64  # sampled RoIs per image, a quarter of them positive
    box_detections_per_img: int = 50
    box_score_thresh: float = 0.05


def conv_bn_relu(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class BasicBlock(nn.Module):
    """ResNet's two-convolution residual block; a 1×1 projection when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.body = nn.Sequential(
            conv_bn_relu(cin, cout, stride),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.skip = nn.Identity()
        if stride != 1 or cin != cout:
            self.skip = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.skip(x))


class Trunk(nn.Sequential):
    """``Bx3xHxW`` -> four feature maps (children ``layer1``..``layer4``), the first at stride
    ``first_stride``, each next one at twice the stride.

    Children run in order, which is what torchvision's ``IntermediateLayerGetter`` expects.
    """

    def __init__(self, widths: tuple[int, ...], first_stride: int = 4):
        w1, w2, w3, w4 = widths
        super().__init__()
        if first_stride == 2:
            self.stem = conv_bn_relu(3, w1, 2)
        else:
            self.stem = nn.Sequential(conv_bn_relu(3, w1 // 2, 2), conv_bn_relu(w1 // 2, w1, 2))
        self.layer1 = BasicBlock(w1, w1)
        self.layer2 = nn.Sequential(BasicBlock(w1, w2, 2), BasicBlock(w2, w2))
        self.layer3 = nn.Sequential(BasicBlock(w2, w3, 2), BasicBlock(w3, w3))
        self.layer4 = nn.Sequential(BasicBlock(w3, w4, 2), BasicBlock(w4, w4))


class SceneMaskRCNN(MaskRCNN):
    """torchvision's ``MaskRCNN`` assembled from a ``MaskRCNNConfig``.

    Input/output follow torchvision's detection contract: a list of ``3xHxW float32`` images in
    [0, 1]; in training mode also a list of targets (``boxes`` ``Nx4 float32`` as
    ``(x0, y0, x1, y1)`` pixels, ``labels`` ``N int64``, ``masks`` ``NxHxW uint8``) and it
    returns a dict of losses; in eval mode a list of dicts with ``boxes`` ``Nx4 float32``,
    ``labels`` ``N int64``, ``scores`` ``N float32`` and ``masks`` ``Nx1xHxW float32``
    probabilities, all in the input image's pixels.
    """

    def __init__(self, **config):
        cfg = MaskRCNNConfig(**config)
        cfg.widths, cfg.anchor_sizes = tuple(cfg.widths), tuple(cfg.anchor_sizes)
        cfg.aspect_ratios, cfg.test_sizes = tuple(cfg.aspect_ratios), tuple(cfg.test_sizes)
        c = cfg.fpn_channels
        levels = ["0", "1", "2", "3"]
        norm = nn.BatchNorm2d if cfg.norm_heads else None
        backbone = BackboneWithFPN(
            Trunk(cfg.widths, cfg.first_stride),
            return_layers={f"layer{k + 1}": name for k, name in enumerate(levels)},
            in_channels_list=list(cfg.widths),
            out_channels=c,
            extra_blocks=LastLevelMaxPool(),  # a fifth, coarsest level for the largest anchors
            norm_layer=norm,
        )
        anchors = AnchorGenerator(
            sizes=tuple((s,) for s in cfg.anchor_sizes),
            aspect_ratios=(cfg.aspect_ratios,) * len(cfg.anchor_sizes),
        )
        super().__init__(
            backbone,
            min_size=cfg.min_size,
            max_size=cfg.max_size,
            rpn_anchor_generator=anchors,
            rpn_head=RPNHead(c, len(cfg.aspect_ratios)),
            rpn_pre_nms_top_n_train=cfg.rpn_pre_nms_top_n_train,
            rpn_post_nms_top_n_train=cfg.rpn_post_nms_top_n_train,
            rpn_pre_nms_top_n_test=cfg.rpn_pre_nms_top_n_test,
            rpn_post_nms_top_n_test=cfg.rpn_post_nms_top_n_test,
            box_roi_pool=MultiScaleRoIAlign(levels, output_size=7, sampling_ratio=2),
            box_head=TwoMLPHead(c * 7 * 7, cfg.representation),
            box_predictor=FastRCNNPredictor(cfg.representation, cfg.num_classes),
            box_batch_size_per_image=cfg.box_batch_size_per_image,
            box_detections_per_img=cfg.box_detections_per_img,
            box_score_thresh=cfg.box_score_thresh,
            mask_roi_pool=MultiScaleRoIAlign(levels, output_size=14, sampling_ratio=2),
            mask_head=MaskRCNNHeads(c, (cfg.mask_width,) * cfg.mask_convs, 1, norm_layer=norm),
            mask_predictor=MaskRCNNPredictor(cfg.mask_width, cfg.mask_width, cfg.num_classes),
        )
        self.config = cfg
        self.test_views = maskrcnn_views.make_views(self, cfg.test_sizes, cfg.test_mirror)

    def forward(self, images, targets=None):
        """torchvision's forward; in eval mode with test views, their fused result instead."""
        if self.training or not self.test_views:
            return super().forward(images, targets)
        limit = self.roi_heads.detections_per_img
        return [maskrcnn_views.predict(self, self.test_views, image, limit) for image in images]

    def config_dict(self) -> dict:
        """The config as JSON-ready keyword arguments of this class."""
        return config_dict(self.config)


@register_model(
    task="instances",
    weights="maskrcnn.safetensors",
    description="torchvision Mask R-CNN, small ResNet + FPN trunk, trained from scratch.",
    data="procedural street scenes (person, purse instances)",
)
def maskrcnn(**config) -> SceneMaskRCNN:
    return SceneMaskRCNN(**config)


@register_model(
    task="instances",
    checkpoints=("maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth",),
    download_url="https://download.pytorch.org/models/maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth",
    known_params=44_401_393,
    description="torchvision Mask R-CNN ResNet-50 FPN v1, COCO-trained (box AP 37.9, mask 34.6).",
    data="COCO train2017 (official torchvision checkpoint)",
)
def maskrcnn_resnet50_fpn_coco(**config) -> MaskRCNN:
    # weights=None: the registry loads the state dict itself (weights_only, offline first).
    return _tv_maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91, **config)


@register_model(
    task="instances",
    checkpoints=("maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth",),
    download_url="https://download.pytorch.org/models/maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth",
    known_params=46_359_409,
    description="torchvision Mask R-CNN ResNet-50 FPN v2, COCO-trained (box AP 47.4, mask 41.8).",
    data="COCO train2017 (official torchvision checkpoint)",
)
def maskrcnn_resnet50_fpn_v2_coco(**config) -> MaskRCNN:
    return _tv_maskrcnn_v2(weights=None, weights_backbone=None, num_classes=91, **config)


def class_names(name: str) -> tuple[str, ...]:
    """Detector label index -> class name for a registered Mask R-CNN."""
    return SCENE_CLASSES if name == "maskrcnn" else COCO_CATEGORIES
