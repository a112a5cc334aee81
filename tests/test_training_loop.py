"""The shared training loop: a run stopped midway and resumed ends where an unbroken run does."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from segdemo.train.loop import TrainSettings, fit


def batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(step)
    x = torch.randn(16, 4, generator=g)
    return x, x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))


class Interrupted(Exception):
    pass


def test_a_resumed_run_matches_an_unbroken_one(tmp_path):
    settings = dict(steps=10, lr=1e-2, warmup=2, checkpoint_every=2)
    unbroken = model()
    fit("toy", unbroken, batch, nn.functional.mse_loss, TrainSettings(**settings), tmp_path / "a")

    def dies_at_step_7(step):
        if step == 7:
            raise Interrupted  # the machine went away; the last checkpoint is at step 6
        return batch(step)

    broken = model()
    with pytest.raises(Interrupted):
        fit(
            "toy",
            broken,
            dies_at_step_7,
            nn.functional.mse_loss,
            TrainSettings(**settings),
            tmp_path / "b",
        )
    state = torch.load(tmp_path / "b" / "toy.pt", weights_only=True)
    assert state["step"] == 6 and state["seconds"] > 0

    resumed = model()
    timing = fit(
        "toy",
        resumed,
        batch,
        nn.functional.mse_loss,
        TrainSettings(**settings, resume=True),
        tmp_path / "b",
    )
    for a, b in zip(unbroken.parameters(), resumed.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert timing["train_seconds"] >= round(state["seconds"], 1)  # both sittings counted
    assert "train_seconds_from_step" not in timing
