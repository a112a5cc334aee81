"""Weights on disk: safetensors files that carry their own metadata, and official checkpoints.

A shipped weights file holds the state dict plus JSON metadata under these keys:
``config`` (the builder's keyword arguments, so the file rebuilds its own model),
``classes``, ``train_command``, ``data`` (generator and seeds) and ``metrics``.
Nothing here unpickles code: safetensors holds tensors only, and official ``.pth``
checkpoints are read with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

REPO_ROOT = Path(__file__).resolve().parent.parent
METADATA_KEYS = ("config", "classes", "train_command", "data", "metrics")


def weights_dir() -> Path:
    """The folder that holds shipped and official weights (``SEGDEMO_WEIGHTS`` overrides it)."""
    return Path(os.environ.get("SEGDEMO_WEIGHTS", REPO_ROOT / "weights"))


class WeightsError(RuntimeError):
    """A weights file is missing or unreadable; the message names the file and how to remake it."""


@dataclass
class WeightsFile:
    state_dict: dict[str, torch.Tensor]
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def config(self) -> dict[str, Any]:
        return self.metadata.get("config", {})


def config_dict(config: Any) -> dict[str, Any]:
    """A dataclass config as the JSON ``config`` of a weights file (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()}


def save_weights(path: Path | str, model: torch.nn.Module, **metadata: Any) -> Path:
    """Write ``model``'s state dict and JSON-serialisable ``metadata`` to a safetensors file."""
    unknown = set(metadata) - set(METADATA_KEYS)
    if unknown:
        raise ValueError(f"unknown metadata keys {sorted(unknown)}; expected {METADATA_KEYS}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(path), metadata={k: json.dumps(v) for k, v in metadata.items()})
    return path


def read_metadata(path: Path | str) -> dict[str, Any]:
    """The metadata of a safetensors file without loading its tensors."""
    with safe_open(str(path), framework="pt") as f:
        raw = f.metadata() or {}
    return {k: json.loads(v) for k, v in raw.items()}


def load_weights(path: Path | str, remake_command: str) -> WeightsFile:
    """Read a safetensors weights file, or raise WeightsError that says how to recreate it."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} is missing; recreate it with `{remake_command}`")
    try:
        return WeightsFile(load_file(str(path)), read_metadata(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise WeightsError(
            f"weights file {path} is corrupt ({err}); recreate it with `{remake_command}`"
        ) from err


def torch_hub_checkpoints() -> Path:
    """Where torchvision keeps downloaded checkpoints (``$TORCH_HOME/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def find_checkpoint(filenames: tuple[str, ...]) -> Path | None:
    """The first of ``filenames`` present in ``weights/`` or torch's hub cache, else None."""
    for folder in (weights_dir(), torch_hub_checkpoints()):
        for name in filenames:
            candidate = folder / name
            if candidate.is_file():
                return candidate
    return None


def load_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """Load an official ``.pth`` state dict without executing pickled code."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for a damaged or hostile pickle
        raise WeightsError(f"checkpoint {path} could not be read safely: {err}") from err
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise WeightsError(f"checkpoint {path} does not hold a state dict")
    return state
