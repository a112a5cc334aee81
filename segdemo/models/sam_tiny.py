"""Promptable segmentation: a small SAM trained here, and the official SAM checkpoints.

``sam_tiny`` is a real ``segment_anything.modeling.Sam``: the package's own prompt encoder,
two-way transformer and mask decoder, behind a small convolutional image encoder. Because it
is a ``Sam``, ``SamPredictor`` and ``SamAutomaticMaskGenerator`` drive it unchanged, and the
app uses one code path for it and for the official ViT checkpoints.

The image encoder maps a ``Bx3xSxS`` normalised, padded image (``S = img_size``) to a
``Bx256x(S/16)x(S/16)`` embedding, the contract of SAM's ViT encoder:

- a 4×4 patch stem and a pyramid (1/4 ... 1/16) of ConvNeXt-style depthwise-separable blocks,
  plus a 1/32 stage whose wider view tells the decoder how far an object reaches;
- a neck that gives every 16×16 cell its own fine detail: the 1/4 and 1/8 features are folded
  into channels (pixel unshuffle), so a boundary's position inside a cell survives in the
  embedding — the decoder's upsampling sees only this 1/16 map.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from segment_anything import sam_model_registry
from segment_anything.modeling import MaskDecoder, PromptEncoder, Sam, TwoWayTransformer
from torch import nn

from segdemo.registry import register_model

EMBED_DIM = 256  # SAM's prompt and embedding width: fixed by the prompt encoder and decoder
PATCH = 16  # embedding stride, as SAM's ViT patch size


@dataclass
class SamTinyConfig:
    img_size: int = 512  # long side of the encoder input; the embedding is img_size/16 square
    widths: tuple[int, ...] = (48, 96, 192, 320)  # channels at 1/4, 1/8, 1/16, 1/32
    depths: tuple[int, ...] = (1, 2, 4, 2)  # blocks per stage
    kernel: int = 5  # depthwise kernel of the blocks
    detail: int = 16  # channels of the 1/4 and 1/8 features folded into each 1/16 cell
    decoder_mlp_dim: int = 1024  # SAM uses 2048; the MLP runs on a few tokens only
    # Cross-attention in 64 channels (SAM: 128), still 16 per head as in SAM: the attention's
    # projections run on every image token, and halving them keeps a click under 20 ms.
    decoder_heads: int = 4
    attention_downsample: int = 4
    mask_in_chans: int = 16
    qk_gain: float = 3.0  # initial scale of the aligned cross-attention projections (see below)


class ChannelNorm(nn.Module):
    """LayerNorm over the channels of a ``BxCxHxW`` tensor (a view when channels-last)."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class Block(nn.Module):
    """ConvNeXt-style residual: depthwise k×k, LayerNorm, MLP (×2) on channels, GELU."""

    def __init__(self, dim: int, kernel: int):
        super().__init__()
        self.dw = nn.Conv2d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.up = nn.Linear(dim, 2 * dim)
        self.down = nn.Linear(2 * dim, dim)
        # Start every block near identity, so the stack trains from scratch without warm-up
        # tricks (ConvNeXt's layer scale, folded into the last layer's initial weights).
        nn.init.normal_(self.down.weight, std=0.02)
        nn.init.zeros_(self.down.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dw(x).permute(0, 2, 3, 1)  # channels-last: Linear layers act on channels
        y = self.down(F.gelu(self.up(self.norm(y))))
        return x + y.permute(0, 3, 1, 2)


class TinyImageEncoder(nn.Module):
    """``Bx3xSxS`` float (normalised, padded) -> ``Bx256x(S/16)x(S/16)`` image embedding.

    Works on any input whose sides are multiples of 32 (training uses crops).
    """

    def __init__(self, config: SamTinyConfig):
        super().__init__()
        if config.img_size % (2 * PATCH):
            raise ValueError(f"img_size must be a multiple of {2 * PATCH}, got {config.img_size}")
        self.img_size = config.img_size
        w, k = config.widths, config.kernel
        self.stem = nn.Sequential(nn.Conv2d(3, w[0], 4, stride=4), ChannelNorm(w[0]))
        self.stages = nn.ModuleList()
        for i, (width, depth) in enumerate(zip(w, config.depths, strict=True)):
            down = [] if i == 0 else [ChannelNorm(w[i - 1]), nn.Conv2d(w[i - 1], width, 2, 2)]
            self.stages.append(nn.Sequential(*down, *[Block(width, k) for _ in range(depth)]))
        d = config.detail
        self.detail4 = nn.Conv2d(w[0], d, 1)  # 1/4 -> unshuffle 4 -> 16·d channels at 1/16
        self.detail8 = nn.Conv2d(w[1], d, 1)  # 1/8 -> unshuffle 2 -> 4·d channels at 1/16
        # SAM's neck (1×1 to 256, LayerNorm, 3×3, LayerNorm), its 3×3 made depthwise.
        self.neck = nn.Sequential(
            nn.Conv2d(w[2] + w[3] + 16 * d + 4 * d, EMBED_DIM, 1, bias=False),
            ChannelNorm(EMBED_DIM),
            nn.Conv2d(EMBED_DIM, EMBED_DIM, 3, padding=1, groups=EMBED_DIM, bias=False),
            ChannelNorm(EMBED_DIM),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x.contiguous(memory_format=torch.channels_last))  # faster convs on CPU
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        f4, f8, f16, f32 = feats
        fused = torch.cat(
            [
                f16,
                F.interpolate(f32, size=f16.shape[-2:], mode="nearest"),
                F.pixel_unshuffle(self.detail4(f4), 4),
                F.pixel_unshuffle(self.detail8(f8), 2),
            ],
            dim=1,
        )
        return self.neck(fused)


def build_sam_tiny(config: SamTinyConfig) -> Sam:
    """A ``Sam`` with the tiny encoder and SAM's prompt encoder and mask decoder."""
    grid = config.img_size // PATCH
    sam = Sam(
        image_encoder=TinyImageEncoder(config),
        prompt_encoder=PromptEncoder(
            embed_dim=EMBED_DIM,
            image_embedding_size=(grid, grid),
            input_image_size=(config.img_size, config.img_size),
            mask_in_chans=config.mask_in_chans,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=2,
                embedding_dim=EMBED_DIM,
                mlp_dim=config.decoder_mlp_dim,
                num_heads=config.decoder_heads,
                attention_downsample_rate=config.attention_downsample,
            ),
            transformer_dim=EMBED_DIM,
            iou_head_depth=3,
            iou_head_hidden_dim=256,
        ),
    )
    align_cross_attention(sam.mask_decoder.transformer, config.qk_gain)
    sam.config = config  # saved with the weights, so the file rebuilds its own model
    return sam


@torch.no_grad()
def align_cross_attention(transformer: TwoWayTransformer, gain: float) -> None:
    """Initialise every cross-attention with equal query and key projections (times ``gain``).

    The decoder can only find the clicked place by attention: a point token is its position's
    Fourier code, image tokens carry theirs, and the attention logit ``q·k`` must be large where
    the two codes (and the contents) match. With independent random projections that match
    has to be learned from nothing, and with a few thousand masks instead of SAM's billion
    training stalls at a constant mask. With ``W_q = W_k`` the logit starts out as a similarity
    (``x_q^T W^T W x_k``), so clicks are localised from the first step; training refines it.
    """
    modules = [transformer.final_attn_token_to_image]
    for layer in transformer.layers:
        modules += [layer.cross_attn_token_to_image, layer.cross_attn_image_to_token]
    for attention in modules:
        attention.q_proj.weight.mul_(gain)
        attention.k_proj.weight.copy_(attention.q_proj.weight)
        attention.q_proj.bias.zero_()
        attention.k_proj.bias.zero_()


@register_model(
    task="prompted",
    prompter="sam",
    weights="sam_tiny.safetensors",
    description="SAM's prompt encoder and mask decoder behind a small convolutional image "
    "encoder (512 px input, 32×32 embedding); trained from scratch, class-agnostic.",
    data="procedural dead-leaves composites, flowers and street scenes; simulated clicks/boxes",
)
def sam_tiny(**config) -> Sam:
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}
    return build_sam_tiny(SamTinyConfig(**fields))


_OFFICIAL = "Meta's Segment Anything ({}), trained on SA-1B; 1024 px input, 64×64 embedding."
_URL = "https://dl.fbaipublicfiles.com/segment_anything/"


@register_model(
    task="prompted",
    prompter="sam",
    description=_OFFICIAL.format("ViT-B"),
    checkpoints=("sam_vit_b_01ec64.pth",),
    download_url=_URL + "sam_vit_b_01ec64.pth",
    known_params=93_735_472,
    data="SA-1B (11M images, 1.1B masks)",
)
def sam_vit_b() -> Sam:
    return sam_model_registry["vit_b"](checkpoint=None)


@register_model(
    task="prompted",
    prompter="sam",
    description=_OFFICIAL.format("ViT-L"),
    checkpoints=("sam_vit_l_0b3195.pth",),
    download_url=_URL + "sam_vit_l_0b3195.pth",
    known_params=312_342_832,
    data="SA-1B (11M images, 1.1B masks)",
)
def sam_vit_l() -> Sam:
    return sam_model_registry["vit_l"](checkpoint=None)


@register_model(
    task="prompted",
    prompter="sam",
    description=_OFFICIAL.format("ViT-H"),
    checkpoints=("sam_vit_h_4b8939.pth",),
    download_url=_URL + "sam_vit_h_4b8939.pth",
    known_params=641_090_608,
    data="SA-1B (11M images, 1.1B masks)",
)
def sam_vit_h() -> Sam:
    return sam_model_registry["vit_h"](checkpoint=None)
