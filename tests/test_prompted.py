"""Prompted masks: sam_tiny is a real SAM, a session keeps its own image state and converts
coordinates at its edges, official checkpoints load offline, and the trainer's step is sound."""

import json
import threading

import numpy as np
import pytest
import torch
from segment_anything import SamAutomaticMaskGenerator, SamPredictor
from segment_anything.modeling import Sam
from segment_anything.utils.amg import build_all_layer_point_grids as build_point_grids

from segdemo import imaging, registry
from segdemo.data.composites import make_composite
from segdemo.imaging import prepare_image
from segdemo.prompts import (
    CLICK_RADIUS,
    LEAST_RADIUS,
    Click,
    PromptError,
    Prompts,
    parse_prompts,
    reaching,
    settle_clicks,
)
from segdemo.tasks.prompt_session import PromptSession, working_prompts
from segdemo.tasks.prompted import prompter_for, propose, segment_everything
from segdemo.tasks.sam_prompter import EVERYTHING_MIN_IOU
from segdemo.train.sam_tiny import InteractiveTrainer, make_batch
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


def test_a_session_works_in_working_pixels_and_converts_at_its_edges(random_weights, monkeypatch):
    big = np.repeat(np.repeat(photo(), 10, axis=0), 10, axis=1)  # 1200×1600: downscaled
    image = prepare_image(big)
    assert image.resized and image.size == (768, 1024)
    hashed = []
    monkeypatch.setattr(imaging, "pixel_digest", lambda pixels: hashed.append(1) or "d")
    prompts = parse_prompts("[[800, 600, 1]]", "", image.original_size)  # original pixels
    session = PromptSession.open(image, "sam_tiny").replay(working_prompts(prompts, image))
    assert session.prompts == (Click(512.0, 384.0, True),)  # working pixels inside
    assert session.current.masks.shape == (3, 768, 1024) and session.state.seconds > 0
    assert session.original_mask().shape == (1200, 1600)
    point = {"kind": "point", "x": 800.0, "y": 600.0, "label": 1}
    assert json.loads(session.original_prompts_json()) == [point]
    again = session.click(Click(600.0, 400.0, False)).click(Click(610.0, 410.0, True))
    assert again.state is session.state  # the image is prepared once per session
    for _ in range(3):
        assert image.digest == "d"
    assert len(hashed) == 1  # and hashed at most once
    with pytest.raises(PromptError, match="at least one prompt"):
        propose(session.prompter, session.state, Prompts())


def test_clicked_pixels_keep_their_label(random_weights):
    """Whatever an untrained decoder returns, a positive click's spot is in every mask and a
    negative click's is out, at the original size of a downscaled upload."""
    image = prepare_image(photo(size=(1200, 1600)))
    assert image.resized
    opened = PromptSession.open(image, "sam_tiny")

    def masks(points):
        prompts = working_prompts(parse_prompts(points, "", image.original_size), image)
        step = opened.replay(prompts).current
        return np.stack([image.mask_to_original(m) for m in step.masks])

    clicked = masks("[[400, 300, 1], [1000, 800, 0]]")
    assert clicked.shape[1:] == (1200, 1600)
    assert clicked[:, 300, 400].all() and not clicked[:, 800, 1000].any()
    flipped = masks("[[400, 300, 0], [1000, 800, 1]]")
    assert not flipped[:, 300, 400].any() and flipped[:, 800, 1000].all()


def test_settle_clicks_sets_a_disc_of_each_clicks_label():
    masks = np.zeros((2, 100, 200), bool)
    masks[1] = True
    settled = settle_clicks(masks, [Click(50.0, 40.0, True), Click(199.0, 0.0, False)])
    radius = CLICK_RADIUS * 200  # 5 pixels
    rows, cols = np.ogrid[:100, :200]
    first = (cols - 50) ** 2 + (rows - 40) ** 2 <= radius**2
    second = (cols - 199) ** 2 + rows**2 <= radius**2
    assert np.array_equal(settled[0], first)  # only the positive disc was added
    assert np.array_equal(settled[1], ~second)  # only the negative disc was removed
    assert not masks[0].any() and masks[1].all()  # the input is left as it was


def test_a_click_settles_no_farther_than_the_edge_of_the_mask_shown():
    shown = np.zeros((100, 200), bool)
    shown[20:80, 40:120] = True  # the mask on screen; long side 200: a full disc of 5 pixels
    full = CLICK_RADIUS * 200
    assert reaching(Click(150.0, 50.0, True), None).radius is None  # no mask yet: the full disc
    assert reaching(Click(150.0, 50.0, True), shown).radius == full  # far from the edge
    beside = reaching(Click(122.0, 50.0, True), shown)  # a positive click 3 px off the edge
    assert beside.radius == 3.0
    inside = reaching(Click(117.0, 50.0, False), shown)  # a negative one 3 px inside it
    assert inside.radius == 3.0
    assert reaching(Click(120.0, 50.0, True), shown).radius == LEAST_RADIUS  # on the edge
    # The settled disc stops at the edge: it reaches the mask's last column, not past it.
    settled = settle_clicks(np.zeros((1, 100, 200), bool), [beside])[0]
    assert settled[50, 119:126].tolist() == [True] * 7 and not settled[50, 126]
    assert not settled[50, 118]
    cleared = settle_clicks(shown[None], [inside])[0]
    assert not cleared[50, 114:121].any() and cleared[50, 113]


def test_a_session_fixes_each_clicks_disc_when_it_is_made(random_weights):
    """The second click's disc is fixed by the mask shown after the first, and a replay of the
    same prompts (the JSON's, ``/prompt_segment``'s) fixes the same discs and masks."""
    image = prepare_image(photo(3))
    session = PromptSession.open(image, "click_net").click(Click(80.0, 60.0, True))
    shown = session.current.mask
    ys, xs = np.nonzero(shown)
    edge = Click(float(xs.max()) + 2.0, float(ys[np.argmax(xs)]), True)  # just off its edge
    session = session.click(edge)
    assert session.prompts[0].radius is None
    assert session.prompts[1].radius == reaching(edge, shown).radius < CLICK_RADIUS * 160
    replayed = session.replay([Click(80.0, 60.0, True), edge])
    assert replayed.prompts == session.prompts
    assert [p.radius for p in replayed.prompts] == [p.radius for p in session.prompts]
    assert np.array_equal(replayed.current.mask, session.current.mask)


def test_concurrent_sessions_get_their_own_masks(random_weights):
    """Four pages click at once, each its own photo and its own correction (refined on the
    photo, the default): each gets exactly the masks it gets alone."""
    images = [prepare_image(photo(k)) for k in range(4)]

    def clicked(k: int) -> PromptSession:
        session = PromptSession.open(images[k], "sam_tiny")
        session = session.click(Click(60.0, 40.0, True), False)
        return session.click(Click(20.0 + 35 * k, 100.0, False), False)

    expected = [clicked(k) for k in range(4)]
    assert all(e.refined for e in expected)
    masks = [e.current.mask for e in expected]
    assert all(not np.array_equal(a, b) for i, a in enumerate(masks) for b in masks[i + 1 :])
    results = {}

    def run(k):
        results[k] = clicked(k)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(4):
        assert np.array_equal(results[k].current.masks, expected[k].current.masks)


def test_segment_everything_reports_progress(random_weights):
    seen = []
    session = PromptSession.open(prepare_image(photo()), "sam_tiny")
    result = segment_everything(
        session.prompter, session.state, session.image.pixels, 4, progress=seen.append
    )
    assert seen[-1] == 1.0 and result.seconds > 0
    assert all(m.shape == (120, 160) for m in result.masks)


def test_segment_everything_reports_its_best_candidate_when_it_keeps_none(random_weights):
    """An untrained model is sure of nothing: no mask is kept, and the result says how close
    the best one came (the highest predicted IoU over the whole point grid)."""
    prepared = prepare_image(photo())
    prompter = prompter_for("sam_tiny")
    result = segment_everything(prompter, prompter.prepare(prepared.pixels), prepared.pixels, 4)
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
