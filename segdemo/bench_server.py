"""The server's own time for a picture click (the ``server_ms`` of each answer: checking the
prompt, the model and the refinement, the PNG), clicks half a second apart as corrections come,
with the refinement on and off and beside the same code path at an earlier commit, in one run.
Part of ``python -m segdemo.bench``.
"""

from __future__ import annotations

import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

from segdemo.bench_clicks import WARM_UP, app_process, click_points, photo_file, timing_summary
from segdemo.picture_client import PictureClient

PICTURE_BEFORE = "88753b8"  # the last commit before the prompt session held its own state
SERVER_GAP_SECONDS = 0.5  # corrections come fast, about half a second apart
NEW_OBJECT_EVERY = 8  # every eighth click clears the prompts: a first click on a new object
SERVER_CLICKS = 20  # timed clicks on each photo


def server_click_ms(
    photo: np.ndarray,
    real_photos: dict[str, np.ndarray],
    clicks: int = SERVER_CLICKS,
    before: str = PICTURE_BEFORE,
) -> list:
    """Median and p90 of ``server_ms`` over ``clicks`` clicks: for this tree with the
    refinement on the photo (the default) and without it, and for the tree at commit
    ``before`` (checked out beside it with ``git worktree``), each tree in its own app; then
    this tree on ``real_photos`` (name: pixels), ``clicks`` on each, pooled."""
    from segdemo.weights import REPO_ROOT

    path = photo_file(photo)
    points = click_points(Image.open(path).size[::-1], clicks + WARM_UP)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        old = Path(folder) / "before"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(old), before],
            cwd=REPO_ROOT,
            check=True,
            capture_output=True,
        )
        try:
            with app_process(7913, REPO_ROOT) as url:
                for refined in (True, False):
                    kind = "refined on the photo" if refined else "network alone"
                    ms = _server_clicks(url, path, points, {"refined": refined})
                    rows.append(timing_summary(f"server side of a picture click, now, {kind}", ms))
                reals, names = list(map(photo_file, real_photos.values())), ", ".join(real_photos)
                for refined in (True, False):
                    kind = "refined on the photo" if refined else "network alone"
                    ms, first, drafts = [], [], []
                    for real in reals:
                        ms += _server_clicks(url, real, points, {"refined": refined}, first, drafts)
                    rows.append(timing_summary(f"the same, {kind}, on real photos ({names})", ms))
                    if refined:
                        rows += _first_click_rows(ms, first, drafts)
            with app_process(7914, old) as url:
                ms = _server_clicks(url, path, points, None)
                rows.append(timing_summary(f"server side of a picture click, {before}", ms))
        finally:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(old)], cwd=REPO_ROOT, check=False
            )
    return rows


def _first_click_rows(ms: list[float], first: list[bool], drafts: list[float]) -> list[dict]:
    """The pooled clicks split into corrections and first clicks, and the first clicks'
    drafts: the time from sending the draft call to its answer, over loopback."""
    corrections = [m for m, is_first in zip(ms, first, strict=True) if not is_first]
    firsts = [m for m, is_first in zip(ms, first, strict=True) if is_first]
    return [
        timing_summary("... of them, the corrections", corrections),
        timing_summary("... of them, the first clicks (refined)", firsts),
        timing_summary("... the first clicks' drafts, answered (client side, loopback)", drafts),
    ]


def _server_clicks(
    url: str,
    path: str,
    points,
    refine: dict | None,
    first: list[bool] | None = None,
    drafts: list[float] | None = None,
) -> list[float]:
    """``server_ms`` of clicking ``points`` half a second apart on a new page of the app at
    ``url``; ``refine``: the payload of a ``refine`` operation made first (None: the app has
    no such operation). With ``first`` and ``drafts``, whether each timed click was a first
    click is appended to ``first``, and each first click asks for a draft as the page does,
    the time to its answer appended to ``drafts``."""
    page = PictureClient(url)
    page.open(path)
    if refine is not None:
        page.operate("refine", **refine)
    # The draft calls' own connection, as the browser sends them beside the click.
    caller = None if drafts is None else PictureClient(url, component_id=page.component_id)
    ms = []
    for k, (x, y, positive) in enumerate(points):
        starts_over = k % NEW_OBJECT_EVERY == 0
        if starts_over:
            page.operate("clear")
        drafted = None
        if caller is not None and starts_over and positive:
            drafted = _draft_call(caller, page, k)
        answer = page.point(x, y, positive, **({} if drafted is None else {"draft": k}))
        if drafted is not None:
            drafted.join()
        if k >= WARM_UP:
            ms.append(answer["server_ms"])
            if first is not None:
                first.append(starts_over)
            if drafted is not None and drafted.ms is not None:
                drafts.append(drafted.ms)
        time.sleep(SERVER_GAP_SECONDS)
    return ms


def _draft_call(caller: PictureClient, page: PictureClient, click: int) -> threading.Thread:
    """The draft call for ``page``'s ``click``, sent now by ``caller`` from a thread; once
    joined, the thread's ``ms`` is its time to a draft (None if it answered without one)."""

    def call() -> None:
        began = time.perf_counter()
        answer = caller.call("draft", {"token": page.token, "draft": click})
        if "mask" in answer:
            thread.ms = 1000 * (time.perf_counter() - began)

    thread = threading.Thread(target=call)
    thread.ms = None
    thread.start()
    return thread
