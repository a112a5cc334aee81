"""Segmentation as image classification: a convnet that labels a 32×32 patch flower / not flower.

The network uses only unpadded ("valid") convolutions and two 2×2 max-poolings, so a 32×32
patch shrinks to a 5×5 feature map that a dense (Linear) head classifies. Turning that dense
layer into a 5×5 convolution with the same weights (``to_fully_convolutional``) gives a net that
slides the classifier over an image of any size in one pass: output cell ``(i, j)`` is exactly
the classifier's answer for the patch whose top-left corner is ``(4i, 4j)``, so an ``H×W`` image
gives an ``(⌊(H-4)/2⌋-4)/2 - 4``-ish map, about 4× smaller than the input.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from segdemo.registry import register_model

PATCH = 32  # the classifier's input window, in pixels
STRIDE = 4  # two 2×2 poolings: neighbouring output cells are 4 input pixels apart


@dataclass
class PatchClassifierConfig:
    width: int = 24  # channels of the first stage; the second has twice as many
    hidden: int = 64  # units of the dense layer


def _conv(cin: int, cout: int, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class PatchClassifier(nn.Module):
    """``Bx3x32x32`` float patches in [0, 1] -> ``Bx1`` logits (flower vs not flower)."""

    def __init__(self, width: int = 24, hidden: int = 64):
        super().__init__()
        self.config = PatchClassifierConfig(width, hidden)
        self.features = nn.Sequential(
            _conv(3, width),
            _conv(width, width),
            nn.MaxPool2d(2),  # 32 -> 28 -> 14
            _conv(width, 2 * width),
            _conv(2 * width, 2 * width),
            nn.MaxPool2d(2),  # 14 -> 10 -> 5
        )
        self.feature_side = 5
        self.dense = nn.Linear(2 * width * self.feature_side**2, hidden)
        self.classify = nn.Linear(hidden, 1)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        features = self.features(patches).flatten(1)
        return self.classify(torch.relu(self.dense(features)))

    def to_fully_convolutional(self) -> FullyConvolutionalClassifier:
        """The same classifier as a fully convolutional net: dense layers become convolutions."""
        return FullyConvolutionalClassifier(self)


class FullyConvolutionalClassifier(nn.Module):
    """``Bx3xHxW`` images (H, W >= 32) -> ``Bx1xH'xW'`` logits, one per 32×32 window at stride 4.

    It shares the feature layers with the dense classifier and copies the dense weights into
    convolutions: a Linear over a flattened ``C×5×5`` map is a 5×5 convolution, and the Linear
    after it is a 1×1 convolution.
    """

    def __init__(self, dense: PatchClassifier):
        super().__init__()
        self.features = dense.features
        channels = dense.dense.in_features // dense.feature_side**2
        side = dense.feature_side
        device = dense.dense.weight.device  # the new layers live where the shared ones do
        self.dense = nn.Conv2d(channels, dense.dense.out_features, side, device=device)
        self.classify = nn.Conv2d(dense.classify.in_features, 1, 1, device=device)
        with torch.no_grad():
            self.dense.weight.copy_(dense.dense.weight.view(-1, channels, side, side))
            self.dense.bias.copy_(dense.dense.bias)
            self.classify.weight.copy_(dense.classify.weight.view(1, -1, 1, 1))
            self.classify.bias.copy_(dense.classify.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classify(torch.relu(self.dense(self.features(images))))


def output_size(side: int) -> int:
    """Length of the output map along an input side of ``side`` pixels."""
    side = (side - 4) // 2  # two 3×3 valid convs, then 2×2 pooling
    side = (side - 4) // 2
    return side - 4  # the 5×5 convolution that was the dense layer


@register_model(
    task="classification-as-segmentation",
    weights="patch_classifier.safetensors",
    description="Convnet trained on 32×32 patches (flower or not), run fully convolutionally.",
    data="procedural flowers, 32×32 patches",
)
def patch_classifier(**config) -> PatchClassifier:
    return PatchClassifier(**config)
