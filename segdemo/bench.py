"""``python -m segdemo.bench``: speed and memory of every model and endpoint, beside references.

The model cases, each in a fresh process, and their references (``bench_cases``); then the app
is started and every endpoint is timed end to end through ``gradio_client``
(``bench_endpoints``); then clicks in the prompted tab are timed in Chromium, from the pointer
event to the frame that shows the mask, and simulated users load one server
(``bench_clicks``). This module runs them in that order and writes the results to
``docs/benchmarks.md`` and ``docs/benchmarks.png``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from segdemo.bench_cases import THREADS, flower_photo, real_photos, run_cases
from segdemo.bench_endpoints import run_endpoints
from segdemo.heap import keep_freed_memory
from segdemo.weights import REPO_ROOT


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
    from segdemo import bench_clicks, bench_server
    from segdemo.browser import chromium_available
    from segdemo.registry import is_available, list_models

    latency, load, reals = [], None, real_photos()
    if not args.no_browser:
        if chromium_available():
            models = [m for m in list_models(task="prompted") if is_available(m)]
            models.sort(key=lambda m: m != "click_net")  # the tab's default first
            latency = bench_clicks.click_latency(flower_photo(), models, args.clicks, reals)
        else:
            print("skip the clicks in Chromium: no Chromium at /usr/bin/chromium")
    if not args.no_capacity:
        load = bench_clicks.capacity(flower_photo())
    text = bench_clicks.render(latency, load) if latency or load else ""
    if not args.no_server_clicks:
        rows = bench_server.server_click_ms(flower_photo(), reals)
        text += "\n\n" + render_server_clicks(rows)
    return text


def render_server_clicks(rows: list[dict]) -> str:
    lines = [
        "## A picture click on the server",
        "",
        "The `server_ms` of each `operate` answer (check the prompt, run `click_net` and the "
        "refinement on the photo, encode the mask PNG), 640×480 photo, clicks 0.5 s apart: "
        "this tree with the refinement on and off, beside the commit before the prompt "
        "session held its own state, each tree in its own `app.py`, one run.",
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
    keep_freed_memory()  # as the app does (segdemo.heap): the in-process rows time its code
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
