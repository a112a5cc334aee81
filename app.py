"""segdemo: semantic and instance segmentation, taught hands-on.

    python app.py [--host 127.0.0.1] [--port 7860] [--share] [--root-path /prefix]

Importing this module builds nothing and starts nothing; ``build_app()`` assembles the tabs.
"""

from __future__ import annotations

import argparse
import os
import signal

import gradio as gr
from starlette.middleware import Middleware

from segdemo import registry
from segdemo.examples import EXAMPLES_DIR, photo_examples
from segdemo.heap import keep_freed_memory
from segdemo.ui import (
    classify_tab,
    guard,
    maskrcnn_tab,
    models_tab,
    prompted_tab,
    unet_tab,
    upsample_tab,
)

TITLE = "segdemo: semantic and instance segmentation"
INTRO = """
# segdemo: semantic and instance segmentation
From classifying patches to upsampling decoders: each tab shows one idea from the lecture on a
model small enough to retrain on a laptop. Upload your own photo or pick an example.
"""
# Low-resolution maps are shown enlarged with hard pixel edges, so every value stays visible.
CSS = """
.pixelated img { image-rendering: pixelated; width: 100%; height: 100%; object-fit: contain; }
/* The prompted tab's details while they belong to an older mask than the one on screen. */
#prompted-details.sd-stale { opacity: 0.45; pointer-events: none; transition: opacity 0.1s; }
"""
MAX_FILE_SIZE = "25mb"  # uploads above this are refused before they reach a handler
QUEUE_SIZE = 64  # requests waiting beyond this are turned away with "queue full"
QUEUE_IDLE_POLL_S = 0.02  # how often an idle queue looks for new events (Gradio: 0.001)
# Every 10 minutes, uploads and Gradio's copies of results older than an hour are deleted:
# long enough for a lesson's page, and disk no longer grows with every visitor.
DELETE_CACHE = (600, 3600)


def build_app() -> gr.Blocks:
    keep_freed_memory()  # each click reuses the memory the one before it freed (segdemo.heap)
    with gr.Blocks(title=TITLE, delete_cache=DELETE_CACHE) as demo:
        gr.Markdown(INTRO)
        with gr.Tabs():
            # Tabs 1 and 2 can be trained on a mask made in the prompted tab.
            label_targets = [classify_tab.build_tab(), upsample_tab.build_tab()]
            unet_tab.build_tab()
            maskrcnn_tab.build_tab()
            prompted_tab.build_tab(label_targets)
            models_tab.build_tab()
    # Two CPU cores: more parallel model calls than that only slow every request down.
    demo.queue(default_concurrency_limit=2, max_size=QUEUE_SIZE)
    # Gradio's queue looks for new events every millisecond while it has none
    # (``Queue.sleep_when_free``): a tenth of a core when idle, and a wake-up of the event loop
    # every millisecond beside each click's model work on the two cores. Every 20 ms instead,
    # a queued event (the details after a pause, the other tabs) starts at most 20 ms later.
    demo._queue.sleep_when_free = QUEUE_IDLE_POLL_S
    return demo


def launch_kwargs(args: argparse.Namespace) -> dict:
    return dict(
        server_name=args.host,
        server_port=args.port,
        share=args.share,
        root_path=args.root_path,
        max_file_size=MAX_FILE_SIZE,
        allowed_paths=[str(EXAMPLES_DIR), *photo_examples()],
        css=CSS,
        show_error=True,
        # Body size caps and session hash checks in front of every route (segdemo.ui.guard).
        app_kwargs={"middleware": [Middleware(guard.RequestLimits)]},
        state_session_capacity=guard.MAX_SESSIONS,
    )


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Serve the segdemo Gradio app.")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    parser.add_argument("--share", action="store_true", help="create a temporary public link")
    parser.add_argument("--root-path", default=None, help="URL prefix behind a reverse proxy")
    parser.add_argument("--device", default="cpu", help="torch device for the models (cpu, cuda)")
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = get_args_parser()
    args = parser.parse_args(argv)
    try:
        registry.set_default_device(args.device)
    except ValueError as err:
        parser.error(str(err))  # a usage message and exit status 2, not a traceback
    # A service manager stops the server with SIGTERM: it closes as on Ctrl-C, and exits
    # normally, so that what it wrote goes with it (the downloads folder, segdemo.imaging).
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    build_app().launch(**launch_kwargs(args))


if __name__ == "__main__":
    main()
