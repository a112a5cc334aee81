"""Official torchvision COCO Mask R-CNN checkpoints: offline loading, safe unpickling, download.

No test touches the internet: the checkpoint is a randomly initialised state dict of the same
architecture, written to a temporary folder and, for the download path, served by a local
HTTP server on 127.0.0.1.
"""

import dataclasses
import functools
import http.server
import threading

import pytest
import torch

from segdemo import registry
from segdemo.models.maskrcnn import class_names
from segdemo.weights import WeightsError

NAME = "maskrcnn_resnet50_fpn_coco"
FILE = "maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth"


@pytest.fixture(scope="module")
def random_checkpoint(tmp_path_factory):
    """A state dict with the official architecture and random values, saved as the official
    file name in a folder of its own; returns (folder, state dict)."""
    torch.manual_seed(0)
    state = registry.build_model(NAME).state_dict()
    folder = tmp_path_factory.mktemp("served")
    torch.save(state, folder / FILE)
    return folder, state


@pytest.fixture
def weights_home(tmp_path, monkeypatch):
    """Empty weights folder and torch hub cache, downloads off, no model cached."""
    monkeypatch.setenv("SEGDEMO_WEIGHTS", str(tmp_path / "weights"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("SEGDEMO_DOWNLOAD", raising=False)
    registry.clear_cache()
    yield tmp_path / "weights"
    registry.clear_cache()


def assert_same_weights(model: torch.nn.Module, state: dict) -> None:
    loaded = model.state_dict()
    assert loaded.keys() == state.keys()
    for key in ("backbone.body.conv1.weight", "roi_heads.mask_predictor.mask_fcn_logits.weight"):
        assert torch.equal(loaded[key], state[key])


def test_absent_checkpoint_is_unavailable_not_an_error(weights_home):
    assert not registry.is_available(NAME)
    info = registry.model_info(NAME)
    assert info["available"] is False and "absent" in info["weights"]
    assert info["parameters"] == 44_401_393
    with pytest.raises(registry.ModelUnavailableError, match=f"{FILE}.*SEGDEMO_DOWNLOAD=1"):
        registry.load_model(NAME)


def test_checkpoint_in_weights_folder_loads_offline(weights_home, random_checkpoint):
    folder, state = random_checkpoint
    weights_home.mkdir()
    (weights_home / FILE).symlink_to(folder / FILE)
    assert registry.is_available(NAME)
    model = registry.load_model(NAME)
    assert not model.training
    assert_same_weights(model, state)


def test_checkpoint_in_torch_hub_cache_loads(weights_home, random_checkpoint, tmp_path):
    folder, state = random_checkpoint
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    (hub / FILE).symlink_to(folder / FILE)
    assert registry.is_available(NAME)
    assert_same_weights(registry.load_model(NAME), state)


class Payload:
    """Stands for any pickled object that is not plain tensors and containers."""


def test_pickled_objects_are_refused(weights_home):
    weights_home.mkdir()
    # weights_only=True must refuse to rebuild arbitrary objects from a checkpoint.
    torch.save({"model": Payload()}, weights_home / FILE)
    with pytest.raises(WeightsError, match="could not be read safely"):
        registry.load_model(NAME)


@pytest.fixture
def local_server(random_checkpoint):
    """Serve the random checkpoint's folder over HTTP on 127.0.0.1; yields its base URL."""
    folder, _ = random_checkpoint
    handler = functools.partial(QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output clean
        pass


def test_download_fetches_the_checkpoint_when_enabled(
    weights_home, random_checkpoint, local_server, monkeypatch
):
    _, state = random_checkpoint
    spec = registry.get_spec(NAME)
    local = dataclasses.replace(spec, download_url=f"{local_server}/{FILE}")
    monkeypatch.setitem(registry._SPECS, NAME, local)
    assert not registry.is_available(NAME)  # downloads are off by default
    monkeypatch.setenv("SEGDEMO_DOWNLOAD", "1")
    assert registry.is_available(NAME)
    model = registry.load_model(NAME)
    assert (weights_home / FILE).is_file()  # kept for the next start, which is then offline
    assert_same_weights(model, state)


def test_url_and_categories_are_torchvisions():
    from torchvision.models.detection import (
        MaskRCNN_ResNet50_FPN_V2_Weights,
        MaskRCNN_ResNet50_FPN_Weights,
    )

    for name, weights in (
        (NAME, MaskRCNN_ResNet50_FPN_Weights.COCO_V1),
        ("maskrcnn_resnet50_fpn_v2_coco", MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1),
    ):
        spec = registry.get_spec(name)
        assert spec.download_url == weights.url
        assert spec.download_url.endswith(spec.checkpoints[0])
        assert spec.known_params == weights.meta["num_params"]
        assert class_names(name) == tuple(weights.meta["categories"])
