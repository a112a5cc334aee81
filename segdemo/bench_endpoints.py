"""The endpoints of the running app, timed end to end through ``gradio_client``."""

from __future__ import annotations

import time

from segdemo.bench_cases import THREADS, percentiles

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
            rows.append({"endpoint": endpoint, "runs": repeats, **percentiles(times)})
    finally:
        demo.close()
    return rows
