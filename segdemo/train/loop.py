"""The training loop every shipped model uses: deterministic, resumable, with a progress bar.

A trainer supplies ``batch(step) -> (inputs, targets)`` (a pure function of the step, so a
resumed run sees exactly the data an uninterrupted run would) and a loss function. Training
checkpoints go to ``checkpoints/NAME.pt`` (not shipped); the final weights file goes to
``weights/`` with its metadata.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from segdemo.registry import build_model, get_spec
from segdemo.weights import REPO_ROOT, save_weights, weights_dir

CHECKPOINT_DIR = REPO_ROOT / "checkpoints"


@dataclass
class TrainSettings:
    steps: int
    lr: float = 3e-3
    weight_decay: float = 1e-4
    warmup: int = 50
    seed: int = 0
    checkpoint_every: int = 200
    resume: bool = False


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def cosine_lr(step: int, settings: TrainSettings) -> float:
    """Linear warm-up, then cosine decay to 2% of the peak rate."""
    if step < settings.warmup:
        return settings.lr * (step + 1) / settings.warmup
    progress = (step - settings.warmup) / max(1, settings.steps - settings.warmup)
    return settings.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * progress)))


def fit(
    name: str,
    model: torch.nn.Module,
    batch: Callable[[int], tuple],
    loss_fn: Callable[..., torch.Tensor],
    settings: TrainSettings,
    checkpoint_dir: Path = CHECKPOINT_DIR,
) -> dict[str, float]:
    """Train ``model`` in place for ``settings.steps`` steps; returns timing and final loss."""
    seed_everything(settings.seed)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay
    )
    checkpoint = checkpoint_dir / f"{name}.pt"
    start, earlier = _resume(checkpoint, model, optimizer) if settings.resume else (0, 0.0)
    model.train()
    began, smoothed = time.perf_counter() - (earlier or 0.0), None
    bar = tqdm(
        range(start, settings.steps),
        desc=f"train {name}",
        initial=start,
        total=settings.steps,
        unit="step",
        dynamic_ncols=True,
    )
    for step in bar:
        torch.manual_seed(settings.seed * 1_000_003 + step)  # dropout/augmentation per step
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(step, settings)
        inputs, targets = batch(step)
        loss = loss_fn(model(inputs), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        smoothed = loss.item() if smoothed is None else 0.95 * smoothed + 0.05 * loss.item()
        bar.set_postfix(loss=f"{smoothed:.4f}")
        if (step + 1) % settings.checkpoint_every == 0 or step + 1 == settings.steps:
            _save(checkpoint, model, optimizer, step + 1, time.perf_counter() - began)
    model.eval()
    timing = {"train_seconds": round(time.perf_counter() - began, 1), "final_loss": smoothed or 0.0}
    if start and earlier is None:  # resumed from a checkpoint that did not record its time
        timing["train_seconds_from_step"] = start
    return timing


Recipe = tuple[Callable[[int], tuple], Callable[..., torch.Tensor], int, float]
# (batch function, loss, default steps, learning rate)


def train_and_save(
    name: str,
    recipe: Recipe,
    validate: Callable[[str, torch.nn.Module], dict],
    *,
    classes: list[str],
    data: dict,
    steps: int | None,
    seed: int,
    resume: bool,
    out=None,
) -> dict:
    """Train ``name`` from scratch (or resume), validate it, and write its weights file.

    The file records the config that rebuilds the model, the command that reproduces it, the
    data it saw and its validation metrics.
    """
    batch, loss, default_steps, lr = recipe
    settings = TrainSettings(steps=steps or default_steps, lr=lr, seed=seed, resume=resume)
    torch.manual_seed(seed)
    model = build_model(name)
    timing = fit(name, model, batch, loss, settings)
    metrics = validate(name, model)
    metrics.update(timing, steps=settings.steps)
    command = f"python -m segdemo.train {name}" + (f" --steps {steps}" if steps else "")
    path = save_weights(
        out or weights_dir() / get_spec(name).weights,
        model,
        config=vars(model.config),
        classes=classes,
        train_command=command + (f" --seed {seed}" if seed else ""),
        data={**data, "seed": seed},
        metrics=metrics,
    )
    print(f"wrote {path}: {metrics}")
    return metrics


def _save(path: Path, model, optimizer, step: int, seconds: float) -> None:
    """``seconds``: training time up to ``step``, summed over every sitting so far."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step}
    torch.save({**state, "seconds": seconds}, tmp)
    tmp.replace(path)  # never leave a half-written checkpoint behind


def _resume(path: Path, model, optimizer) -> tuple[int, float | None]:
    """Load a checkpoint; returns its step and the training seconds it recorded (or None)."""
    if not path.is_file():
        print(f"no checkpoint at {path}; starting from scratch")
        return 0, 0.0
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    print(f"resuming {path} at step {state['step']}")
    return int(state["step"]), state.get("seconds")
