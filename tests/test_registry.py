"""The shared model registry: every model builds and runs; errors name what to do."""

import threading

import pytest
import torch

from segdemo import registry
from segdemo.weights import WeightsError, load_weights, read_metadata, save_weights

IMAGE_MODELS = registry.list_models()


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_model_forward(name):
    if registry.get_spec(name).task == "prompted":  # SAM's prompt API, and ViTs of 0.1-0.6 G
        pytest.skip("prompted models run in tests/test_prompted.py")
    if registry.get_spec(name).task == "instances":  # detection API: a list of dicts out
        pytest.skip("instance models run in tests/test_maskrcnn.py")
    model = registry.build_model(name).eval()
    with torch.no_grad():
        if name == "patch_classifier":  # a dense head: fixed 32×32 patches in, one logit out
            assert model(torch.rand(2, 3, 32, 32)).shape == (2, 1)
            return
        if registry.get_spec(name).task == "semantic":  # one score map per scene class
            assert model(torch.rand(1, 3, 64, 80)).shape == (1, 6, 64, 80)
            return
        assert model(torch.rand(1, 3, 64, 80)).shape == (1, 1, 64, 80)


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_model_info_describes_every_model(name):
    info = registry.model_info(name)
    assert info["name"] == name and info["task"] and info["description"]
    assert "weights" in info and isinstance(info["available"], bool)


def test_fixed_names_are_registered():
    assert {"patch_classifier", "upsample_transposed", "upsample_bilinear"} <= set(IMAGE_MODELS)


def test_unknown_name_lists_the_registered_ones():
    with pytest.raises(registry.UnknownModelError, match="unknown model 'nope'.*patch_classifier"):
        registry.load_model("nope")


@pytest.fixture
def empty_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGDEMO_WEIGHTS", str(tmp_path))
    registry.clear_cache()
    yield tmp_path
    registry.clear_cache()


def test_missing_weights_name_the_file_and_the_command(empty_weights):
    assert not registry.is_available("upsample_bilinear")
    with pytest.raises(WeightsError) as err:
        registry.load_model("upsample_bilinear")
    message = str(err.value)
    assert "upsample_bilinear.safetensors" in message
    assert "python -m segdemo.train upsample_bilinear" in message


def test_corrupt_weights_name_the_file_and_the_command(empty_weights):
    (empty_weights / "patch_classifier.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(WeightsError, match="corrupt.*python -m segdemo.train patch_classifier"):
        registry.load_model("patch_classifier")
    assert registry.model_info("patch_classifier")["available"] is False


def test_weights_file_rebuilds_its_own_model(empty_weights):
    model = registry.build_model("upsample_transposed", width=8)
    save_weights(
        empty_weights / "upsample_transposed.safetensors",
        model,
        config=vars(model.config),
        classes=["background", "flower"],
        train_command="python -m segdemo.train upsample_transposed",
        data={"seed": 0},
        metrics={"val_iou": 0.5},
    )
    loaded = registry.load_model("upsample_transposed")
    assert loaded.config.width == 8 and not loaded.training
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
    info = registry.model_info("upsample_transposed")
    assert info["available"] and info["metrics"] == {"val_iou": 0.5}
    assert info["parameters"] == sum(p.numel() for p in model.parameters())


def test_load_model_is_cached_and_thread_safe(empty_weights):
    model = registry.build_model("patch_classifier", width=4, hidden=8)
    path = empty_weights / "patch_classifier.safetensors"
    save_weights(path, model, config=vars(model.config))
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(registry.load_model("patch_classifier")))
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8 and all(r is results[0] for r in results)


def test_metadata_round_trip(tmp_path):
    model = torch.nn.Linear(2, 1)
    path = save_weights(tmp_path / "m.safetensors", model, metrics={"val_iou": 0.9}, classes=["a"])
    assert read_metadata(path) == {"metrics": {"val_iou": 0.9}, "classes": ["a"]}
    assert set(load_weights(path, "cmd").state_dict) == {"weight", "bias"}
    with pytest.raises(ValueError, match="unknown metadata"):
        save_weights(tmp_path / "x.safetensors", model, notes="x")


def test_a_model_of_another_task_is_refused_by_name():
    with pytest.raises(registry.UnknownModelError, match="'unet' is not a prompted model"):
        registry.load_model("unet", task="prompted")


def test_a_device_the_machine_lacks_is_refused_at_start_up(capsys):
    import app
    from segdemo.train.__main__ import get_args_parser, main

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    missing = f"cuda:{gpus}"  # one past the last GPU: absent on every machine
    with pytest.raises(ValueError, match=f"this machine has {gpus} CUDA GPU"):
        registry.set_default_device(missing)
    with pytest.raises(ValueError, match="not a torch device name"):
        registry.set_default_device("gpu0")
    assert registry.usable_device("cpu") == torch.device("cpu")

    with pytest.raises(SystemExit) as exited:
        app.main(["--device", missing])
    assert exited.value.code == 2 and "CUDA GPU(s); use" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="this machine has"):
        main(get_args_parser().parse_args(["unet", "--device", missing]))
