"""An early-fusion click segmenter: the image, the clicks and the previous mask enter together.

SAM-style models (late fusion) embed the image once and let the clicks in only at a small
decoder; all grouping of pixels into objects must already be in the embedding. Here the
network reads ``6`` channels from its first layer on — RGB, a disk map of the positive clicks,
one of the negative clicks and the previous mask — so every layer can ask "is this pixel like
the ones the user clicked, and is there an edge between them?" at full resolution. That is the
design of RITM (Sofiiuk et al. 2022) and FocalClick (Chen et al. 2022). Each click costs a whole
forward pass, so the network is small and runs on a zoom-in crop of fixed working size.

The body is a UNet: a 3×3 stem at half resolution, five levels down to 1/32 (max pooling, two
3×3 convolutions with a residual sum from 1/8 on), a global-context vector at the bottom (an
object can fill the whole crop: the deepest level must see all of it), and a decoder that
upsamples and merges each skip back to 1/2, where a 1×1 convolution gives the logit; the logit
is upsampled bilinearly to the input size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from segdemo.models.unet import ConvBNReLU
from segdemo.registry import register_model

IN_CHANNELS = 6  # RGB, positive disks, negative disks, previous mask
MEAN = (0.485, 0.456, 0.406)  # RGB statistics the inputs are normalised with
STD = (0.229, 0.224, 0.225)


@dataclass
class ClickNetConfig:
    widths: tuple[int, ...] = (24, 48, 96, 128, 160)  # channels at 1/2, 1/4, 1/8, 1/16, 1/32
    working_size: int = 256  # long side of the crop the network runs on
    click_radius: float = 5.0  # disk radius at the working size, as RITM
    expand: float = 1.4  # zoom-in crop: the box around mask and clicks, widened this much


class Level(nn.Module):
    """Two 3×3 convolutions; the second adds back its input when ``residual``."""

    def __init__(self, cin: int, cout: int, residual: bool):
        super().__init__()
        self.first, self.second, self.residual = (
            ConvBNReLU(cin, cout),
            ConvBNReLU(cout, cout),
            residual,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first(x)
        return x + self.second(x) if self.residual else self.second(x)


class Merge(nn.Module):
    """Upsample the coarser map to the skip's size, concatenate, 1×1 to ``cout``, then 3×3.

    In eval mode the same function runs without the concatenation: the 1×1 convolution of
    ``[up(x), skip]`` is ``W_x·up(x) + W_skip·skip``, and ``W_x·up(x) = up(W_x·x)`` (both are
    linear, one mixing channels, the other pixels, whose weights sum to 1). So the coarse map
    is narrowed before it is upsampled, at a quarter of the pixels, and the concatenation of
    two channels-last maps, a slow copy, is never made.
    """

    def __init__(self, coarse: int, skip: int, cout: int):
        super().__init__()
        self.reduce = ConvBNReLU(coarse + skip, cout, kernel=1)
        self.refine = ConvBNReLU(cout, cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        if self.training:
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            return self.refine(self.reduce(torch.cat([x, skip], 1)))
        weight, bias = self.reduce.folded()
        coarse = x.shape[1]  # the first input channels of the 1×1 convolution are x's
        x = F.conv2d(x, weight[:, :coarse])
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        x = F.relu(x + F.conv2d(skip, weight[:, coarse:], bias), inplace=True)
        return self.refine(x)


class ClickNet(nn.Module):
    """``Bx6xHxW`` (normalised RGB, positive disks, negative disks, previous mask in [0, 1])
    -> ``Bx1xHxW`` mask logits, for any H and W."""

    def __init__(self, **config):
        super().__init__()
        self.config = ClickNetConfig(**config)
        widths = tuple(int(w) for w in self.config.widths)
        self.config.widths = widths
        self.stem = ConvBNReLU(IN_CHANNELS, widths[0], stride=2)
        ins = (widths[0], *widths[:-1])
        self.down = nn.ModuleList(
            Level(cin, cout, residual=k >= 2)
            for k, (cin, cout) in enumerate(zip(ins, widths, strict=True))
        )
        self.context = nn.Sequential(nn.Linear(widths[-1], widths[-1]), nn.ReLU(inplace=True))
        self.up = nn.ModuleList(
            Merge(widths[k + 1], widths[k], widths[k]) for k in reversed(range(len(widths) - 1))
        )
        self.head = nn.Conv2d(widths[0], 1, 1)
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1), persistent=False)

    @property
    def stride(self) -> int:
        return 2 ** len(self.config.widths)

    def normalise(self, rgb: torch.Tensor) -> torch.Tensor:
        """``Bx3xHxW`` floats in [0, 1] -> the network's RGB input."""
        return (rgb - self.mean) / self.std

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        h, w = inputs.shape[-2:]
        pad_h, pad_w = -h % self.stride, -w % self.stride
        x = F.pad(inputs, (0, pad_w, 0, pad_h))
        if not self.training:
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.stem(x)
        features = []
        for k, level in enumerate(self.down):
            x = level(x if k == 0 else F.max_pool2d(x, 2))
            features.append(x)
        x = x + self.context(x.mean((2, 3)))[..., None, None]
        for merge, skip in zip(self.up, reversed(features[:-1]), strict=True):
            x = merge(x, skip)
        logits = F.interpolate(self.head(x), scale_factor=2.0, mode="bilinear", align_corners=False)
        return logits[..., :h, :w]


@register_model(
    task="prompted",
    prompter="click",
    weights="click_net.safetensors",
    description="Early fusion: RGB, click disks and the previous mask enter one UNet together; "
    "every click runs it on a zoom-in crop (RITM's design), trained here from scratch.",
    data="procedural composites (shapes with photo and synthetic textures), flowers, scenes",
)
def click_net(**config) -> ClickNet:
    return ClickNet(**config)
