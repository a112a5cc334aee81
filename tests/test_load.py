"""Many users at once: 20 gradio_client sessions hammer every model endpoint together.

Each client has its own picture (its own size, so a mix-up cannot go unnoticed) and its own
click. Every answer must match what that client got when it was alone with the server, no
request may fail, and the per-user embedding cache must stay within its bounds.
"""

from __future__ import annotations

import json
import random
import resource
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from segdemo.clicks import first_click
from segdemo.data.scenes import make_scene

CLIENTS = 20
LOAD_SECONDS = 45  # each client keeps calling until then, then finishes its current call


@dataclass
class User:
    """One simulated user: a client (its own session), a picture, a click, what it got alone."""

    index: int
    client: Client
    image: str
    size: tuple[int, int]
    point: list[int]
    alone: dict[str, np.ndarray] = field(default_factory=dict)


def _read(path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return np.asarray(image)


# endpoint -> (arguments after the image, given the user; where the user's mask PNG comes back)
CALLS = {
    "/classify_segment": (lambda u: (), lambda r: r[2]),
    "/upsample_compare": (lambda u: (), lambda r: r[-2][0]),
    "/unet_segment": (lambda u: (), lambda r: r[-2][0]),
    "/maskrcnn_instances": (lambda u: ("maskrcnn", 0.5, 0.5), lambda r: r[3]),
    "/prompt_segment": (  # refined on the photo, as the tab's default
        lambda u: (json.dumps([u.point]), "", "click_net", True, True),
        lambda r: r[1][r[2]["best"]],
    ),
}


def call(user: User, endpoint: str) -> np.ndarray:
    arguments, mask_of = CALLS[endpoint]
    result = user.client.predict(handle_file(user.image), *arguments(user), api_name=endpoint)
    if endpoint == "/prompt_segment":
        assert result[2]["refined"] is True
    return _read(mask_of(result))


@pytest.fixture(scope="module")
def users(app_url, tmp_path_factory):
    folder = tmp_path_factory.mktemp("users")
    made = []
    for k in range(CLIENTS):
        size = (200 + 4 * k, 280 + 8 * k)  # no two users share an image size
        scene = make_scene(500 + k, "val", size)
        ids, areas = np.unique(scene.instances[scene.instances > 0], return_counts=True)
        click = first_click(scene.instances == ids[np.argmax(areas)])
        path = folder / f"user-{k}.png"
        Image.fromarray(scene.image).save(path)
        client = Client(app_url, verbose=False)
        made.append(User(k, client, str(path), size, [click.x, click.y, 1]))
    return made


def test_twenty_concurrent_users_each_get_their_own_answers(users):
    endpoints = list(CALLS)
    for user in users:  # the reference: each user alone with the server
        for endpoint in endpoints:
            user.alone[endpoint] = call(user, endpoint)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def hammer(user: User) -> tuple[int, list[str]]:
        rng, problems, calls = random.Random(user.index), [], 0
        deadline = time.monotonic() + LOAD_SECONDS
        while time.monotonic() < deadline:
            endpoint = rng.choice(endpoints)
            try:
                mask = call(user, endpoint)
            except Exception as err:  # collected, so one failure does not hide the others
                problems.append(f"user {user.index} {endpoint}: {err}")
                continue
            calls += 1
            expected = user.alone[endpoint]
            if mask.shape != expected.shape:
                problems.append(f"user {user.index} {endpoint}: a {mask.shape} mask, not theirs")
            elif (mask != expected).mean() > 0.001:  # float sums may differ by a pixel or two
                problems.append(f"user {user.index} {endpoint}: the mask differs from theirs")
        return calls, problems

    with ThreadPoolExecutor(CLIENTS) as pool:
        outcomes = list(pool.map(hammer, users))
    problems = [p for _, ps in outcomes for p in ps]
    assert not problems, "\n".join(problems[:10])
    assert sum(calls for calls, _ in outcomes) >= CLIENTS  # every user got answers
    assert all(calls > 0 for calls, _ in outcomes)

    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    assert rss_after - rss_before < 2 * 1024 * 1024, "peak memory grew by more than 2 GiB"
