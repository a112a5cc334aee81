"""The early-fusion click model: its input maps, the zoom-in window and its way back to the
original pixels, its trainer, and the prompt session it runs in."""

import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from scipy.ndimage import binary_dilation

from segdemo import registry
from segdemo.clicks import iou
from segdemo.data.composites import make_composite
from segdemo.imaging import prepare_image
from segdemo.models.click_net import Merge
from segdemo.models.unet import ConvBNReLU
from segdemo.prompts import Box, Click, PromptError, Prompts, parse_prompts
from segdemo.registry import ModelUnavailableError
from segdemo.tasks.click_model import (
    CLOSE_UP,
    MIN_WINDOW,
    ClickPrompter,
    click_maps,
    focus_window,
)
from segdemo.tasks.prompt_session import PromptSession, working_prompts
from segdemo.tasks.promptable import ImageState, Prediction
from segdemo.tasks.prompted import prompter_for, propose, segment_everything
from segdemo.tasks.refine import edge_contrast
from segdemo.train.click_net import IterativeTrainer, make_batch, scattered_clicks
from segdemo.ui import picture_ops
from segdemo.ui.picture_store import PictureStore, new_token

torch.set_num_threads(2)


def photo(index: int = 0, size=(120, 160)) -> np.ndarray:
    return make_composite(index, "val", size).image


def test_the_network_takes_image_clicks_and_mask_at_any_size():
    net = registry.build_model("click_net").eval()
    with torch.no_grad():
        for h, w in ((64, 80), (37, 301), (256, 32)):
            assert net(torch.rand(1, 6, h, w)).shape == (1, 1, h, w)


def test_inference_gives_the_layers_own_function(as_trained):
    """Eval mode folds each norm into its convolution, keeps the folded weights, and merges
    a decoder level without concatenating: the same function as the layers as written."""
    torch.manual_seed(0)
    net = as_trained(registry.build_model("click_net")).eval()
    inputs = torch.rand(1, 6, 70, 45)

    def as_written() -> torch.Tensor:
        originals = {}
        for module in net.modules():
            if isinstance(module, ConvBNReLU):
                originals[module] = module.forward
                module.forward = lambda x, m=module: torch.relu(m[1](m[0](x)))
            elif isinstance(module, Merge):
                originals[module] = module.forward
                module.forward = lambda x, skip, m=module: m.refine(
                    m.reduce(
                        torch.cat(
                            [F.interpolate(x, size=skip.shape[-2:], mode="bilinear"), skip], 1
                        )
                    )
                )
        try:
            return net(inputs)
        finally:
            for module, forward in originals.items():
                module.forward = forward

    with torch.no_grad():
        fast = net(inputs)
        torch.testing.assert_close(fast, as_written(), atol=1e-4, rtol=1e-4)
        net.load_state_dict(registry.build_model("click_net").state_dict())  # new weights
        again = net(inputs)  # the kept folded weights follow them
        torch.testing.assert_close(again, as_written(), atol=1e-4, rtol=1e-4)
    assert not torch.allclose(fast, again)
    with torch.inference_mode():  # a model built there (its tensors count no changes) runs too
        built_there = registry.build_model("click_net").eval()
        built_there.load_state_dict(net.state_dict())
        torch.testing.assert_close(built_there(inputs), again)


def test_click_maps_put_disks_in_their_channels():
    maps = click_maps([[Click(10, 20, True), Click(0, 0, False)], []], (40, 50), radius=3)
    assert maps.shape == (2, 2, 40, 50)
    assert maps[0, 0, 20, 10] == 1 and maps[0, 0, 20, 14] == 0 and maps[0, 0].sum() == 29
    assert maps[0, 1, 0, 0] == 1 and maps[0, 1, 3, 0] == 1 and maps[0, 1, 4, 0] == 0
    assert maps[1].sum() == 0


def window_of(previous, points, labels, size, box=None, expand=1.4):
    clicks = tuple(Click(x, y, bool(k)) for (x, y), k in zip(points, labels, strict=True))
    prompts = Prompts(clicks, None if box is None else Box(*box))
    return focus_window(previous, prompts, size, expand)


def test_first_click_sees_the_whole_image_and_later_ones_zoom_in():
    size = (300, 400)
    assert window_of(None, [[5, 5]], [1], size).shape == size
    previous = np.zeros(size, bool)
    previous[100:120, 200:240] = True  # 20 × 40 px: the window is at least 80 px a side
    window = window_of(previous, [[210, 110]], [1], size)
    assert window.shape == (int(MIN_WINDOW * 400), int(MIN_WINDOW * 400))
    assert window.top <= 100 and window.bottom >= 120 and window.left <= 200
    assert window.right >= 240


@pytest.mark.parametrize(
    "size, corner",
    [((300, 400), (0, 0)), ((300, 400), (399, 299)), ((40, 320), (319, 0)), ((320, 40), (0, 319))],
)
def test_the_window_stays_inside_the_image_and_holds_the_clicks(size, corner):
    """A click at an image corner, an object touching the border, 1:8 aspect ratios."""
    h, w = size
    previous = np.zeros(size, bool)
    x, y = corner
    previous[max(0, y - 30) : y + 30, max(0, x - 30) : x + 30] = True  # touches the border
    window = window_of(previous, [corner, [w / 2, h / 2]], [1, 1], size)
    assert 0 <= window.top < window.bottom <= h and 0 <= window.left < window.right <= w
    assert window.top <= y < window.bottom and window.left <= x < window.right
    rows, cols = window.slices()
    assert previous[rows, cols].sum() == previous.sum()  # the whole mask is in view


def test_a_lone_click_gets_the_whole_view_and_a_close_up(random_weights):
    """Two proposals for a lone click: the whole image's and a close-up around the click,
    which changes nothing outside its window. The network alone keeps the whole view first;
    refined, the photo's edges rank them."""
    image = prepare_image(photo(size=(300, 400)))
    click = Click(300.0, 80.0, True)
    alone = PromptSession.open(image, "click_net", refined=False).click(click).current
    assert len(alone.masks) == 2 and alone.chosen == 0
    close = CLOSE_UP * 400
    outside = np.ones((300, 400), bool)
    outside[max(0, int(80 - close / 2)) : int(80 + close / 2) + 1, int(300 - close / 2) :] = False
    assert not alone.masks[1][outside].any() and alone.masks[1][80, 300]
    refined = PromptSession.open(image, "click_net").click(click).current
    contrast = edge_contrast(image.pixels, refined.masks)
    assert refined.scores == pytest.approx(contrast, rel=1e-5)
    assert refined.chosen == int(np.argmax(contrast))


@pytest.mark.parametrize("box", [None, Box(60, 40, 300, 260)])
def test_a_lone_clicks_own_mask_is_handed_over_before_the_close_up_runs(
    random_weights, monkeypatch, box
):
    """The page's draft: the mask the network alone shows (its whole view) is handed over as
    soon as it is computed, before the close-up, and is the one the prediction ranks first."""
    prompter = prompter_for("click_net")
    image = prompter.prepare(photo(2, size=(300, 400)))
    runs, handed = [], []
    run = ClickPrompter._run
    monkeypatch.setattr(ClickPrompter, "_run", lambda self, *a: runs.append(1) or run(self, *a))
    prompts = Prompts((Click(180.0, 150.0, True),), box)
    prediction = prompter.predict(
        image, prompts, None, True, lambda mask: handed.append((len(runs), mask))
    )
    [(runs_before, mask)] = handed
    assert runs_before == 1 and len(runs) == 2 and len(prediction.masks) == 2
    assert prediction.best == 0 and np.array_equal(mask, prediction.masks[0])


@pytest.mark.parametrize("shape", [(120, 160), (40, 320), (320, 40)])
def test_a_zoomed_prediction_lands_on_the_original_pixels(random_weights, shape):
    """Outside the window the previous answer stands; inside it changes; the clicked spot
    keeps its label at the original size of a downscaled upload, at an image corner too."""
    big = prepare_image(photo(size=(shape[0] * 10, shape[1] * 10)))
    assert big.resized
    h, w = big.original_size
    corner = working_prompts(parse_prompts(f"[[{w - 1}, {h - 1}, 1]]", "", (h, w)), big)
    opened = PromptSession.open(big, "click_net")
    first = opened.click(corner[0], False)
    assert first.original_mask().shape == (h, w) and first.original_mask()[h - 1, w - 1]
    previous = np.zeros(big.size, np.float32)
    previous[-5:, -5:] = 0.9  # a small mask in the far corner: a tight zoom-in window
    second_click = working_prompts([Click(w - 3, h - 3, True)], big)[0]
    prompts = Prompts((corner[0], second_click))
    second = propose(opened.prompter, opened.state, prompts, previous, False)
    probability = second.feedback[0]
    window = focus_window(
        previous > 0.5, prompts, big.size, registry.load_model("click_net").config.expand
    )
    outside = np.ones(big.size, bool)
    outside[window.slices()] = False
    assert outside.any() and np.array_equal(probability[outside], previous[outside])
    assert big.mask_to_original(second.masks[0])[h - 1, w - 1]


def test_a_box_is_the_window_and_nothing_outside_it_is_masked(random_weights):
    session = PromptSession.open(prepare_image(photo(size=(240, 320))), "click_net")
    mask = session.click(Box(40, 30, 200, 180)).current.mask
    outside = np.ones((240, 320), bool)
    outside[30:181, 40:201] = False
    assert not mask[outside].any()


def test_training_batches_are_a_pure_function_of_the_step():
    a, b = make_batch(3), make_batch(3)
    assert torch.equal(a.images, b.images) and np.array_equal(a.targets, b.targets)
    assert a.images.shape == (8, 3, 224, 224) and a.targets.any((1, 2)).all()


def test_scattered_clicks_lie_on_their_side_of_the_object():
    rng = np.random.default_rng(0)
    truth = np.zeros((100, 100), bool)
    truth[20:60, 30:80] = True
    clicks = [c for _ in range(20) for c in scattered_clicks(rng, truth, 3.0)]
    assert clicks and {c.positive for c in clicks} == {True, False}
    assert all(truth[c.y, c.x] == c.positive for c in clicks)


def test_one_training_step_reaches_every_layer():
    torch.manual_seed(0)
    net = registry.build_model("click_net")
    loss = IterativeTrainer(net)(make_batch(1))
    assert torch.isfinite(loss) and loss.item() > 0
    loss.backward()
    for name, parameter in net.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


@pytest.mark.parametrize("refined", [True, False], ids=["refined", "network alone"])
def test_replaying_the_prompts_gives_the_masks_of_clicking_them(random_weights, refined):
    image = prepare_image(photo(3, (240, 320)))
    prompts = [Click(100, 80, True), Click(40, 200, False), Box(20, 20, 300, 220)]
    session = PromptSession.open(image, "click_net", refined)
    for prompt in [*prompts, Click(150, 120, True)]:
        session = session.click(prompt)
    replayed = session.replay(session.prompts)
    assert len(replayed.steps) == len(session.steps) == 4
    for clicked, again in zip(session.steps, replayed.steps, strict=True):
        assert np.array_equal(clicked.mask, again.mask)
    parsed = parse_prompts(session.original_prompts_json(), "", image.original_size)
    assert parsed == list(session.prompts)  # the JSON the tab shows round-trips


def test_a_failed_model_call_leaves_the_state_as_it_was(random_weights, tmp_path, monkeypatch):
    """A change whose model call fails (here: an official checkpoint that is not on this
    machine) changes nothing: prompts and masks stay in step, and the next undo removes the
    prompt before it and shows that prompt's mask."""
    if registry.is_available("sam_vit_h"):
        pytest.skip("the ViT-H checkpoint is on this machine")
    path = tmp_path / "photo.png"
    Image.fromarray(photo(4, (240, 320))).save(path)
    store, token = PictureStore(), new_token()
    monkeypatch.setattr(picture_ops, "STORE", store)
    monkeypatch.setattr(picture_ops, "_openable", str)
    picture_ops.perform(token, {"op": "open", "path": str(path)})
    for x in (60, 120):
        prompt = {"kind": "point", "x": x, "y": 100, "label": 1}
        picture_ops.perform(token, {"op": "prompt", "prompt": prompt})
    before = store.get(token)
    with pytest.raises(ModelUnavailableError, match="sam_vit_h_4b8939.pth"):
        picture_ops.perform(token, {"op": "model", "model": "sam_vit_h"})
    assert store.get(token) is before
    session = before.session
    assert session.model == "click_net" and len(session.prompts) == len(session.steps) == 2
    undone = picture_ops.perform(token, {"op": "undo"})[0].session
    assert undone.prompts == session.prompts[:1]
    first_only = session.replay(undone.prompts)
    assert np.array_equal(undone.current.mask, first_only.current.mask)
    too_many = PromptSession(
        image=session.image,
        model="click_net",
        prompter=session.prompter,
        state=session.state,
        prompts=(session.prompts[0],) * 64,
    )
    with pytest.raises(PromptError, match="64 prompts"):
        too_many.click(Click(5, 5, False))


@pytest.mark.parametrize("refined", [True, False], ids=["refined", "network alone"])
def test_changing_the_model_replays_every_step_with_the_new_model(random_weights, refined):
    image = prepare_image(photo(5, (240, 320)))
    prompts = [Click(100, 80, True), Click(200, 150, False)]
    clicked = PromptSession.open(image, "click_net", refined).replay(prompts)
    changed = clicked.with_model("sam_tiny")
    assert changed.model == "sam_tiny" and changed.prompts == clicked.prompts
    assert changed.refined is refined  # a model change keeps the refinement as it was
    with_sam = PromptSession.open(image, "sam_tiny", refined).replay(prompts)
    assert len(changed.steps[0].masks) == 3  # SAM's three masks for the lone first click
    for a, b in zip(changed.steps, with_sam.steps, strict=True):
        assert np.array_equal(a.mask, b.mask)
    back = changed.with_model("click_net")
    for a, b in zip(back.steps, clicked.steps, strict=True):
        assert np.array_equal(a.mask, b.mask)


def test_two_sessions_clicking_at_once_get_their_own_masks(random_weights):
    images = [prepare_image(photo(k, (120, 160))) for k in range(4)]
    clicks = [Click(30 + 20 * k, 40 + 10 * k, True) for k in range(4)]
    expected = [PromptSession.open(im, "click_net").click(clicks[k]) for k, im in enumerate(images)]
    results = {}

    def run(k):
        results[k] = PromptSession.open(images[k], "click_net").click(clicks[k])

    threads = [threading.Thread(target=run, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(4):
        assert np.array_equal(results[k].current.mask, expected[k].current.mask)
        assert results[k].state is not expected[k].state  # each session prepared its own


class RegionPrompter:
    """A stand-in prompter that answers a click with the labelled region under it."""

    design, multimask = "test", False

    def __init__(self, regions: np.ndarray, score: float = 0.9, spill: int = 0):
        self.regions, self.score, self.spill = regions, score, spill

    def prepare(self, pixels):
        return ImageState(None, 0.0)

    def predict(self, image, prompts, feedback, multimask, early=None):
        x, y = prompts.points[0].astype(int)
        mask = self.regions == self.regions[y, x]
        if self.spill:
            mask = binary_dilation(mask, iterations=self.spill)
        return Prediction(mask[None], np.array([self.score], np.float32), (None,))

    def shown(self, feedback, mask):
        return feedback


def test_segment_everything_keeps_each_object_once():
    regions = np.zeros((80, 80), np.int32)
    regions[:, 40:] = 1  # half the image: many grid points land on it
    regions[10:30, 10:30] = 2
    regions[60:61, 5:6] = 3  # one pixel: under the size floor, and no grid point hits it
    seen, pixels = [], np.zeros((80, 80, 3), np.uint8)
    kept = segment_everything(RegionPrompter(regions), None, pixels, 4, seen.append, False)
    found = [int(np.bincount(regions[m]).argmax()) for m in kept.masks]
    assert found == [1, 0, 2]  # largest first
    assert kept.scores == pytest.approx([0.9] * 3) and kept.best_candidate == pytest.approx(0.9)
    assert seen[-1] == 1.0 and len(seen) == 16
    unsure = segment_everything(RegionPrompter(regions, 0.5), None, pixels, 4, None, False)
    assert unsure.masks == [] and unsure.best_candidate == pytest.approx(0.5)


def test_segment_everything_refines_each_mask_and_keeps_distinct_ones():
    regions = np.zeros((80, 80), np.int32)
    regions[:, 40:] = 1
    regions[:20, :20] = 2  # in a corner: a square inside another region would be its hole
    colours = np.array([[40, 150, 60], [200, 40, 40], [40, 60, 200]])
    noise = np.random.default_rng(0).normal(0, 10, (80, 80, 3))
    pixels = np.clip(colours[regions] + noise, 0, 255).astype(np.uint8)
    spilling = RegionPrompter(regions, spill=4)  # every mask 4 pixels too wide
    rough = segment_everything(spilling, None, pixels, 4, None, False)
    refined = segment_everything(spilling, None, pixels, 4, None, True)
    truths = [regions == k for k in range(3)]
    assert len(refined.masks) == 3  # the many clicks on one region gave one mask
    for truth in truths:
        before = max(iou(m, truth) for m in rough.masks)
        after = max(iou(m, truth) for m in refined.masks)
        assert after > max(0.97, before), (before, after)


class GeneratingPrompter(RegionPrompter):
    """A stand-in for a model with a mask generator of its own (SAM's automatic one): it
    returns every region, each spilled, and the largest twice, the second copy shifted."""

    def everything(self, image, pixels, points_per_side, turn, progress=None):
        with turn():
            masks = [
                binary_dilation(self.regions == k, iterations=self.spill)
                for k in np.unique(self.regions)
            ]
        masks.append(np.roll(masks[1], 1, axis=1))
        return masks, [self.score] * len(masks), self.score


def test_segment_everything_refines_a_generators_masks_and_keeps_distinct_ones():
    """The generator's path refines each of its masks on the photo before masks of the same
    object are merged, as the grid's path does."""
    regions = np.zeros((80, 80), np.int32)
    regions[:, 40:] = 1
    regions[:20, :20] = 2
    colours = np.array([[40, 150, 60], [200, 40, 40], [40, 60, 200]])
    noise = np.random.default_rng(0).normal(0, 10, (80, 80, 3))
    pixels = np.clip(colours[regions] + noise, 0, 255).astype(np.uint8)
    generating = GeneratingPrompter(regions, spill=4)
    rough = segment_everything(generating, None, pixels, 4, None, False)
    refined = segment_everything(generating, None, pixels, 4, None, True)
    assert len(refined.masks) == 3  # the shifted copy was the same object
    for truth in (regions == k for k in range(3)):
        before = max(iou(m, truth) for m in rough.masks)
        after = max(iou(m, truth) for m in refined.masks)
        assert after > max(0.97, before), (before, after)


def test_segment_everything_runs_the_click_model(random_weights):
    pixels = prepare_image(photo()).pixels
    prompter = prompter_for("click_net")
    result = segment_everything(prompter, prompter.prepare(pixels), pixels, 4)
    assert result.points == 16 and result.seconds > 0 and 0 <= result.best_candidate <= 1
    assert all(m.shape == (120, 160) for m in result.masks)
