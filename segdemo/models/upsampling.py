"""Two ways back to full resolution: transposed convolution vs convolution + bilinear upsampling.

Both nets share one encoder design and differ only in how each decoder stage doubles the
resolution:

- ``transposed``: ``ConvTranspose2d(kernel 3, stride 2)``. The kernel size is not divisible by
  the stride, so output pixels receive unequal numbers of contributions: the checkerboard
  pattern of Odena et al., "Deconvolution and Checkerboard Artifacts" (2016).
- ``bilinear``: a 3×3 convolution at the low resolution, then fixed bilinear interpolation,
  which spreads every input evenly and cannot make a checkerboard.

The encoder pools twice (to 1/4) and widens its context with dilated convolutions, enough to
tell a flower from a flower-coloured blob by its shape. One skip connection hands the
full-resolution stem features to the head, so boundaries stay sharp; the head is pointwise
(1×1 convolutions), so whatever pattern the upsampling leaves reaches the output unsmoothed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from segdemo.registry import register_model

DOWNSAMPLING = 4  # the encoder's total stride


@dataclass
class UpsampleNetConfig:
    mode: str = "bilinear"  # "transposed" or "bilinear"
    width: int = 16


def conv_bn_relu(cin: int, cout: int, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class Encoder(nn.Module):
    """``Bxw x H x W`` stem features -> ``Bx4w x H/4 x W/4``, receptive field about 70 pixels."""

    def __init__(self, width: int):
        super().__init__()
        self.layers = nn.Sequential(
            nn.MaxPool2d(2),
            conv_bn_relu(width, 2 * width),
            conv_bn_relu(2 * width, 2 * width),
            nn.MaxPool2d(2),
            conv_bn_relu(2 * width, 4 * width),
            conv_bn_relu(4 * width, 4 * width, dilation=2),
            conv_bn_relu(4 * width, 4 * width, dilation=4),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class TransposedUp(nn.Sequential):
    """Doubles H and W with a learned 3×3, stride-2 transposed convolution."""

    def __init__(self, cin: int, cout: int):
        super().__init__(
            nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )


class BilinearUp(nn.Sequential):
    """A 3×3 convolution, then doubles H and W by fixed bilinear interpolation."""

    def __init__(self, cin: int, cout: int):
        super().__init__(
            conv_bn_relu(cin, cout),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
        )


class UpsampleNet(nn.Module):
    """``Bx3xHxW`` images in [0, 1] -> ``Bx1xHxW`` flower logits, for any H and W."""

    def __init__(self, mode: str = "bilinear", width: int = 16):
        super().__init__()
        if mode not in ("transposed", "bilinear"):
            raise ValueError(f"mode must be 'transposed' or 'bilinear', not {mode!r}")
        self.config = UpsampleNetConfig(mode, width)
        up = TransposedUp if mode == "transposed" else BilinearUp
        self.stem = nn.Sequential(conv_bn_relu(3, width), conv_bn_relu(width, width))
        self.encoder = Encoder(width)
        self.decoder = nn.Sequential(up(4 * width, 2 * width), up(2 * width, width))
        self.head = nn.Sequential(
            nn.Conv2d(2 * width, width, 1), nn.ReLU(inplace=True), nn.Conv2d(width, 1, 1)
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        h, w = images.shape[-2:]
        # Pad to a multiple of the stride so that decoding returns exactly the input size.
        pad_h, pad_w = -h % DOWNSAMPLING, -w % DOWNSAMPLING
        x = F.pad(images, (0, pad_w, 0, pad_h), mode="replicate")
        stem = self.stem(x)
        upsampled = self.decoder(self.encoder(stem))
        logits = self.head(torch.cat([upsampled, stem], dim=1))
        return logits[..., :h, :w]


@register_model(
    task="upsampling",
    weights="upsample_transposed.safetensors",
    description="Encoder + decoder that upsamples with 3×3 stride-2 transposed convolutions.",
    data="procedural flowers, full masks",
)
def upsample_transposed(**config) -> UpsampleNet:
    return UpsampleNet(**{"mode": "transposed", **config})


@register_model(
    task="upsampling",
    weights="upsample_bilinear.safetensors",
    description="The same encoder + decoder, upsampling by a convolution then bilinear.",
    data="procedural flowers, full masks",
)
def upsample_bilinear(**config) -> UpsampleNet:
    return UpsampleNet(**{"mode": "bilinear", **config})
