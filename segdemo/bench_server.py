"""The server's own time for a picture click (the ``server_ms`` of each answer: checking the
prompt, the model and the refinement, the PNG), clicks half a second apart as corrections come,
with the refinement on and off and beside the same code path at an earlier commit, in one run.
Part of ``python -m segdemo.bench``.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from segdemo.bench_clicks import WARM_UP, app_process, click_points, photo_file, timing_summary
from segdemo.picture_client import PictureClient

PICTURE_BEFORE = "88753b8"  # the last commit before the prompt session held its own state
SERVER_GAP_SECONDS = 0.5  # corrections come fast, about half a second apart


def server_click_ms(
    photo: np.ndarray,
    real_photos: dict[str, np.ndarray],
    clicks: int = 20,
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
                    ms = []
                    for real in reals:
                        ms += _server_clicks(url, real, points, {"refined": refined})
                    rows.append(timing_summary(f"the same, {kind}, on real photos ({names})", ms))
            with app_process(7914, old) as url:
                ms = _server_clicks(url, path, points, None)
                rows.append(timing_summary(f"server side of a picture click, {before}", ms))
        finally:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(old)], cwd=REPO_ROOT, check=False
            )
    return rows


def _server_clicks(url: str, path: str, points, refine: dict | None) -> list[float]:
    """``server_ms`` of clicking ``points`` half a second apart on a new page of the app at
    ``url``; ``refine``: the payload of a ``refine`` operation made first (None: the app has
    no such operation)."""
    page = PictureClient(url)
    page.open(path)
    if refine is not None:
        page.operate("refine", **refine)
    ms = []
    for k, (x, y, positive) in enumerate(points):
        if k % 8 == 0:
            page.operate("clear")
        answer = page.point(x, y, positive)
        if k >= WARM_UP:
            ms.append(answer["server_ms"])
        time.sleep(SERVER_GAP_SECONDS)
    return ms
