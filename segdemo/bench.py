"""``python -m segdemo.bench``: speed and memory of every model and endpoint, beside references.

Each model case runs in a fresh process (so its peak memory is its own) on 2 CPU threads:
one warm-up call, then ``--repeats`` timed calls; the table gives the median and the 90th
percentile. The references run in the same invocation, on the same machine and inputs:
torchvision's ``maskrcnn_resnet50_fpn`` and SAM ViT-B, randomly initialised (the same compute as
the released checkpoints, which cannot be downloaded here). Then the app is started and every
endpoint is timed end to end through ``gradio_client``; then clicks in the prompted tab are
timed in Chromium, from the pointer event to the frame that shows the mask, and simulated users
load one server (``bench_clicks``). Results go to ``docs/benchmarks.md`` and
``docs/benchmarks.png``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segdemo.weights import REPO_ROOT

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
    Case("click_net first click (whole image), 640×480", ("click_net",), "setup_click_net_first"),
    Case("click_net later click (zoom-in crop), 640×480", ("click_net",), "setup_click_net_click"),
    Case("sam_tiny image embedding, 640×480", ("sam_tiny",), "setup_sam_tiny_embed"),
    Case("sam_tiny click, 640×480", ("sam_tiny",), "setup_sam_tiny_click"),
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


def _flowers(size=(480, 640)) -> np.ndarray:
    from segdemo.data.flowers import make_flowers

    return make_flowers(0, "val", size).image


def _scene(size) -> np.ndarray:
    from segdemo.data.scenes import make_scene

    return make_scene(0, "val", size).image


def setup_patch() -> Callable:
    from segdemo.tasks.patch_classify import classify_segment

    image = _flowers()
    return lambda: classify_segment(image)


def _setup_upsample(name: str) -> Callable:
    from segdemo.tasks.upsample import predict

    image = _flowers()
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
    image = _flowers()
    return lambda: prompter.prepare(image)


def _setup_click(prompter, zoomed: bool = False) -> Callable:
    """A single positive click in the middle of a 640×480 photo; ``zoomed``: a second click
    beside it, with the first click's mask fed back (the click model then runs on its zoom-in
    crop, as on every click after the first)."""
    from segdemo.prompts import Click, Prompts

    image = prompter.prepare(_flowers())
    first = Prompts((Click(320.0, 240.0, True),))
    if not zoomed:
        return lambda: prompter.predict(image, first, None, prompter.multimask)
    feedback = prompter.predict(image, first, None, False).feedback[0]
    second = Prompts((*first.clicks, Click(340.0, 250.0, True)))
    return lambda: prompter.predict(image, second, feedback, False)


def _random_vit_b():
    import torch

    from segdemo.registry import build_model

    torch.manual_seed(0)
    return build_model("sam_vit_b")


def setup_click_net_first() -> Callable:
    return _setup_click(_prompter("click_net"))


def setup_click_net_click() -> Callable:
    return _setup_click(_prompter("click_net"), zoomed=True)


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


def _percentiles(seconds: list[float]) -> dict[str, float]:
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
    return {**_percentiles(times), "peak_mb": peak_mb}


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


ENDPOINTS = {
    "/classify_segment": lambda f: (f.flower,),
    "/upsample_compare": lambda f: (f.flower,),
    "/unet_segment": lambda f: (f.scene,),
    "/maskrcnn_instances": lambda f: (f.scene, "maskrcnn", 0.5, 0.5),
    "/semantic_vs_instance": lambda f: (f.scene, 0.5),
    "/prompt_segment": lambda f: (f.flower, "[[160, 120, 1]]", "", "click_net", True),
}


def run_endpoints(repeats: int) -> list[dict]:
    """End-to-end time of one request per endpoint through ``gradio_client`` (upload included)."""
    from types import SimpleNamespace

    import torch
    from gradio_client import Client, handle_file

    import app
    from segdemo.examples import EXAMPLES_DIR

    torch.set_num_threads(THREADS)
    files = SimpleNamespace(
        flower=handle_file(str(EXAMPLES_DIR / "flowers_0.png")),
        scene=handle_file(str(EXAMPLES_DIR / "scene_0.png")),
    )
    demo = app.build_app()
    args = app.get_args_parser().parse_args([])
    args.port = None
    demo.launch(prevent_thread_lock=True, quiet=True, **app.launch_kwargs(args))
    rows = []
    try:
        client = Client(demo.local_url, verbose=False)
        known = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
        for endpoint, arguments in ENDPOINTS.items():
            if endpoint not in known:
                continue
            try:
                client.predict(*arguments(files), api_name=endpoint)  # warm-up
            except Exception as err:  # e.g. weights not trained yet: report, don't stop
                print(f"skip {endpoint}: {err}")
                continue
            times = []
            for _ in range(repeats):
                began = time.perf_counter()
                client.predict(*arguments(files), api_name=endpoint)
                times.append(time.perf_counter() - began)
            rows.append({"endpoint": endpoint, "runs": repeats, **_percentiles(times)})
    finally:
        demo.close()
    return rows


def render(rows: list[dict], baseline: float, endpoints: list[dict]) -> str:
    by_label = {row["case"].label: row for row in rows}
    lines = [
        "# Benchmarks",
        "",
        f"Produced by `python -m segdemo.bench` on this machine, {THREADS} CPU threads. Each model "
        "runs in a fresh process: one warm-up call, then the timed runs. Peak memory is the "
        f"process's maximum resident size; an idle process with torch and the models' code "
        f"imported peaks at {baseline:.0f} MB. References are randomly initialised (the same "
        "compute as the released checkpoints).",
        "",
        "| what | runs | median (ms) | p90 (ms) | peak memory (MB) | vs reference |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        case = row["case"]
        ratio = ""
        for other in rows:
            if other["case"].reference_for == case.label:
                speedup = other["median_ms"] / row["median_ms"]
                ratio = f"{speedup:.0f}× faster than {other['case'].label.split(' (')[0]}"
        if case.reference_for and case.reference_for not in by_label:
            ratio = "reference"
        lines.append(
            f"| {case.label} | {row['runs']} | {row['median_ms']:.1f} | {row['p90_ms']:.1f} | "
            f"{row['peak_mb']:.0f} | {ratio} |"
        )
    if endpoints:
        lines += [
            "",
            "## End to end through `gradio_client`",
            "",
            "One request to the running app on 127.0.0.1: upload, queue, model, PNG encoding, "
            "download of the results.",
            "",
            "| endpoint | runs | median (ms) | p90 (ms) |",
            "|---|---|---|---|",
        ]
        for row in endpoints:
            lines.append(
                f"| `{row['endpoint']}` | {row['runs']} | {row['median_ms']:.0f} | "
                f"{row['p90_ms']:.0f} |"
            )
    lines += ["", "![Median latency per case](benchmarks.png)", ""]
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [row["case"].label for row in rows]
    values = [row["median_ms"] for row in rows]
    colours = ["#999999" if row["case"].reference_for else "#c2185b" for row in rows]
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.2))
    ax.barh(labels[::-1], values[::-1], color=colours[::-1])
    ax.set_xscale("log")
    ax.set_xlabel(f"median latency, ms (log scale), {THREADS} CPU threads; grey = reference")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per model case")
    parser.add_argument("--reference-repeats", type=int, default=3, help="runs per reference")
    parser.add_argument("--endpoint-repeats", type=int, default=5, help="runs per endpoint")
    parser.add_argument("--no-endpoints", action="store_true", help="skip the gradio_client part")
    parser.add_argument(
        "--clicks", type=int, default=20, help="timed clicks per prompted model in Chromium"
    )
    parser.add_argument("--no-browser", action="store_true", help="skip the clicks in Chromium")
    parser.add_argument("--no-capacity", action="store_true", help="skip the simulated users")
    parser.add_argument("--no-abuse", action="store_true", help="skip the clicks under attack")
    parser.add_argument(
        "--no-server-clicks", action="store_true", help="skip the server-side click timing"
    )
    parser.add_argument("--out", default=str(REPO_ROOT / "docs" / "benchmarks.md"))
    return parser


def run_clicks(args: argparse.Namespace) -> str:
    """Clicks in Chromium and the simulated users (``bench_clicks``), as Markdown."""
    from segdemo import bench_clicks
    from segdemo.browser import chromium_available
    from segdemo.registry import is_available, list_models

    latency, load = [], None
    if not args.no_browser:
        if chromium_available():
            models = [m for m in list_models(task="prompted") if is_available(m)]
            models.sort(key=lambda m: m != "click_net")  # the tab's default first
            latency = bench_clicks.click_latency(_flowers(), models, args.clicks)
        else:
            print("skip the clicks in Chromium: no Chromium at /usr/bin/chromium")
    if not args.no_capacity:
        load = bench_clicks.capacity(_flowers())
    text = bench_clicks.render(latency, load) if latency or load else ""
    if not args.no_server_clicks:
        text += "\n\n" + render_server_clicks(bench_clicks.server_click_ms(_flowers()))
    return text


def render_server_clicks(rows: list[dict]) -> str:
    lines = [
        "## A picture click on the server",
        "",
        "The `server_ms` of each `operate` answer (check the prompt, run `click_net`, encode "
        "the mask PNG), 640×480 photo, clicks 0.5 s apart, this tree beside the commit "
        "before the prompt session held its own state, each in its own `app.py`, one run.",
        "",
        "| what | clicks | median (ms) | p90 (ms) |",
        "|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['what']} | {row['clicks']} | {row['median_ms']:.1f} | {row['p90_ms']:.1f} |"
        )
    return "\n".join(lines)


def main(args: argparse.Namespace) -> None:
    rows, baseline = run_cases(args.repeats, args.reference_repeats)
    endpoints = [] if args.no_endpoints else run_endpoints(args.endpoint_repeats)
    clicks = run_clicks(args)
    if not args.no_abuse:  # another user's clicks beside a hostile page (bench_abuse)
        from segdemo import bench_abuse

        clicks += "\n\n" + bench_abuse.markdown(bench_abuse.main())
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    plot(rows, out.with_suffix(".png"))
    out.write_text(render(rows, baseline, endpoints).rstrip() + "\n\n" + clicks + "\n")
    print(out.read_text())


if __name__ == "__main__":
    main(get_args_parser().parse_args())
