"""Click to mask on screen, in Chromium, and how many clicking users one server sustains.

``click_latency``: the app runs on 127.0.0.1; a headless Chromium page uploads a 640×480 photo
into the prompted tab's picture and clicks on it, one click a second. The page notes the time
from the pointer event to the animation frame that shows the new mask
(``window.segdemoTimings``). The same is measured for each prompted model, for the queue
fallback (the server functions blocked), and for a reference page built as the tab was
before: a ``gr.Image`` whose select event returns the overlay, the three thumbnails, the
cut-out, the mask file and the status through the queue.

``capacity``: the app runs in its own process; simulated users, each with their own page token
and photo, click once a second through the picture's server function over loopback HTTP.
The number of users grows until the 90th percentile passes 150 ms or the largest count was
tried; each count runs for a fixed time, so the loop stops by itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import gradio as gr
import numpy as np
from PIL import Image

from segdemo.picture_client import PictureClient

WARM_UP = 2  # clicks not counted: the first calls allocate and pick kernels
CLICK_EVERY_S = 1.0
CORRECTING_GAP_S = 0.4  # a user correcting fast clicks again this soon after the mask shows
TARGET_P90_MS = 150.0
USER_COUNTS = (1, 2, 4, 8, 12, 16, 20, 24, 32)
SECONDS_PER_COUNT = 10.0


def click_points(size: tuple[int, int], count: int, seed: int = 0) -> list[tuple[int, int, bool]]:
    """``count`` clicks (x, y, positive) spread over the middle of a ``(height, width)`` photo;
    every fourth is negative, as corrections are."""
    h, w = size
    rng = np.random.default_rng(seed)
    xs = rng.integers(w // 6, 5 * w // 6, count)
    ys = rng.integers(h // 6, 5 * h // 6, count)
    return [(int(x), int(y), k % 4 != 3) for k, (x, y) in enumerate(zip(xs, ys, strict=True))]


def photo_file(photo: np.ndarray) -> str:
    path = Path(tempfile.mkdtemp(prefix="segdemo-bench-")) / "photo.png"
    Image.fromarray(photo).save(path)
    return str(path)


@contextmanager
def running_app(demo=None):
    """The app (or ``demo``) served on a free port of 127.0.0.1; yields its URL."""
    import app

    demo = demo or app.build_app()
    args = app.get_args_parser().parse_args([])
    args.port = None
    demo.launch(prevent_thread_lock=True, quiet=True, **app.launch_kwargs(args))
    try:
        yield demo.local_url
    finally:
        demo.close()


# Resolves once the page has timed click ``k``'s mask. Playwright's wait_for_function polls on
# every animation frame, which keeps headless Chromium drawing while the server computes the
# mask, on the same two cores: a load a user's idle page does not add.
MASK_SHOWN_JS = """
(k) => new Promise((resolve, reject) => {
  const timings = window.segdemoTimings;
  if (timings.length > k) return resolve();
  const push = timings.push;
  const timer = setTimeout(() => {
    timings.push = push;
    reject(new Error(`no mask for click ${k} within 60 s`));
  }, 60000);
  timings.push = function (...items) {
    const length = push.apply(timings, items);
    if (length > k) {
      clearTimeout(timer);
      timings.push = push;
      resolve();
    }
    return length;
  };
})
"""


def _timed_clicks(page, points, clicks_made, after_mask_s: float | None = None) -> list[dict]:
    """Click ``points`` one a second, or ``after_mask_s`` after each click's mask shows (a
    user correcting fast); returns the page's own timings of each click: ``ms`` from the
    pointer event to the frame, and on the server function's path ``server_ms``, the
    server's own time for the call."""
    page.evaluate("window.segdemoTimings = []")
    for k, (x, y, positive) in enumerate(points):
        clicks_made(page, x, y, positive)
        if after_mask_s is None:
            page.wait_for_timeout(int(1000 * CLICK_EVERY_S))
        else:
            page.evaluate(MASK_SHOWN_JS, k)
            page.wait_for_timeout(int(1000 * after_mask_s))
    page.evaluate(MASK_SHOWN_JS, len(points) - 1)  # the last click's mask, too
    return page.evaluate("window.segdemoTimings")[WARM_UP:]


def timing_summary(label: str, ms: list[float]) -> dict:
    return {
        "what": label,
        "clicks": len(ms),
        "median_ms": float(np.median(ms)),
        "p90_ms": float(np.percentile(ms, 90)),
    }


def page_summary(label: str, timings: list[dict]) -> dict:
    """``timing_summary`` of the page's click-to-frame times, with the median of the
    server's own part where the answers carry it: the rest is the page's (the request, the
    answer's decoding and drawing) and the browser's share of the cores."""
    summary = timing_summary(label, [t["ms"] for t in timings])
    server = [t["server_ms"] for t in timings if t.get("server_ms") is not None]
    return {**summary, "server_median_ms": float(np.median(server)) if server else None}


def picture_latency(
    url: str,
    photo: str | list[str],
    model: str,
    clicks: int,
    queue: bool = False,
    after_mask_s: float | None = None,
    refined: bool = True,
) -> dict:
    """Median and p90 click-to-mask time of the picture with ``model``, ``clicks`` on each
    of ``photo`` (one path or several, opened one after another, the times pooled);
    ``queue``: with the server functions blocked, so the page falls back to the queue;
    ``after_mask_s``: the next click that long after the mask shows instead of one a second;
    ``refined``: the refinement on the photo on (the default) or off."""
    from segdemo.browser import (
        browser_page,
        choose_model,
        click_picture,
        open_photo,
        set_refinement,
    )

    photos, timings = [photo] if isinstance(photo, str) else photo, []
    with browser_page() as page:
        if queue:
            page.route("**/component_server**", lambda route: route.abort())
        page.goto(url)
        for k, path in enumerate(photos):
            open_photo(page, path)
            if k == 0 and model != "click_net":
                choose_model(page, model)
            if k == 0 and not refined:
                set_refinement(page, False)
            points = click_points(Image.open(path).size[::-1], clicks + WARM_UP)
            timings += _timed_clicks(page, points, click_picture, after_mask_s)
    how = ["queue fallback" if queue else "server function"]
    how += [] if refined else ["network alone"]
    how += [] if after_mask_s is None else [f"next click {after_mask_s:g} s after the mask"]
    return page_summary(f"{model}, picture ({', '.join(how)})", timings)


# A first click on a new object: the network's own mask drawn at once (the draft), the
# refined one when it comes.

DRAFT_CALL = '"fn_name":"draft"'  # in the JSON body of the page's draft call


def first_click_latency(url: str, photos: list[str], clicks: int, drafts: bool = True) -> list:
    """Median and p90 of a first click's times on ``photos``, ``clicks`` on each after one
    warm-up (the prompts cleared before each, a click a second), pooled: the draft on
    screen, then the refined mask. ``drafts=False``: the page's draft calls fail (the tab
    before drafts); only the refined mask's row. Either way every server call passes
    through the same interception, so the two runs compare."""
    from segdemo.browser import browser_page, click_picture, open_photo, picture_button

    def intercepted(route) -> None:
        if not drafts and DRAFT_CALL in (route.request.post_data or ""):
            route.abort()
        else:
            route.continue_()

    shown, refined = [], []
    with browser_page() as page:
        page.route("**/component_server**", intercepted)
        page.goto(url)
        for path in photos:
            open_photo(page, path)
            points = click_points(Image.open(path).size[::-1], clicks + 1, seed=1)
            page.evaluate("window.segdemoTimings = []; window.segdemoDrafts = []")
            for k, (x, y, _) in enumerate(points):
                picture_button(page, "Clear").click()
                page.wait_for_timeout(int(1000 * CLICK_EVERY_S))
                click_picture(page, x, y, True)
                page.evaluate(MASK_SHOWN_JS, k)
            drawn, timed = page.evaluate("[window.segdemoDrafts, window.segdemoTimings]")
            shown += [t["ms"] for t in drawn][1:]
            refined += timed[1:]
    if not drafts:
        assert not shown, "a draft was drawn with the draft calls blocked"
        return [page_summary("first click, the refined mask, no draft (before)", refined)]
    return [
        timing_summary("first click, the network's own mask (draft)", shown),
        page_summary("first click, the refined mask, after the draft", refined),
    ]


# The reference: the tab as it was, a gr.Image whose select event returns five outputs.

REFERENCE_TIMING_JS = """
() => {
  const box = document.querySelector('#reference-canvas');
  let started = null, before = null;
  box.addEventListener('pointerdown', (e) => {
    started = e.timeStamp;
    before = box.querySelector('img').src;
  }, true);
  new MutationObserver(() => {
    const img = box.querySelector('img');
    if (started === null || !img || img.src === before) return;  // not the new overlay yet
    const began = started;
    started = null;
    img.decode().then(() => requestAnimationFrame(() =>
      window.segdemoTimings.push({ms: performance.now() - began, path: 'reference'})));
  }).observe(box, {subtree: true, childList: true, attributes: true, attributeFilter: ['src']});
}
"""


def reference_demo(photo: str, model: str):
    """The prompted tab's click path before the picture: every click through the queue,
    answered with the overlay, three thumbnails, the cut-out, the mask file and the status."""
    from segdemo.imaging import prepare_image, save_png
    from segdemo.prompts import Click
    from segdemo.tasks.prompt_session import PromptSession
    from segdemo.ui.common import to_uint8_mask
    from segdemo.ui.picture_view import drawn
    from segdemo.ui.prompted_tab import _thumbnails

    image = prepare_image(photo)
    opened = PromptSession.open(image, model)

    def clicked(session, evt: gr.SelectData):
        x, y = evt.index
        session = (session or opened).click(Click(x, y, True))
        step = session.current
        cutout = np.dstack([image.pixels, to_uint8_mask(step.mask)])
        mask = save_png(to_uint8_mask(session.original_mask()), "reference")
        status = f"{len(session.prompts)} prompt(s), {int(step.mask.sum())} pixels"
        return session, drawn(session), _thumbnails(session), cutout, mask, status

    with gr.Blocks() as demo:
        session = gr.State(None)  # a session holds the model: never deep-copied per page
        canvas = gr.Image(
            image.pixels,
            type="numpy",
            format="png",
            interactive=False,
            height=480,
            elem_id="reference-canvas",
        )
        gallery = gr.Gallery(columns=3, height=200)
        cutout = gr.Image(format="png", interactive=False)
        mask = gr.File()
        status = gr.Markdown()
        canvas.select(clicked, [session], [session, canvas, gallery, cutout, mask, status])
    demo.queue(default_concurrency_limit=2)
    return demo


def reference_latency(photo: str, model: str, clicks: int) -> dict:
    from segdemo.browser import browser_page, click_image

    size = Image.open(photo).size[::-1]
    points = click_points(size, clicks + WARM_UP)
    with running_app(reference_demo(photo, model)) as url, browser_page() as page:
        page.goto(url)
        page.locator("#reference-canvas img").wait_for()
        page.wait_for_timeout(1000)
        page.evaluate("window.segdemoTimings = []")
        page.evaluate(REFERENCE_TIMING_JS)

        def clicks_made(page, x, y, positive):
            click_image(page, "#reference-canvas", x, y)

        # Its answers can take more than a second on a slow machine: each click then waits for
        # the last one's mask, a second after it, so that no answer is timed from a later click.
        positives = [(x, y, True) for x, y, _ in points]
        timings = _timed_clicks(page, positives, clicks_made, after_mask_s=CLICK_EVERY_S)
    label = f"{model}, reference: gr.Image select, five outputs (the tab before)"
    return page_summary(label, timings)


def click_latency(
    photo: np.ndarray, models: list[str], clicks: int, real_photos: dict[str, np.ndarray]
) -> list[dict]:
    """Click-to-mask rows in Chromium: the tab before, each model, then the default model at
    a correcting pace, alone and through the queue, all on ``photo``; then the default on
    ``real_photos`` (name: pixels), half of ``clicks`` on each, at both paces, and a quarter
    of ``clicks`` first clicks on each, with and without the draft."""
    path = photo_file(photo)
    rows = [reference_latency(path, models[0], clicks)]
    with running_app() as url:
        for model in models:
            print(f"clicking in Chromium: {model}", flush=True)
            rows.append(picture_latency(url, path, model, clicks))
        default = models[0]
        rows.append(picture_latency(url, path, default, clicks, after_mask_s=CORRECTING_GAP_S))
        rows.append(picture_latency(url, path, default, clicks, refined=False))
        rows.append(picture_latency(url, path, default, clicks, queue=True))
        reals, names = list(map(photo_file, real_photos.values())), ", ".join(real_photos)
        for gap in (None, CORRECTING_GAP_S):
            row = picture_latency(url, reals, default, clicks // 2, after_mask_s=gap)
            rows.append({**row, "what": f"{row['what']}, real photos ({names})"})
        for drafts in (True, False):
            for row in first_click_latency(url, reals, clicks // 4, drafts):
                rows.append({**row, "what": f"{default}, {row['what']}, real photos ({names})"})
    return rows


# Capacity: simulated users over loopback HTTP, against the app in its own process.


class SimulatedUser(PictureClient):
    """A page that clicks a few spots of its photo, clearing after each round."""

    def __init__(self, url: str, component_id: int, photo: str, seed: int):
        super().__init__(url, f"bench-{seed}", component_id, f"10.1.{seed // 250}.{seed % 250 + 1}")
        self.points = click_points(Image.open(photo).size[::-1], 8, seed)
        self.open(photo)

    def click(self, k: int) -> float:
        """One click (ms); the prompts are cleared every few clicks, as after each object."""
        if k % len(self.points) == 0:
            self.operate("clear")
        x, y, positive = self.points[k % len(self.points)]
        began = time.perf_counter()
        answer = self.point(x, y, positive)
        if "error" in answer:
            raise RuntimeError(answer["error"])
        return 1000 * (time.perf_counter() - began)


def _load(users: list[SimulatedUser], seconds: float) -> list[float]:
    """Every user clicks once a second (each at its own phase) for ``seconds``."""
    times, lock = [], threading.Lock()

    def clicking(user: SimulatedUser, phase: float) -> None:
        time.sleep(phase)
        began = time.perf_counter()
        for k in range(int(seconds / CLICK_EVERY_S)):
            ms = user.click(k)
            with lock:
                times.append(ms)
            next_click = began + (k + 1) * CLICK_EVERY_S
            time.sleep(max(0.0, next_click - time.perf_counter()))

    threads = [
        threading.Thread(target=clicking, args=(user, k * CLICK_EVERY_S / len(users)))
        for k, user in enumerate(users)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 60)
    return times


@contextmanager
def app_process(port: int = 7911, root: Path | None = None):
    """``python app.py`` of the source tree ``root`` (this one by default) on
    127.0.0.1:``port`` in its own process; yields its URL."""
    from segdemo.weights import REPO_ROOT

    server = subprocess.Popen(
        [sys.executable, "app.py", "--port", str(port)],
        cwd=root or REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(root or REPO_ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(url, server)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def wait_until_serving(url: str, process: subprocess.Popen, log: Path | None = None) -> None:
    """Wait (two minutes at most) until the app ``process`` serves ``url``; raise, with the end
    of its ``log`` when there is one, if it exits or never does."""
    import httpx

    for _ in range(240):
        if process.poll() is not None:
            said = f": {log.read_text()[-2000:]}" if log is not None else ""
            raise RuntimeError(f"the app exited{said}")
        try:
            if httpx.get(f"{url}/config", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError("the app did not start")


def capacity(photo: np.ndarray) -> dict:
    """The most simulated users whose clicks stay within 150 ms at the 90th percentile."""
    path = photo_file(photo)
    levels = []
    with app_process() as url:
        component_id = PictureClient(url).component_id
        users: list[SimulatedUser] = []
        for count in USER_COUNTS:
            while len(users) < count:
                users.append(SimulatedUser(url, component_id, path, seed=len(users)))
            users[-1].click(0)  # warm-up of the newest
            ms = _load(users, SECONDS_PER_COUNT)
            level = {"users": count, **timing_summary("", ms)}
            print(f"{count} users: median {level['median_ms']:.0f} ms, p90 {level['p90_ms']:.0f}")
            levels.append(level)
            if level["p90_ms"] > TARGET_P90_MS:
                break
    sustained = [lvl["users"] for lvl in levels if lvl["p90_ms"] <= TARGET_P90_MS]
    return {"levels": levels, "sustained": max(sustained, default=0)}


def render(latency: list[dict], load: dict | None) -> str:
    lines = [
        "## Click to mask on screen, in Chromium",
        "",
        "Headless Chromium on this machine, 640×480 photo, one click a second; the page's own "
        "time from the pointer event to the frame that shows the new mask. Browser and server "
        f"share the machine's cores. {WARM_UP} warm-up clicks are not counted. The last column "
        "is the median of the server's own time for the call (`server_ms`, where the path "
        "reports it): the rest of a click's time is the request, the answer's decoding and the "
        "frame.",
        "",
        "| what | clicks | median (ms) | p90 (ms) | the server's part, median (ms) |",
        "|---|---|---|---|---|",
    ]
    for row in latency:
        server = row.get("server_median_ms")
        lines.append(
            f"| {row['what']} | {row['clicks']} | {row['median_ms']:.0f} | {row['p90_ms']:.0f} "
            f"| {'–' if server is None else f'{server:.0f}'} |"
        )
    if load:
        lines += [
            "",
            "## Capacity: users clicking once a second",
            "",
            "The app in its own process; each simulated user has its own token and photo and "
            "clicks once a second through the picture's server function over loopback HTTP "
            f"(without the browser's drawing). {SECONDS_PER_COUNT:.0f} s per user count. "
            f"**{load['sustained']} users** keep the 90th percentile within "
            f"{TARGET_P90_MS:.0f} ms.",
            "",
            "| users | clicks | median (ms) | p90 (ms) |",
            "|---|---|---|---|",
        ]
        for level in load["levels"]:
            lines.append(
                f"| {level['users']} | {level['clicks']} | {level['median_ms']:.0f} | "
                f"{level['p90_ms']:.0f} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    from segdemo.bench_cases import flower_photo, real_photos

    rows = click_latency(flower_photo(), ["click_net"], 8, real_photos())
    print(json.dumps(rows, indent=1))
