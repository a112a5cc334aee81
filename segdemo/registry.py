"""The shared model registry: one place that knows every model the app and evaluation use.

    @register_model("unet", task="semantic", weights="unet.safetensors", description="...")
    def unet(**config) -> UNet: ...

- ``list_models()`` names; ``model_info(name)`` what the Models table shows.
- ``build_model(name, **config)`` a fresh, untrained model (training, tests).
- ``load_model(name, device=None)`` lazy, cached, thread-safe, in eval mode. Models are shared
  read-only by every user of the app; per-user data never lives on them.

Shipped models load from ``weights/NAME.safetensors`` and rebuild themselves from the config
saved in that file. Official checkpoints load from their usual file names in ``weights/`` (or
torch's hub cache) and are "unavailable", not an error, when the file is absent.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from safetensors import safe_open

from segdemo import weights as wts


class UnknownModelError(KeyError):
    """No model is registered under that name."""

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0])


class ModelUnavailableError(RuntimeError):
    """An official checkpoint is not on this machine and downloading is off."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    task: str
    builder: Callable[..., torch.nn.Module]
    description: str
    weights: str | None = None  # shipped safetensors file in weights/
    checkpoints: tuple[str, ...] = ()  # official checkpoint file names, first found wins
    download_url: str | None = None  # used only when SEGDEMO_DOWNLOAD=1
    known_params: int | None = None  # official models: counted once, not built to count
    data: str = ""  # what it was trained on, for the Models table
    prompter: str | None = None  # prompted models: which prompter drives it ("sam", "click")

    @property
    def official(self) -> bool:
        return bool(self.checkpoints)

    @property
    def train_command(self) -> str:
        return f"python -m segdemo.train {self.name}"


_SPECS: dict[str, ModelSpec] = {}
_LOADED: dict[tuple[str, str], torch.nn.Module] = {}
_LOAD_LOCKS: dict[tuple[str, str], threading.Lock] = {}
_GLOBAL_LOCK = threading.Lock()
_DEFAULT_DEVICE = ["cpu"]  # set once at start-up by app.py --device
# Registration happens as a side effect of importing the model modules.
_MODEL_MODULES = ("segdemo.models",)


def register_model(
    name: str | None = None,
    *,
    task: str,
    description: str,
    weights: str | None = None,
    checkpoints: tuple[str, ...] = (),
    download_url: str | None = None,
    known_params: int | None = None,
    data: str = "",
    prompter: str | None = None,
) -> Callable[[Callable[..., torch.nn.Module]], Callable[..., torch.nn.Module]]:
    """Register a builder under ``name`` (default: the function's name)."""

    def decorator(builder: Callable[..., torch.nn.Module]) -> Callable[..., torch.nn.Module]:
        key = name or builder.__name__
        if key in _SPECS:
            raise ValueError(f"model {key!r} is registered twice")
        _SPECS[key] = ModelSpec(
            key,
            task,
            builder,
            description,
            weights,
            checkpoints,
            download_url,
            known_params,
            data,
            prompter,
        )
        return builder

    return decorator


def _specs() -> dict[str, ModelSpec]:
    for module in _MODEL_MODULES:
        importlib.import_module(module)
    return _SPECS


def get_spec(name: str) -> ModelSpec:
    specs = _specs()
    if name not in specs:
        known = ", ".join(sorted(specs))
        raise UnknownModelError(f"unknown model {name!r}; registered models: {known}")
    return specs[name]


def list_models(task: str | None = None) -> list[str]:
    """Registered model names, optionally only those of one task."""
    return sorted(n for n, s in _specs().items() if task is None or s.task == task)


def downloads_enabled() -> bool:
    return os.environ.get("SEGDEMO_DOWNLOAD", "") == "1"


def weights_path(name: str):
    spec = get_spec(name)
    if spec.official:
        return wts.find_checkpoint(spec.checkpoints)
    return wts.weights_dir() / spec.weights if spec.weights else None


def is_available(name: str) -> bool:
    """True when ``load_model(name)`` can succeed without a training run."""
    spec = get_spec(name)
    path = weights_path(name)
    if spec.official:
        return path is not None or (downloads_enabled() and spec.download_url is not None)
    return spec.weights is None or (path is not None and path.is_file())


def model_info(name: str) -> dict[str, Any]:
    """What a user needs to know about a model: task, size, source, training and metrics."""
    spec = get_spec(name)
    path = weights_path(name)
    info: dict[str, Any] = {
        "name": name,
        "task": spec.task,
        "description": spec.description,
        "available": is_available(name),
        "parameters": spec.known_params,
        "data": spec.data,
        "train_command": None if spec.official else spec.train_command,
        "metrics": {},
    }
    if spec.official:
        found = f"weights/{path.name}" if path is not None else "absent"
        info["weights"] = f"official checkpoint {spec.checkpoints[0]} ({found})"
        return info
    info["weights"] = f"weights/{spec.weights}"
    if path is not None and path.is_file():
        try:
            meta = wts.read_metadata(path)
            info["parameters"] = _count_parameters(path)
        except Exception:  # a corrupt file is reported as unavailable, not as a crash
            info["available"] = False
            return info
        info["metrics"] = meta.get("metrics", {})
        info["classes"] = meta.get("classes")
        info["data"] = meta.get("data", {}).get("description", spec.data)
    return info


def _count_parameters(path) -> int:
    with safe_open(str(path), framework="pt") as f:
        total = 0
        for key in f.keys():
            if key.endswith(("running_mean", "running_var", "num_batches_tracked")):
                continue
            shape = f.get_slice(key).get_shape()
            count = 1
            for dim in shape:
                count *= dim
            total += count
    return total


def usable_device(device: str) -> torch.device:
    """``device`` as a torch device; ValueError, with what to do instead, when the name is
    malformed or the machine has no such device (checked at start-up, not at the first click)."""
    try:
        parsed = torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"{device!r} is not a torch device name (cpu, cuda, cuda:1)") from err
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (parsed.index or 0) >= count:
            choices = "cpu" if count == 0 else f"cuda:0..cuda:{count - 1} or cpu"
            message = f"device {device!r}: this machine has {count} CUDA GPU(s); use {choices}"
            raise ValueError(message)
    return parsed


def set_default_device(device: str) -> None:
    """The device ``load_model`` uses when none is named (``app.py --device``)."""
    usable_device(device)  # raises before anything is stored
    _DEFAULT_DEVICE[0] = device


def build_model(name: str, **config: Any) -> torch.nn.Module:
    """A fresh model with random weights, built from ``config`` (the builder's defaults)."""
    return get_spec(name).builder(**config)


def load_model(
    name: str, device: str | torch.device | None = None, *, task: str | None = None
) -> torch.nn.Module:
    """The trained model in eval mode, loaded once per (name, device) and shared.

    With ``task``, a model registered for another task is refused with the names that fit,
    so a mistyped choice never reaches a function that cannot run it.
    """
    spec = get_spec(name)
    if task is not None and spec.task != task:
        fitting = ", ".join(list_models(task=task))
        raise UnknownModelError(f"{name!r} is not a {task} model; {task} models: {fitting}")
    device = torch.device(device or _DEFAULT_DEVICE[0])
    key = (name, str(device))
    with _GLOBAL_LOCK:
        if key in _LOADED:
            return _LOADED[key]
        lock = _LOAD_LOCKS.setdefault(key, threading.Lock())
    with lock:  # one thread loads, the others wait for it instead of loading again
        if key not in _LOADED:
            model = _load_official(spec) if spec.official else _load_shipped(spec)
            model.eval().requires_grad_(False)
            _LOADED[key] = model.to(device)
    return _LOADED[key]


def clear_cache() -> None:
    """Forget loaded models (tests that swap weight files use this)."""
    with _GLOBAL_LOCK:
        _LOADED.clear()


def _load_shipped(spec: ModelSpec) -> torch.nn.Module:
    path = wts.weights_dir() / spec.weights
    loaded = wts.load_weights(path, spec.train_command)
    model = spec.builder(**loaded.config)
    try:
        model.load_state_dict(loaded.state_dict)
    except RuntimeError as err:
        raise wts.WeightsError(
            f"weights file {path} does not fit model {spec.name!r} ({err}); "
            f"recreate it with `{spec.train_command}`"
        ) from err
    return model


def _load_official(spec: ModelSpec) -> torch.nn.Module:
    path = wts.find_checkpoint(spec.checkpoints)
    if path is None:
        if not (downloads_enabled() and spec.download_url):
            raise ModelUnavailableError(
                f"model {spec.name!r} needs the official checkpoint {spec.checkpoints[0]}: "
                f"put it in {wts.weights_dir()}/ or set SEGDEMO_DOWNLOAD=1 to fetch it"
            )
        path = _download(spec)
    model = spec.builder()
    model.load_state_dict(wts.load_checkpoint(path))
    return model


def _download(spec: ModelSpec):
    """Fetch an official checkpoint into weights/ (hosts with internet, SEGDEMO_DOWNLOAD=1)."""
    target = wts.weights_dir() / spec.checkpoints[0]
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.hub.download_url_to_file(spec.download_url, str(target), progress=False)
    return target
