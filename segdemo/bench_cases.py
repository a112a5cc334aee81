"""The model cases of ``python -m segdemo.bench``: each timed in a fresh process.

Each case runs in its own spawned process (so its peak memory is its own) on 2 CPU threads:
one warm-up call, then the timed calls, reported as the median and the 90th percentile. The
references run on the same machine and inputs: torchvision's ``maskrcnn_resnet50_fpn`` and SAM
ViT-B, randomly initialised (the same compute as the released checkpoints, which cannot be
downloaded here).
"""

from __future__ import annotations

import itertools
import multiprocessing
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

THREADS = 2


@dataclass(frozen=True)
class Case:
    label: str  # what is timed, as the table shows it
    needs: tuple[str, ...]  # registry names that must be available (shipped or official)
    setup: str  # name of a function in this module returning the callable to time
    reference_for: str | None = None  # the case this one is the yardstick of
    runs: int | None = None  # timed runs, when this case is too slow for the default count


CASES = (
    Case("patch_classifier, 480×640", ("patch_classifier",), "setup_patch"),
    Case("upsample_transposed, 480×640", ("upsample_transposed",), "setup_upsample_transposed"),
    Case("upsample_bilinear, 480×640", ("upsample_bilinear",), "setup_upsample_bilinear"),
    Case("unet, 512×512", ("unet",), "setup_unet"),
    Case("unet_noskip, 512×512", ("unet_noskip",), "setup_unet_noskip"),
    Case("maskrcnn, 640×480", ("maskrcnn",), "setup_maskrcnn"),
    Case(
        "maskrcnn_resnet50_fpn (reference), 640×480", (), "setup_maskrcnn_r50", "maskrcnn, 640×480"
    ),
    Case(
        "click_net first click (whole image and close-up), 640×480",
        ("click_net",),
        "setup_click_net_first",
    ),
    Case("click_net later click (zoom-in crop), 640×480", ("click_net",), "setup_click_net_click"),
    Case(
        "click_net + refinement, first click, 640×480",
        ("click_net",),
        "setup_refined_click_net_first",
    ),
    Case(
        "click_net + refinement, later click, 640×480",
        ("click_net",),
        "setup_refined_click_net_click",
    ),
    Case(
        "click_net + refinement, first click on the real photos, 640×480",
        ("click_net",),
        "setup_refined_click_net_real_first",
        runs=24,
    ),
    Case(
        "the same, its two cuts one after the other (no helper)",
        ("click_net",),
        "setup_refined_click_net_real_first_alone",
        runs=24,
    ),
    Case("sam_tiny image embedding, 640×480", ("sam_tiny",), "setup_sam_tiny_embed"),
    Case("sam_tiny click, 640×480", ("sam_tiny",), "setup_sam_tiny_click"),
    Case(
        "sam_tiny + refinement, later click, 640×480",
        ("sam_tiny",),
        "setup_refined_sam_tiny_click",
    ),
    Case(
        "SAM ViT-B image embedding (reference), 640×480",
        (),
        "setup_vit_b_embed",
        "sam_tiny image embedding, 640×480",
    ),
    Case(
        "SAM ViT-B click (reference), 640×480", (), "setup_vit_b_click", "sam_tiny click, 640×480"
    ),
    Case(
        "train on image: 3 flower models, 100 steps each, 192×256",
        ("patch_classifier", "upsample_transposed", "upsample_bilinear"),
        "setup_finetune",
        runs=3,
    ),
)


def flower_photo(size=(480, 640)) -> np.ndarray:
    from segdemo.data.flowers import make_flowers

    return make_flowers(0, "val", size).image


def real_photos(size=(480, 640)) -> dict[str, np.ndarray]:
    """The prompted tab's real example photos (scikit-image's, ``examples.photo_examples``)
    at ``size``: what a user uploads, where the refinement's cut works harder than on a
    generated picture (colours that tell object from background apart less clearly)."""
    from segdemo.examples import photo_examples

    return {
        Path(path).stem: np.asarray(
            Image.open(path).convert("RGB").resize(size[::-1], Image.BICUBIC)
        )
        for path in photo_examples()
    }


def _scene(size) -> np.ndarray:
    from segdemo.data.scenes import make_scene

    return make_scene(0, "val", size).image


def setup_patch() -> Callable:
    from segdemo.tasks.patch_classify import classify_segment

    image = flower_photo()
    return lambda: classify_segment(image)


def _setup_upsample(name: str) -> Callable:
    from segdemo.tasks.upsample import predict

    image = flower_photo()
    return lambda: predict(name, image)


def setup_upsample_transposed() -> Callable:
    return _setup_upsample("upsample_transposed")


def setup_upsample_bilinear() -> Callable:
    return _setup_upsample("upsample_bilinear")


def _setup_semantic(name: str) -> Callable:
    from segdemo.tasks.semantic import segment

    image = _scene((512, 512))
    return lambda: segment(image, name)


def setup_unet() -> Callable:
    return _setup_semantic("unet")


def setup_unet_noskip() -> Callable:
    return _setup_semantic("unet_noskip")


def _setup_detector(model) -> Callable:
    from segdemo.tasks.instances import detect

    image = _scene((480, 640))
    return lambda: detect(model, image)


def setup_maskrcnn() -> Callable:
    from segdemo.registry import load_model

    return _setup_detector(load_model("maskrcnn"))


def setup_maskrcnn_r50() -> Callable:
    import torch

    from segdemo.registry import build_model

    torch.manual_seed(0)
    return _setup_detector(build_model("maskrcnn_resnet50_fpn_coco").eval())


def _prompter(name: str, model=None):
    """The prompter of a registered model, or of ``model`` (a reference built here)."""
    from segdemo.tasks.prompted import prompter_for
    from segdemo.tasks.sam_prompter import SamPrompter

    return prompter_for(name) if model is None else SamPrompter(model.eval())


def _setup_embed(prompter) -> Callable:
    image = flower_photo()
    return lambda: prompter.prepare(image)


def _setup_click(prompter, zoomed: bool = False) -> Callable:
    """A single positive click in the middle of a 640×480 photo; ``zoomed``: a second click
    beside it, with the first click's mask fed back (the click model then runs on its zoom-in
    crop, as on every click after the first)."""
    from segdemo.prompts import Click, Prompts

    image = prompter.prepare(flower_photo())
    first = Prompts((Click(320.0, 240.0, True),))
    if not zoomed:
        return lambda: prompter.predict(image, first, None, prompter.multimask)
    feedback = prompter.predict(image, first, None, False).feedback[0]
    second = Prompts((*first.clicks, Click(340.0, 250.0, True)))
    return lambda: prompter.predict(image, second, feedback, False)


def _setup_refined_click(prompter, zoomed: bool = False) -> Callable:
    """As ``_setup_click``, through the app's rules with the refinement on the photo: the
    network's proposal, the graph cut, the clicked discs (what a picture click runs)."""
    from segdemo.prompts import Click, Prompts, reaching
    from segdemo.tasks.prompted import propose

    photo = flower_photo()
    image = prompter.prepare(photo)
    first = Prompts((Click(320.0, 240.0, True),))
    if not zoomed:
        return lambda: propose(prompter, image, first, photo=photo)
    shown = propose(prompter, image, first, multimask=False, photo=photo)
    second = Prompts((*first.clicks, reaching(Click(340.0, 250.0, True), shown.masks[0])))
    return lambda: propose(
        prompter, image, second, shown.feedback[0], photo=photo, previous=shown.masks[0]
    )


def _setup_real_first_clicks(helper: bool) -> Callable:
    """First clicks on the four real photos in turn, three places on each (where the server
    benchmark's clicks start over on a new object, its warm-up's included), through the app's
    rules with the refinement on the photo; a lone click's two cuts on the two cores
    (``helper``) or one after the other."""
    from segdemo.bench_clicks import WARM_UP, click_points
    from segdemo.bench_server import NEW_OBJECT_EVERY, SERVER_CLICKS
    from segdemo.prompts import Click, Prompts, reaching
    from segdemo.tasks import refine_helper
    from segdemo.tasks.prompted import propose

    refine_helper.SECOND_CORE.enabled = helper
    prompter = _prompter("click_net")
    clicks = []
    for photo in real_photos().values():
        image = prompter.prepare(photo)
        for x, y, _ in click_points(photo.shape[:2], SERVER_CLICKS + WARM_UP)[::NEW_OBJECT_EVERY]:
            clicks.append((photo, image, Prompts((reaching(Click(x, y, True), None),))))
    turns = itertools.cycle(clicks)

    def first_click():
        photo, image, prompts = next(turns)
        return propose(prompter, image, prompts, photo=photo)

    return first_click


def _random_vit_b():
    import torch

    from segdemo.registry import build_model

    torch.manual_seed(0)
    return build_model("sam_vit_b")


def setup_click_net_first() -> Callable:
    return _setup_click(_prompter("click_net"))


def setup_click_net_click() -> Callable:
    return _setup_click(_prompter("click_net"), zoomed=True)


def setup_refined_click_net_first() -> Callable:
    return _setup_refined_click(_prompter("click_net"))


def setup_refined_click_net_click() -> Callable:
    return _setup_refined_click(_prompter("click_net"), zoomed=True)


def setup_refined_click_net_real_first() -> Callable:
    return _setup_real_first_clicks(helper=True)


def setup_refined_click_net_real_first_alone() -> Callable:
    return _setup_real_first_clicks(helper=False)


def setup_refined_sam_tiny_click() -> Callable:
    return _setup_refined_click(_prompter("sam_tiny"), zoomed=True)


def setup_sam_tiny_embed() -> Callable:
    return _setup_embed(_prompter("sam_tiny"))


def setup_sam_tiny_click() -> Callable:
    return _setup_click(_prompter("sam_tiny"))


def setup_vit_b_embed() -> Callable:
    return _setup_embed(_prompter("sam_vit_b", _random_vit_b()))


def setup_vit_b_click() -> Callable:
    return _setup_click(_prompter("sam_vit_b", _random_vit_b()))


def setup_finetune() -> Callable:
    import torch

    from segdemo.data.flowers import make_flowers
    from segdemo.tasks.finetune import finetune, grid_strokes

    sample = make_flowers(3, "val", (192, 256))
    fg, bg = grid_strokes(sample.mask)

    def train():
        with torch.inference_mode(False):  # the cases run in inference mode; training needs grads
            return finetune(255 - sample.image, fg, bg, steps=100)

    return train


def percentiles(seconds: list[float]) -> dict[str, float]:
    ms = 1000 * np.asarray(seconds)
    return {"median_ms": float(np.median(ms)), "p90_ms": float(np.percentile(ms, 90))}


def _measure(setup_name: str, repeats: int) -> dict[str, float]:
    """Runs in a child process: time the case and report the process's peak memory."""
    import torch

    torch.set_num_threads(THREADS)
    with torch.inference_mode():
        fn = globals()[setup_name]()
        fn()  # warm-up: first calls allocate and pick kernels
        times = []
        for _ in range(repeats):
            began = time.perf_counter()
            fn()
            times.append(time.perf_counter() - began)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {**percentiles(times), "peak_mb": peak_mb}


def _baseline_memory() -> dict[str, float]:
    import torch  # noqa: F401  (the memory every case pays before its model loads)

    import segdemo.models  # noqa: F401

    return {"peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run_cases(repeats: int, reference_repeats: int) -> tuple[list[dict], float]:
    from segdemo.registry import is_available

    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        baseline = pool.apply(_baseline_memory)["peak_mb"]
    rows = []
    for case in CASES:
        missing = [name for name in case.needs if not is_available(name)]
        if missing:
            print(f"skip {case.label}: {', '.join(missing)} not available")
            continue
        count = case.runs or (reference_repeats if case.reference_for else repeats)
        print(f"measuring {case.label} ({count} runs)", flush=True)
        with context.Pool(1) as pool:  # a fresh process per case: peak memory is its own
            result = pool.apply(_measure, (case.setup, count))
        rows.append({"case": case, "runs": count, **result})
    return rows, baseline
