"""The training loop every shipped model uses: deterministic, resumable, with a progress bar.

A trainer supplies ``batch(step) -> (inputs, targets)`` (a pure function of the step, so a
resumed run sees exactly the data an uninterrupted run would) and a loss function. Training
checkpoints go to ``checkpoints/NAME.pt`` (not shipped); the final weights file goes to
``weights/`` with its metadata.

Training runs on the CPU by default, and every shipped file was trained there. ``device``
moves it to a GPU (float sums then run in another order, so the result is close to a CPU
run's, not bit for bit the same); ``workers`` renders the same batches in background
processes, so that a fast device does not wait for the data.
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
    device: str = "cpu"
    workers: int = 0  # processes that render batches ahead (0: in the training process)


@dataclass(frozen=True)
class Run:
    """How one run is carried out (``python -m segdemo.train``'s options); the trainer's
    recipe says what is trained."""

    steps: int | None = None  # None: the recipe's own
    seed: int = 0
    resume: bool = False
    out: str | None = None  # weights file to write; None: the registry's file in weights/
    device: str = "cpu"
    workers: int = 0

    def settings(self, steps: int, lr: float, **recipe) -> TrainSettings:
        """The loop's settings: the recipe's ``steps`` (unless the run names its own), ``lr``
        and other ``recipe`` fields, with this run's seed, resume flag, device and workers."""
        return TrainSettings(
            steps=self.steps or steps,
            lr=lr,
            seed=self.seed,
            resume=self.resume,
            device=self.device,
            workers=self.workers,
            **recipe,
        )

    def weights_path(self, name: str) -> Path:
        return Path(self.out) if self.out else weights_dir() / get_spec(name).weights

    def command(self, name: str) -> str:
        """The command line that reproduces this run (defaults left out)."""
        command = f"python -m segdemo.train {name}"
        command += f" --steps {self.steps}" if self.steps else ""
        # Results are deterministic for a seed, a device *and* a thread count (float sums
        # change order with any of them).
        threads = torch.get_num_threads()
        command += f" --threads {threads}" if threads != 2 else ""
        command += f" --device {self.device}" if self.device != "cpu" else ""
        return command + (f" --seed {self.seed}" if self.seed else "")


def seed_everything(seed: int, device: torch.device) -> None:
    torch.manual_seed(seed)
    # On a GPU, deterministic mode would swap torchvision's RoIAlign for a slow pure-PyTorch
    # version (its CUDA backward adds atomically); a GPU run is not bit-exact anyway.
    torch.use_deterministic_algorithms(device.type == "cpu", warn_only=True)


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
    device = torch.device(settings.device)
    seed_everything(settings.seed, device)
    model.to(device)
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
    for step, (inputs, targets) in zip(bar, batches(batch, start, settings), strict=True):
        torch.manual_seed(settings.seed * 1_000_003 + step)  # dropout/augmentation per step
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(step, settings)
        inputs, targets = to_device(inputs, device), to_device(targets, device)
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


class StepData(torch.utils.data.Dataset):
    """Steps ``start..stop-1`` of a batch function, for a ``DataLoader``'s workers."""

    def __init__(self, batch: Callable[[int], tuple], start: int, stop: int):
        self.batch, self.start, self.stop = batch, start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, index: int) -> tuple:
        return self.batch(self.start + index)


def batches(batch: Callable[[int], tuple], start: int, settings: TrainSettings):
    """The batches of steps ``start..``, in order, rendered here or by ``settings.workers``."""
    if not settings.workers:
        return (batch(step) for step in range(start, settings.steps))
    return torch.utils.data.DataLoader(
        StepData(batch, start, settings.steps),
        batch_size=None,  # each item is already a whole batch
        collate_fn=_as_is,
        num_workers=settings.workers,
        prefetch_factor=4,
        # No pinned memory: its thread sets torch's thread count to 1 for the whole process.
    )


def _as_is(item):
    return item


def to_device(value, device: torch.device):
    """Tensors inside tuples, lists and dicts moved to ``device``; anything else as it is."""
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, (list, tuple)):
        return type(value)(to_device(v, device) for v in value)
    if isinstance(value, dict):
        return {k: to_device(v, device) for k, v in value.items()}
    return value


Recipe = tuple[Callable[[int], tuple], Callable[..., torch.Tensor], int, float]
# (batch function, loss, default steps, learning rate)


def train_and_save(
    name: str,
    recipe: Recipe,
    validate: Callable[[str, torch.nn.Module], dict],
    *,
    classes: list[str],
    data: dict,
    run: Run,
) -> dict:
    """Train ``name`` from scratch (or resume), validate it, and write its weights file.

    The file records the config that rebuilds the model, the command that reproduces it, the
    data it saw and its validation metrics.
    """
    batch, loss, default_steps, lr = recipe
    settings = run.settings(default_steps, lr)
    torch.manual_seed(run.seed)
    model = build_model(name)
    timing = fit(name, model, batch, loss, settings)
    metrics = validate(name, model)
    metrics.update(timing, steps=settings.steps)
    path = save_weights(
        run.weights_path(name),
        model.cpu(),
        config=vars(model.config),
        classes=classes,
        train_command=run.command(name),
        data={**data, "seed": run.seed},
        metrics=metrics,
    )
    print(f"wrote {path}: {metrics}")
    return metrics


def recipe_trainer(
    recipes: dict[str, Recipe],
    validate: Callable[[str, torch.nn.Module], dict],
    classes: tuple[str, ...],
    data: dict,
) -> Callable[[str, Run], dict]:
    """``train(name, run)`` for a family of models that share validation, classes and data and
    differ only by their recipe."""

    def train(name: str, run: Run) -> dict:
        return train_and_save(
            name, recipes[name], validate, classes=list(classes), data=data, run=run
        )

    return train


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
