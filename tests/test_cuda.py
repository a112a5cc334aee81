"""The app on a GPU (``app.py --device cuda``): every task gives what it gives on the CPU.

Skipped on machines without CUDA. Results are compared with the CPU run of the same shipped
model; they are not identical (GPU kernels add floats in another order), so each check allows
what that can change: a few pixels of a mask, a fraction of a logit.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from segdemo import registry
from segdemo.examples import EXAMPLES_DIR
from segdemo.imaging import prepare_image
from segdemo.metrics import iou
from segdemo.prompts import Click
from segdemo.tasks import finetune, instances, patch_classify, semantic, upsample
from segdemo.tasks.prompt_session import PromptSession
from segdemo.train.click_net import IterativeTrainer
from segdemo.train.click_net import make_batch as click_batch
from segdemo.train.instances import DetectionLosses, scene_batch
from segdemo.train.loop import to_device
from segdemo.train.sam_tiny import InteractiveTrainer as SamTrainer
from segdemo.train.sam_tiny import make_batch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def example(name: str) -> np.ndarray:
    return np.asarray(Image.open(EXAMPLES_DIR / name).convert("RGB"))


@pytest.fixture
def on_gpu():
    """The registry's default device set to CUDA, as ``app.py --device cuda`` does."""
    registry.set_default_device("cuda")
    yield
    registry.set_default_device("cpu")


def test_unet_labels_match_the_cpu():
    pixels = example("scene_0.png")
    on_cpu = semantic.segment(pixels, registry.load_model("unet", "cpu")).labels
    on_gpu = semantic.segment(pixels, registry.load_model("unet", "cuda")).labels
    assert (on_cpu == on_gpu).mean() > 0.999


def test_patch_classifier_runs_fully_convolutional_on_the_gpu():
    pixels = example("flowers_0.png")
    on_cpu = patch_classify.classify_segment(pixels, registry.load_model("patch_classifier", "cpu"))
    on_gpu = patch_classify.classify_segment(
        pixels, registry.load_model("patch_classifier", "cuda")
    )
    np.testing.assert_allclose(on_gpu.probability_map, on_cpu.probability_map, atol=0.02)


@pytest.mark.parametrize("name", upsample.UPSAMPLING_MODELS)
def test_upsampling_nets_match_the_cpu(name):
    pixels = example("flowers_1.png")
    on_cpu = upsample.predict(name, pixels, registry.load_model(name, "cpu"))
    on_gpu = upsample.predict(name, pixels, registry.load_model(name, "cuda"))
    # GPU convolutions may multiply in TF32 (10-bit mantissa): about 1e-3 relative error.
    np.testing.assert_allclose(on_gpu.probability, on_cpu.probability, atol=0.02)
    assert (on_gpu.mask == on_cpu.mask).mean() > 0.999
    assert on_gpu.checkerboard == pytest.approx(on_cpu.checkerboard, rel=0.05)


def test_maskrcnn_finds_the_same_instances():
    prepared = prepare_image(example("scene_0.png"))
    on_cpu = instances.segment_instances(prepared, model=registry.load_model("maskrcnn", "cpu"))
    on_gpu = instances.segment_instances(prepared, model=registry.load_model("maskrcnn", "cuda"))
    assert len(on_cpu.instances) >= 2
    assert [i.label for i in on_gpu.instances] == [i.label for i in on_cpu.instances]
    for a, b in zip(on_cpu.instances, on_gpu.instances, strict=True):
        np.testing.assert_allclose(a.box, b.box, atol=1.0)
        assert abs(a.score - b.score) < 0.01
        assert iou(a.mask, b.mask) > 0.95


@pytest.mark.parametrize("model", ["click_net", "sam_tiny"])
def test_prompted_masks_match_the_cpu(on_gpu, model):
    image = prepare_image(example("scene_0.png"))
    click = Click(160, 150, True)
    gpu = PromptSession.open(image, model).click(click)
    registry.set_default_device("cpu")
    cpu = PromptSession.open(image, model).click(click)
    kept = gpu.state.value
    assert (kept if model == "click_net" else kept.features).device.type == "cuda"
    gpu_step, cpu_step = gpu.current, cpu.current
    np.testing.assert_allclose(gpu_step.scores, cpu_step.scores, atol=0.01)
    best = cpu_step.chosen
    assert iou(gpu_step.masks[best], cpu_step.masks[best]) > 0.98


def test_finetuning_trains_copies_on_the_gpu(on_gpu):
    pixels = example("flowers_3.png")
    truth = np.asarray(Image.open(EXAMPLES_DIR / "flowers_3_truth.png")) > 0
    foreground, background = finetune.grid_strokes(truth)
    tuned = finetune.finetune(pixels, foreground, background, steps=3, time_budget=60)
    for name, model in tuned.models.items():
        assert tuned.steps[name] == 3
        assert next(model.parameters()).device.type == "cuda"
        assert finetune.probability(name, pixels, model).shape == pixels.shape[:2]


def test_maskrcnn_sam_and_click_trainers_take_a_step_on_the_gpu():
    detector = registry.build_model("maskrcnn").cuda().train()
    losses = DetectionLosses(detector)(to_device(scene_batch(0, 2)[0], torch.device("cuda")))
    assert all(torch.isfinite(v) for v in losses.values())
    trainer = SamTrainer(registry.build_model("sam_tiny").cuda().train())
    loss = trainer(make_batch(1000))  # a step past the first-click phase: several rounds
    loss.backward()
    assert torch.isfinite(loss)
    clicker = IterativeTrainer(registry.build_model("click_net").cuda().train())
    loss = clicker(click_batch(2))  # three rounds without gradient, then the trained one
    loss.backward()
    assert torch.isfinite(loss)
