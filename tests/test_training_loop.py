"""The shared training loop: resuming, data workers and a GPU leave the result as it is."""

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


def test_batches_rendered_by_workers_train_the_same_model(tmp_path):
    settings = dict(steps=6, lr=1e-2, warmup=2)
    here, ahead = model(), model()
    fit("toy", here, batch, nn.functional.mse_loss, TrainSettings(**settings), tmp_path / "a")
    with_workers = TrainSettings(**settings, workers=2)
    fit("toy", ahead, batch, nn.functional.mse_loss, with_workers, tmp_path / "b")
    for a, b in zip(here.parameters(), ahead.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_training_on_a_gpu_ends_near_the_cpu_run(tmp_path):
    settings = dict(steps=10, lr=1e-2, warmup=2)
    on_cpu, on_gpu = model(), model()
    fit("toy", on_cpu, batch, nn.functional.mse_loss, TrainSettings(**settings), tmp_path / "a")
    on_cuda = TrainSettings(**settings, device="cuda")
    fit("toy", on_gpu, batch, nn.functional.mse_loss, on_cuda, tmp_path / "b")
    for a, b in zip(on_cpu.parameters(), on_gpu.parameters(), strict=True):
        assert b.device.type == "cuda"
        torch.testing.assert_close(a, b.cpu(), rtol=1e-4, atol=1e-5)
