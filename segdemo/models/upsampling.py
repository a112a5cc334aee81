"""Two ways back to full resolution: transposed convolution vs convolution + bilinear upsampling.

Both nets share one encoder design (a 2×2 pooling, then dilated convolutions that see about 70
pixels of context at 1/2 resolution) and differ only in how the decoder doubles the resolution:

- ``transposed``: ``ConvTranspose2d(kernel 3, stride 2)``. The kernel size is not divisible by
  the stride, so output pixels receive unequal numbers of contributions: the checkerboard
  pattern of Odena et al., "Deconvolution and Checkerboard Artifacts" (2016).
- ``bilinear``: a 3×3 convolution at the low resolution, then fixed bilinear interpolation,
  which spreads every input evenly and cannot make a checkerboard.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from segdemo.registry import register_model

DOWNSAMPLING = 2  # the encoder's total stride


@dataclass
class UpsampleNetConfig:
    mode: str = "bilinear"  # "transposed" or "bilinear"
    width: int = 20


def conv_bn_relu(cin: int, cout: int, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class Encoder(nn.Module):
    """``Bx3xHxW`` -> ``Bx2w x H/2 x W/2`` features with a receptive field of about 70 pixels.

    Dilated convolutions widen the context without further pooling: a flower must be told
    from a flower-coloured blob by its shape, yet the decoder has no skip connections, so every
    detail of the boundary has to survive in these half-resolution features.
    """

    def __init__(self, width: int):
        super().__init__()
        self.layers = nn.Sequential(
            conv_bn_relu(3, width),
            conv_bn_relu(width, width),
            nn.MaxPool2d(2),
            conv_bn_relu(width, 2 * width),
            conv_bn_relu(2 * width, 2 * width, dilation=2),
            conv_bn_relu(2 * width, 2 * width, dilation=4),
            conv_bn_relu(2 * width, 2 * width, dilation=8),
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

    def __init__(self, mode: str = "bilinear", width: int = 20):
        super().__init__()
        if mode not in ("transposed", "bilinear"):
            raise ValueError(f"mode must be 'transposed' or 'bilinear', not {mode!r}")
        self.config = UpsampleNetConfig(mode, width)
        up = TransposedUp if mode == "transposed" else BilinearUp
        self.encoder = Encoder(width)
        self.decoder = up(2 * width, width)
        self.head = nn.Conv2d(width, 1, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        h, w = images.shape[-2:]
        # Pad to a multiple of the stride so that decoding returns exactly the input size.
        pad_h, pad_w = -h % DOWNSAMPLING, -w % DOWNSAMPLING
        x = F.pad(images, (0, pad_w, 0, pad_h), mode="replicate")
        logits = self.head(self.decoder(self.encoder(x)))
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
