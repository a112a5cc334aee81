"""Trainer for ``sam_tiny``: SAM's interactive recipe on procedural images, from scratch.

Every step draws fresh images (dead-leaves composites, flowers, street scenes) and a few
objects in each, then plays SAM's simulated user (Kirillov et al. 2023, §3 and appendix A):

1. The first prompt is a click inside the object (three masks out, the loss on the best) or
   a noisy box around it (one mask out).
2. Each further round adds a click in the current error region — positive in a missed part,
   negative in a spill — and feeds the previous round's low-resolution logits back as the
   mask prompt; from now on the model gives one mask.
3. The mask loss is binary cross-entropy plus Dice on the logits upsampled to the image, the
   IoU head learns each mask's actual IoU (mean squared error).

The loss is taken on the first two rounds and the last; the rounds in between (a random
number per step, up to ``max_clicks`` clicks in all) run without gradients, only to reach
the states a user's later clicks create, which keeps the step cheap. The first
``first_click_steps`` steps play the first round only: until a click is localised at all,
corrections teach nothing, and these steps cost a third.

Two aids make this learnable from scratch in an hour of CPU rather than SAM's thousands of
GPU-days: the decoder's cross-attentions start with equal query and key projections
(``sam_tiny.align_cross_attention``), and an auxiliary loss asks the image embedding to
make cells of one object look alike (``grouping_loss``), so attention can find the clicked
object by similarity.

Image sizes vary per step (256, 384, 512 squares, with the number of images per step scaled
so that every step costs about the same). A crop smaller than the model's 512 input is treated
as a window of it: the dense positional encoding is sliced at a random token offset and the
prompts are shifted to match, so every position of the 32×32 grid is trained.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from segment_anything.modeling import Sam
from torch import nn

from segdemo.clicks import sample_click
from segdemo.models.sam_tiny import PATCH
from segdemo.tasks.sam_prompter import SamPrompter
from segdemo.train.interactive import (
    SOURCES,
    Interactive,
    candidates,
    mask_losses,
    object_ids,
    pick_targets,
    train_interactive,
)
from segdemo.train.loop import Run
from segdemo.weights import config_dict


@dataclass(frozen=True)
class Recipe:
    steps: int = 3000
    lr: float = 6e-4
    warmup: int = 100
    weight_decay: float = 0.01
    pixels_per_step: int = 8 * 256 * 256  # images per step = this // size²
    sizes: tuple[int, ...] = (256, 384, 512)
    size_odds: tuple[float, ...] = (0.4, 0.3, 0.3)
    source_odds: tuple[float, float, float] = (0.6, 0.2, 0.2)  # composites, flowers, scenes
    objects_per_image: int = 3
    max_clicks: int = 12
    first_click_steps: int = 900  # a cheap start: only the first prompt, no corrections yet
    box_start: float = 0.3  # share of steps whose first prompt is a box
    part_target: float = 0.25  # how often a multi-part object's target is one of its parts
    min_area: float = 0.001  # smallest object, as a share of the image
    grouping: float = 0.15  # weight of the auxiliary grouping loss on the image embedding


RECIPE = Recipe()


@dataclass
class Batch:
    """One step's data. ``images`` ``Bx3xSxS float32`` in 0..255; ``targets`` ``NxSxS bool``
    (numpy, N = B × objects), ``owner`` ``N`` image index of each target."""

    images: torch.Tensor
    targets: np.ndarray
    owner: torch.Tensor
    offset: tuple[int, int]  # token offset (row, col) of the crop inside the model's grid
    groups: torch.Tensor  # BxGxG object id under each embedding cell's centre
    rounds: int
    box_start: bool
    seed: int


def make_batch(step: int, recipe: Recipe = RECIPE, grid: int = 32) -> Batch:
    """The data of step ``step``: a pure function of the step, so resuming changes nothing."""
    rng = np.random.default_rng([11, step])
    size = int(rng.choice(recipe.sizes, p=recipe.size_odds))
    images, targets, owner, groups, tries = [], [], [], [], 0
    while len(images) < max(1, recipe.pixels_per_step // size**2):
        source = SOURCES[rng.choice(3, p=recipe.source_odds)]
        image, objects = candidates(rng, source, step * 64 + tries, size)
        tries += 1
        picked = pick_targets(rng, objects, recipe.objects_per_image, recipe)
        if picked:
            owner += [len(images)] * len(picked)
            images.append(image)
            targets += picked
            groups.append(object_ids(objects)[PATCH // 2 :: PATCH, PATCH // 2 :: PATCH])
    g = size // PATCH
    rounds = int(rng.integers(1, recipe.max_clicks + 1))
    return Batch(
        images=torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float(),
        targets=np.stack(targets),
        owner=torch.tensor(owner),
        groups=torch.from_numpy(np.stack(groups)).long(),
        offset=(int(rng.integers(0, grid - g + 1)), int(rng.integers(0, grid - g + 1))),
        rounds=1 if step < recipe.first_click_steps else rounds,
        box_start=bool(rng.uniform() < recipe.box_start),
        seed=step,
    )


def noisy_boxes(rng: np.random.Generator, targets: np.ndarray) -> np.ndarray:
    """``Nx4`` (x0, y0, x1, y1): each target's box, corners moved by 10% of its sides (≤ 20 px)."""
    boxes = []
    for mask in targets:
        ys, xs = np.nonzero(mask)
        box = np.array([xs.min(), ys.min(), xs.max(), ys.max()], np.float64)
        w, h = box[2] - box[0] + 1, box[3] - box[1] + 1
        noise = rng.normal(0, 0.1, 4) * np.array([w, h, w, h])
        boxes.append(box + np.clip(noise, -20, 20))
    size = targets.shape[-1] - 1
    return np.clip(np.array(boxes), 0, size)


def grouping_loss(embeddings: torch.Tensor, groups: torch.Tensor, temperature: float = 0.1):
    """Make the embeddings of cells on one object alike and those of other objects unlike.

    ``embeddings`` ``BxCxGxG``, ``groups`` ``BxGxG`` object ids. Supervised contrastive loss
    (Khosla et al. 2020) on cosine similarities: every cell should pick the cells of its own
    object out of all the image's cells. The decoder finds an object by attention, whose
    logits start out as similarities (``sam_tiny.align_cross_attention``), so an embedding in
    which an object's cells look alike is one the decoder can use from the first steps.
    Cells that are alone on their object have no partner and do not count.
    """
    f = F.normalize(embeddings.flatten(2), dim=1)  # B x C x T
    similarity = f.transpose(1, 2) @ f / temperature  # B x T x T
    itself = torch.eye(similarity.shape[-1], dtype=torch.bool, device=similarity.device)
    similarity = similarity.masked_fill(itself, -1e4)  # a cell is not its own partner
    log_odds = similarity - torch.logsumexp(similarity, dim=-1, keepdim=True)
    ids = groups.flatten(1)
    partners = ((ids[:, :, None] == ids[:, None, :]) & ~itself).float()
    count = partners.sum(-1)
    per_cell = -(log_odds * partners).sum(-1) / count.clamp(min=1)
    return per_cell[count > 0].mean()


class InteractiveTrainer(nn.Module):
    """Wraps a ``Sam``; ``forward(batch)`` plays the simulated user and returns the loss."""

    def __init__(self, sam: Sam, grouping: float = RECIPE.grouping):
        super().__init__()
        self.sam, self.grouping = sam, grouping

    def decode(self, embeddings, pe, shift, points, labels, boxes, mask_input, multimask):
        """The package's prompt encoder and mask decoder on ``N`` prompts of ``N`` images.

        ``MaskDecoder`` repeats one image's embedding for all prompts; prompts of different
        images are batched by handing it a zero embedding and adding each prompt's own image
        embedding to its dense prompt embedding, which the decoder adds to the image
        embedding anyway (``src = image_embedding + dense``).
        """
        g = embeddings.shape[-1]
        sparse, dense = self.sam.prompt_encoder(
            points=None if points is None else (points + shift, labels),
            boxes=None if boxes is None else boxes + shift.repeat(2),
            masks=mask_input,
        )
        return self.sam.mask_decoder(
            image_embeddings=embeddings.new_zeros(1, *embeddings.shape[1:]),
            image_pe=pe,
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense[..., :g, :g] + embeddings,
            multimask_output=multimask,
        )

    @staticmethod
    def click(rng, truth: np.ndarray, prediction: np.ndarray | None) -> tuple[float, float, int]:
        """A simulated click on half-resolution masks, as ``(x, y, label)`` in full pixels.

        A perfect mask gets a "not a point" (label -1), so every prompt keeps the same shape.
        """
        c = sample_click(rng, truth, prediction)
        if c is None:
            return (0.0, 0.0, -1)
        return (2 * c.x + 0.5, 2 * c.y + 0.5, c.label)

    def forward(self, batch: Batch) -> torch.Tensor:
        sam, rng = self.sam, np.random.default_rng([12, batch.seed])
        device = sam.pixel_mean.device
        pixels = (batch.images.to(device) - sam.pixel_mean) / sam.pixel_std
        per_image = sam.image_encoder(pixels)
        embeddings = per_image[batch.owner.to(device)]
        g, (oy, ox) = embeddings.shape[-1], batch.offset
        pe = sam.prompt_encoder.get_dense_pe()[:, :, oy : oy + g, ox : ox + g]
        shift = torch.tensor([ox * PATCH, oy * PATCH], dtype=torch.float32, device=device)
        truth = batch.targets
        targets = torch.from_numpy(truth).float().to(device)
        n, size = len(truth), truth.shape[-1]
        coarse = truth[:, ::2, ::2]  # clicks are placed on a half-resolution grid: 4× cheaper
        clicks: list[list[tuple[float, float, int]]] = [[] for _ in range(n)]
        boxes = None
        if batch.box_start:
            boxes = torch.from_numpy(noisy_boxes(rng, truth)).float().to(device)
        else:
            for i in range(n):
                clicks[i].append(self.click(rng, coarse[i], None))
        mask_input, losses = None, []
        grad_rounds = {0, 1, batch.rounds - 1}
        for r in range(batch.rounds):
            points = labels = None
            if clicks[0]:
                arr = torch.tensor(clicks, dtype=torch.float32, device=device)  # N x clicks x 3
                points, labels = arr[..., :2], arr[..., 2].long()
            multimask = r == 0 and boxes is None
            with torch.set_grad_enabled(r in grad_rounds and torch.is_grad_enabled()):
                low, iou_pred = self.decode(
                    embeddings, pe, shift, points, labels, boxes, mask_input, multimask
                )
                if r in grad_rounds:
                    up = F.interpolate(low, (size, size), mode="bilinear", align_corners=False)
                    loss, actual = mask_losses(up, targets)
                    best = loss.argmin(1)
                    losses.append(loss[torch.arange(n), best].mean())
                    losses.append(F.mse_loss(iou_pred, actual))
            chosen = iou_pred.argmax(1)  # what a user of the app would see
            mask_input = low[torch.arange(n), chosen].detach()[:, None]
            if r + 1 < batch.rounds:
                half = F.interpolate(mask_input, (size // 2, size // 2), mode="bilinear")
                prediction = (half[:, 0] > 0).cpu().numpy()
                for i in range(n):
                    clicks[i].append(self.click(rng, coarse[i], prediction[i]))
        loss = torch.stack(losses).sum() / len(grad_rounds)
        if self.grouping:
            loss = loss + self.grouping * grouping_loss(per_image, batch.groups.to(device))
        return loss


def train(name: str, run: Run) -> dict:
    """Train ``sam_tiny`` from scratch (or resume), validate it, and write its weights file."""
    parts = Interactive(
        trainer=lambda model: InteractiveTrainer(model, RECIPE.grouping),
        batch=make_batch,
        prompter=SamPrompter,
        shipped=half_precision,
        config=config_dict,
    )
    data = {
        "description": "procedural composites, flowers and street scenes with simulated "
        "clicks and boxes (fresh every step)",
        "sizes": list(RECIPE.sizes),
    }
    return train_interactive(name, run, RECIPE, parts, data)


def half_precision(model: Sam) -> Sam:
    """A float16 copy for shipping (half the file); loading casts back to float32.

    The prompt encoder's random Fourier matrix stays float32: it is a fixed buffer the trained
    weights depend on exactly, and it is tiny.
    """
    shipped = copy.deepcopy(model).half()
    shipped.prompt_encoder.pe_layer.float()
    return shipped
