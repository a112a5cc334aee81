"""UNet for the street scenes, and the same hourglass without its skip connections.

Both nets halve the resolution four times (2×2 max pooling) while widening the features, then
double it four times (bilinear interpolation) back to the input size and end in a 1×1
convolution that gives one score per class at every pixel. ``UNet`` concatenates, at each
decoder level, the encoder's features of the same resolution: the "skip connection" that
hands the decoder the fine detail (exact edges, thin straps, small purses) that pooling threw
away. ``UNet(skips=False)`` has the same levels and widths but decodes from the bottleneck
alone, so every boundary it draws has to be reconstructed from a 16× coarser map.

Most of the layers run at low resolution, where a 3×3 convolution costs little: a level with
half the side has a quarter of the pixels, so doubling its width keeps its cost flat. The
full-resolution level is kept narrow (8 channels) because it is the most expensive per channel.
For inference (eval mode) each batch norm is folded into the convolution before it and the
features are kept channels-last, the layout oneDNN's CPU convolutions run fastest on; training
runs the plain layers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from segdemo.registry import register_model

NUM_CLASSES = 6  # segdemo.data.scenes.CLASS_NAMES


@dataclass
class UNetConfig:
    widths: tuple[int, ...] = (8, 16, 32, 64, 128)  # channels at full, 1/2, 1/4, ... resolution
    skips: bool = True
    classes: int = NUM_CLASSES


class ConvBNReLU(nn.Sequential):
    """Convolution (no bias), batch norm, ReLU; in eval mode the norm is folded into the conv.

    Folding gives the same function with one pass over the feature map instead of two:
    ``bn(conv(x)) = conv(x; w·s) + (β - μ·s)`` with ``s = γ / sqrt(σ² + ε)``.
    """

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1):
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv, bn = self[0], self[1]
        if self.training:
            return F.relu(bn(conv(x)), inplace=True)
        weight, bias = self.folded()
        return F.relu(F.conv2d(x, weight, bias, conv.stride, conv.padding), inplace=True)

    def folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The convolution's weight and bias with the norm folded in (eval mode's).

        Without gradients they are kept until a parameter or statistic changes: a tensor's
        ``_version`` counts its in-place changes (loading weights, an optimiser's step), and
        its storage changes when it moves (``.to``). Folding anew at every call costs about as
        much as a small convolution. Tensors made in inference mode count no changes, so a
        model built there folds at every call."""
        conv, bn = self[0], self[1]
        tensors = (conv.weight, bn.weight, bn.bias, bn.running_mean, bn.running_var)
        if torch.is_grad_enabled() or any(t.is_inference() for t in tensors):
            return self._fold()
        key = tuple((id(t), t.data_ptr(), t._version) for t in tensors)
        kept = getattr(self, "_kept_fold", None)  # one attribute: threads share the module
        if kept is None or kept[0] != key:
            kept = self._kept_fold = (key, self._fold())
        return kept[1]

    def _fold(self) -> tuple[torch.Tensor, torch.Tensor]:
        conv, bn = self[0], self[1]
        scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
        return conv.weight * scale[:, None, None, None], bn.bias - bn.running_mean * scale


def double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(ConvBNReLU(cin, cout), ConvBNReLU(cout, cout))


class Up(nn.Module):
    """Doubles the resolution: 1×1 conv to the skip's width, bilinear ×2, (concat), 3×3 convs."""

    def __init__(self, cin: int, cout: int, skip: bool):
        super().__init__()
        self.skip = skip
        self.reduce = ConvBNReLU(cin, cout, kernel=1)  # narrow first: cheaper upsampling
        self.fuse = double_conv(2 * cout if skip else cout, cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(
            self.reduce(x), size=skip.shape[-2:], mode="bilinear", align_corners=False
        )
        if self.skip:
            x = torch.cat([x, skip], dim=1)
        return self.fuse(x)


class UNet(nn.Module):
    """``Bx3xHxW`` images in [0, 1] -> ``Bx(classes)xHxW`` logits, for any H and W >= 1."""

    def __init__(self, widths=(8, 16, 32, 64, 128), skips: bool = True, classes: int = NUM_CLASSES):
        super().__init__()
        widths = tuple(int(w) for w in widths)  # a JSON round trip turns the tuple into a list
        if len(widths) < 2:
            raise ValueError(f"a UNet needs at least two levels, got widths={widths}")
        self.config = UNetConfig(widths, bool(skips), int(classes))
        ins = (3, *widths[:-1])
        self.down = nn.ModuleList(
            double_conv(cin, cout) for cin, cout in zip(ins, widths, strict=True)
        )
        self.up = nn.ModuleList(
            Up(widths[k + 1], widths[k], skips) for k in reversed(range(len(widths) - 1))
        )
        self.head = nn.Conv2d(widths[0], classes, 1)

    @property
    def stride(self) -> int:
        """Total downsampling of the bottleneck: inputs are padded to a multiple of this."""
        return 2 ** (len(self.config.widths) - 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        h, w = images.shape[-2:]
        # Pad to a multiple of the stride so every pooling halves exactly and the decoder's
        # maps line up with the encoder's; the padding is cropped off the logits at the end.
        pad_h, pad_w = -h % self.stride, -w % self.stride
        x = F.pad(images, (0, pad_w, 0, pad_h), mode="replicate")
        if not self.training:
            x = x.contiguous(memory_format=torch.channels_last)
        features = []
        for k, block in enumerate(self.down):
            x = block(x if k == 0 else F.max_pool2d(x, 2))
            features.append(x)
        for up, skip in zip(self.up, reversed(features[:-1]), strict=True):
            x = up(x, skip)
        return self.head(x)[..., :h, :w]


DATA = "procedural street scenes (6 classes), 128×160 crops of fresh scenes"


@register_model(
    task="semantic",
    weights="unet.safetensors",
    description="UNet: 4 poolings down, 4 bilinear upsamplings back, skip connections at "
    "every level; cross-entropy at every pixel.",
    data=DATA,
)
def unet(**config) -> UNet:
    return UNet(**{"skips": True, **config})


@register_model(
    task="semantic",
    weights="unet_noskip.safetensors",
    description="The same hourglass without skip connections: the decoder sees only the "
    "1/16-resolution bottleneck.",
    data=DATA,
)
def unet_noskip(**config) -> UNet:
    return UNet(**{"skips": False, **config})
