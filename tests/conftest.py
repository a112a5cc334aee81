"""Shared fixtures: one app server on a free local port for the endpoint tests."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # so that `import app` works from any working directory


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def app_url():
    """Launch the real app (all tabs) on 127.0.0.1 and yield its URL."""
    import app

    demo = app.build_app()
    args = app.get_args_parser().parse_args(["--port", str(free_port())])
    demo.launch(prevent_thread_lock=True, quiet=True, **app.launch_kwargs(args))
    yield demo.local_url
    demo.close()


@pytest.fixture(scope="session")
def client(app_url):
    from gradio_client import Client

    return Client(app_url, verbose=False)


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory):
    """Randomly initialised click_net and sam_tiny written as their weights files (sam_tiny
    in fp16, as shipped), and the registry pointed at them for the module's tests."""
    import torch

    from segdemo import registry
    from segdemo.train.sam_tiny import half_precision
    from segdemo.weights import config_dict, save_weights

    folder = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    net = registry.build_model("click_net")
    save_weights(folder / "click_net.safetensors", net, config=config_dict(net.config))
    sam = registry.build_model("sam_tiny")
    save_weights(
        folder / "sam_tiny.safetensors",
        half_precision(sam),
        config=config_dict(sam.config),
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SEGDEMO_WEIGHTS", str(folder))
        registry.clear_cache()
        yield folder
    registry.clear_cache()


@pytest.fixture
def as_trained():
    """Gives a model's batch norms non-trivial statistics and scales, as after training, so
    that folding them into the convolutions is put to a real test; returns the model."""
    import torch

    def trained(model):
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.data.uniform_(0.5, 1.5)
                module.bias.data.uniform_(-0.2, 0.2)
        return model

    return trained


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Expose each phase's report on the test item, so fixtures can react to a failure."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
