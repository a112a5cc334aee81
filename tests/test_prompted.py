"""Prompted masks: sam_tiny is a real SAM, sessions never share embeddings, official checkpoints
load offline, the trainer's step is sound, and the shipped model follows clicks."""

import threading

import numpy as np
import pytest
import torch
from segment_anything import SamAutomaticMaskGenerator, SamPredictor
from segment_anything.modeling import Sam
from segment_anything.utils.amg import build_all_layer_point_grids as build_point_grids

from segdemo import registry
from segdemo.data.composites import make_composite
from segdemo.imaging import prepare_image
from segdemo.tasks.promptable import PreparedState
from segdemo.tasks.prompted import (
    CLICK_RADIUS,
    EVERYTHING_MIN_IOU,
    Embedding,
    EmbeddingCache,
    PromptError,
    respect_clicks,
    segment,
    segment_everything,
)
from segdemo.train.prompted import InteractiveTrainer, make_batch
from segdemo.weights import WeightsError

torch.set_num_threads(2)


def photo(index: int = 0, size=(120, 160)) -> np.ndarray:
    return make_composite(index, "val", size).image


def test_sam_tiny_is_a_sam_and_runs_under_the_packages_predictor():
    model = registry.build_model("sam_tiny").eval()
    assert isinstance(model, Sam) and model.image_encoder.img_size == 512
    predictor = SamPredictor(model)
    predictor.set_image(photo())
    assert predictor.features.shape == (1, 256, 32, 32)
    masks, scores, logits = predictor.predict(np.array([[80, 60]]), np.array([1]))
    assert masks.shape == (3, 120, 160) and masks.dtype == bool
    assert scores.shape == (3,) and logits.shape == (3, 128, 128)
    masks, _, _ = predictor.predict(
        np.array([[80, 60], [10, 10]]),
        np.array([1, 0]),
        box=np.array([5, 5, 150, 110]),
        mask_input=logits[:1],
        multimask_output=False,
    )
    assert masks.shape == (1, 120, 160)
    generator = SamAutomaticMaskGenerator(
        model, points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0
    )
    assert isinstance(generator.generate(photo()), list)


def test_weights_file_rebuilds_the_model(random_weights):
    loaded = registry.load_model("sam_tiny")
    assert isinstance(loaded, Sam) and not loaded.training
    assert next(loaded.parameters()).dtype == torch.float32  # shipped as fp16, run as fp32
    info = registry.model_info("sam_tiny")
    assert info["available"] and info["task"] == "prompted"
    # The registry counts the file's tensors: the parameters and the positional-code buffer.
    assert info["parameters"] == sum(v.numel() for v in loaded.state_dict().values())
    assert (random_weights / "sam_tiny.safetensors").stat().st_size < 20e6


def test_segment_maps_prompts_and_masks_between_original_and_working_pixels(random_weights):
    big = np.repeat(np.repeat(photo(), 10, axis=0), 10, axis=1)  # 1200×1600: downscaled
    prepared = prepare_image(big)
    assert prepared.resized and prepared.size == (768, 1024)
    cache = EmbeddingCache()
    result = segment(prepared, [[800, 600, 1]], None, "sam_tiny", True, "s", cache=cache)
    assert result.masks.shape == (3, 1200, 1600) and result.working_masks.shape == (3, 768, 1024)
    assert result.embed_seconds > 0 and 0 <= result.best < 3
    again = segment(prepared, [[800, 600, 1]], None, "sam_tiny", True, "s", cache=cache)
    assert again.embed_seconds == 0.0  # the cached embedding served the second click
    assert np.array_equal(again.masks, result.masks)
    with pytest.raises(PromptError, match="at least one prompt"):
        segment(prepared, [], None, "sam_tiny", True, "s", cache=cache)


def test_clicked_pixels_keep_their_label(random_weights):
    """Whatever an untrained decoder returns, a positive click's spot is in every mask and a
    negative click's is out, at the original size of a downscaled upload."""
    prepared = prepare_image(photo(size=(1200, 1600)))
    assert prepared.resized
    clicks = [[400, 300, 1], [1000, 800, 0]]
    result = segment(prepared, clicks, None, "sam_tiny", True, "s", cache=EmbeddingCache())
    assert result.masks.shape == (3, 1200, 1600)
    assert result.masks[:, 300, 400].all() and not result.masks[:, 800, 1000].any()
    flipped = [[400, 300, 0], [1000, 800, 1]]
    again = segment(prepared, flipped, None, "sam_tiny", True, "s", cache=EmbeddingCache())
    assert not again.masks[:, 300, 400].any() and again.masks[:, 800, 1000].all()


def test_respect_clicks_sets_a_disc_of_each_clicks_label():
    masks = np.zeros((2, 100, 200), bool)
    masks[1] = True
    settled = respect_clicks(masks, np.array([[50.0, 40.0], [199.0, 0.0]]), np.array([1, 0]))
    radius = CLICK_RADIUS * 200  # 3 pixels
    rows, cols = np.ogrid[:100, :200]
    first = (cols - 50) ** 2 + (rows - 40) ** 2 <= radius**2
    second = (cols - 199) ** 2 + rows**2 <= radius**2
    assert np.array_equal(settled[0], first)  # only the positive disc was added
    assert np.array_equal(settled[1], ~second)  # only the negative disc was removed
    assert not masks[0].any() and masks[1].all()  # the input is left as it was


def test_sessions_never_share_embeddings(random_weights):
    cache = EmbeddingCache(max_entries=8, per_session=2)
    a, b = prepare_image(photo(1)), prepare_image(photo(2))
    result_a = segment(a, [[50, 50, 1]], None, "sam_tiny", True, "alice", cache=cache)
    result_b = segment(b, [[50, 50, 1]], None, "sam_tiny", True, "bob", cache=cache)
    assert result_a.embed_seconds > 0 and result_b.embed_seconds > 0
    assert set(cache.keys()) == {("alice", "sam_tiny", a.digest), ("bob", "sam_tiny", b.digest)}
    # Bob opening Alice's image computes his own embedding: no key of Alice's is ever read.
    again = segment(a, [[50, 50, 1]], None, "sam_tiny", True, "bob", cache=cache)
    assert again.embed_seconds > 0
    assert np.array_equal(again.masks, result_a.masks)


def test_cache_is_bounded_per_session_and_in_total():
    cache = EmbeddingCache(max_entries=4, per_session=2)
    entry = PreparedState(Embedding(torch.zeros(1), (1, 1), (1, 1)), 0.0)
    for k in range(3):
        cache.put(("alice", "m", f"image{k}"), entry)
    assert [key[2] for key in cache.keys()] == ["image1", "image2"]  # the oldest went first
    for user in ("bob", "carol", "dave"):
        cache.put((user, "m", "x"), entry)
    assert len(cache.keys()) == 4 and ("alice", "m", "image1") not in cache.keys()
    assert cache.get(("alice", "m", "image2")) is entry


def test_concurrent_sessions_get_their_own_masks(random_weights):
    cache = EmbeddingCache()
    images = [prepare_image(photo(k)) for k in range(4)]
    expected = [
        segment(im, [[60, 40, 1]], None, "sam_tiny", False, f"solo{k}", cache=cache)
        for k, im in enumerate(images)
    ]
    results = {}

    def run(k):
        results[k] = segment(
            images[k], [[60, 40, 1]], None, "sam_tiny", False, f"user{k}", cache=cache
        )

    threads = [threading.Thread(target=run, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(4):
        assert np.array_equal(results[k].masks, expected[k].masks)


def test_segment_everything_reports_progress(random_weights):
    seen = []
    result = segment_everything(
        prepare_image(photo()),
        "sam_tiny",
        "s",
        points_per_side=4,
        progress=seen.append,
        cache=EmbeddingCache(),
    )
    assert seen[-1] == 1.0 and result.seconds > 0
    assert all(m.shape == (120, 160) for m in result.masks)


def test_segment_everything_reports_its_best_candidate_when_it_keeps_none(random_weights):
    """An untrained model is sure of nothing: no mask is kept, and the result says how close
    the best one came (the highest predicted IoU over the whole point grid)."""
    prepared = prepare_image(photo())
    cache = EmbeddingCache()
    result = segment_everything(prepared, "sam_tiny", "s", points_per_side=4, cache=cache)
    predictor = SamPredictor(registry.load_model("sam_tiny"))
    predictor.set_image(prepared.pixels)
    h, w = prepared.pixels.shape[:2]
    grid = build_point_grids(4, 0, 1)[0] * np.array([w, h])
    best = max(
        predictor.predict(point[None], np.array([1]), multimask_output=True)[1].max()
        for point in grid
    )
    assert result.masks == [] and result.best_candidate < EVERYTHING_MIN_IOU
    assert result.best_candidate == pytest.approx(best, abs=1e-4)


def test_official_checkpoint_loads_offline_from_a_state_dict(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGDEMO_WEIGHTS", str(tmp_path))
    monkeypatch.delenv("SEGDEMO_DOWNLOAD", raising=False)
    registry.clear_cache()
    assert not registry.is_available("sam_vit_b")
    with pytest.raises(registry.ModelUnavailableError, match="sam_vit_b_01ec64.pth"):
        registry.load_model("sam_vit_b")
    torch.manual_seed(1)
    reference = registry.build_model("sam_vit_b")
    torch.save(reference.state_dict(), tmp_path / "sam_vit_b_01ec64.pth")
    try:
        assert registry.is_available("sam_vit_b") and not registry.is_available("sam_vit_l")
        loaded = registry.load_model("sam_vit_b")
        assert isinstance(loaded, Sam) and loaded.image_encoder.img_size == 1024
        for key, value in reference.state_dict().items():
            assert torch.equal(loaded.state_dict()[key], value), key
        assert "sam_vit_b_01ec64.pth" in registry.model_info("sam_vit_b")["weights"]
    finally:
        registry.clear_cache()


def test_official_loader_refuses_pickled_code(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGDEMO_WEIGHTS", str(tmp_path))
    torch.save({"model": object()}, tmp_path / "sam_vit_b_01ec64.pth")
    registry.clear_cache()
    try:
        with pytest.raises(WeightsError, match="could not be read safely"):
            registry.load_model("sam_vit_b")
    finally:
        registry.clear_cache()


def test_training_batches_are_a_pure_function_of_the_step():
    a, b = make_batch(3), make_batch(3)
    assert torch.equal(a.images, b.images) and np.array_equal(a.targets, b.targets)
    assert a.images.shape[0] * a.images.shape[-1] ** 2 == 8 * 256**2  # same pixels every step
    assert len(a.targets) == 3 * a.images.shape[0] and a.targets.any((1, 2)).all()


def test_one_training_step_reaches_every_part_of_the_model():
    torch.manual_seed(0)
    model = registry.build_model("sam_tiny")
    batch = make_batch(1)  # a 256-pixel step: cheap
    loss = InteractiveTrainer(model)(batch)
    assert torch.isfinite(loss) and loss.item() > 0
    loss.backward()
    parts = ("image_encoder", "prompt_encoder.point_embeddings", "mask_decoder.iou_prediction_head")
    for part in parts:
        grads = [p.grad for n, p in model.named_parameters() if n.startswith(part)]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), part
