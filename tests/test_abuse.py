"""A hostile visitor against ``python app.py`` in its own process, over loopback: each attack
of issue 23 again, and the bound or the message it now gets. The server's memory is read from
/proc and held to the stated budget, with a margin; after every attack an ordinary page still
clicks. About a minute on two cores.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from segdemo import budget
from segdemo.bench_abuse import (
    LARGEST_SIDE,
    Attack,
    app_server,
    clicks_ms,
    percentiles,
    write_png,
)
from segdemo.picture_client import PictureClient
from segdemo.ui import guard, picture_store
from segdemo.weights import REPO_ROOT

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/status").exists(), reason="reads the server's memory from /proc (Linux)"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

MiB = 2**20
# What one largest photo may add to the server: its decode or full-size render (the render
# budget) and the page it leaves in the store, with 25% for the allocator and Python.
LARGEST_PAGE_MB = (budget.RENDER_BYTES + picture_store.PAGE_BYTES) / MiB * 1.25


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("abuse")
    truncated = folder / "truncated.png"
    whole = write_png(folder / "whole.png", 640, 480).read_bytes()
    truncated.write_bytes(whole[: len(whole) * 3 // 5])
    eps = "%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\nshowpage\n"
    (folder / "page.eps").write_text(eps)
    return {
        "small": write_png(folder / "small.png", 320, 240),
        "photo": write_png(folder / "photo.png", 4000, 3000),
        "largest": write_png(folder / "largest.png", LARGEST_SIDE, LARGEST_SIDE),
        "huge": write_png(folder / "huge.png", 19999, 19999, channels=1),  # 1.2 MB on disk
        "truncated": truncated,
        "eps": folder / "page.eps",
        "folder": folder,
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    log = tmp_path_factory.mktemp("abuse-server") / "app.log"
    with app_server(free_port(), log) as running:
        yield running


@pytest.fixture(scope="module")
def user(server, files):
    """An ordinary visitor from an address of its own, with a photo open and clicked, there
    through every attack."""
    page = PictureClient(server.url, session_hash="user", address="10.9.9.9")
    assert "error" not in page.open(str(files["small"]))
    clicked = page.point(100, 100)
    assert "error" not in clicked
    assert clicked["refined"] is True  # every attack meets the refinement, the default
    return page


def still_clicks(page: PictureClient) -> None:
    answer = page.point(120, 90)
    assert "error" not in answer, answer["error"]
    assert answer["mask"] is not None


def test_a_huge_image_is_refused_from_its_header(server, files, user):
    before = server.memory_mb()["rss"]
    attacker = PictureClient(server.url)
    answer = attacker.open(str(files["huge"]))
    assert "too large" in answer["error"] and "50 megapixels" in answer["error"]
    with pytest.raises(Exception, match="too large"):
        from gradio_client import Client, handle_file

        Client(server.url, verbose=False).predict(
            handle_file(str(files["huge"])), "[[10, 10, 1]]", "", "click_net", True,
            api_name="/prompt_segment",
        )
    assert server.memory_mb()["rss"] - before < 100, "refusing from the header cost memory"
    still_clicks(user)


def test_the_largest_accepted_photo_stays_within_the_budget(server, files, user):
    """Two pages open, click and export a 50-megapixel photo at once: the server's peak
    stays within what the render budget and two pages allow."""
    start = server.memory_mb()
    pages = [PictureClient(server.url, address=f"10.8.0.{k}") for k in (1, 2)]
    with Attack(server.url, str(files["small"]), str(files["largest"])) as attack:
        for page in pages:
            opened = page.open(str(files["largest"]))
            assert opened.get("size") == [1024, 1024], opened.get("error")
            assert "error" not in page.point(512, 512)
            exported = page.call("export", {"token": page.token, "what": "mask"})
            assert exported["name"] == "mask.png", exported.get("error")
        time.sleep(3)
    assert attack.answers.get("export", 0) >= 1
    grew = server.memory_mb()["peak"] - start["rss"]
    assert grew < 2 * LARGEST_PAGE_MB, f"peak grew by {grew:.0f} MiB"
    still_clicks(user)


def test_another_users_clicks_keep_their_pace_under_attack(server, files, user):
    idle = percentiles(clicks_ms(user, 20))
    with Attack(server.url, str(files["small"]), str(files["largest"])):
        time.sleep(1.5)
        attacked = percentiles(clicks_ms(user, 20))
    # Served, not starved: a refused click counts 10 s, and one queued behind the attackers'
    # calls would take seconds. The pace itself (the aim: a p90 within 2× the idle one) is
    # measured by ``python -m segdemo.bench_abuse``: a first click on a flat photo costs two
    # views and two graph cuts, and this shared machine's noise moves the ratio from run to run.
    assert attacked["p90_ms"] < max(1000.0, 2 * idle["p90_ms"] + 150), (idle, attacked)
    assert attacked["p50_ms"] < 2 * idle["p50_ms"] + 300, (idle, attacked)


def test_one_page_holds_at_most_its_share_of_memory(server, files, user):
    # The pages live in the server's own process. The refinement's helper holds none, and it
    # may be starting (about 60 MiB) during these clicks: the user's click launched it.
    before = server.memory_mb(helpers=False)["rss"]
    page = PictureClient(server.url, address="10.6.0.1")
    assert page.open(str(files["photo"]))["size"] == [1024, 768]
    answers = [page.point(100 + 10 * (k % 60), 100 + 5 * (k % 100)) for k in range(60)]
    errors = [a["error"] for a in answers if "error" in a]
    assert errors and "as much as the server keeps for one page" in errors[0]
    grew = server.memory_mb(helpers=False)["rss"] - before
    assert grew < picture_store.PAGE_BYTES / MiB * 1.5, f"one page took {grew:.0f} MiB"
    assert "error" not in page.operate("undo")  # and it can go on by undoing
    still_clicks(user)


def test_request_bodies_and_session_hashes_are_bounded(server, files, user):
    url = server.url
    component = user.component_id
    call = {"data": {}, "component_id": component, "fn_name": "start"}
    with httpx.Client(base_url=url, timeout=60) as http:
        big = http.post("/gradio_api/component_server/", json={**call, "session_hash": "x" * 2**20})
        assert big.status_code in (400, 413)
        assert http.post(
            "/gradio_api/component_server/", json={**call, "session_hash": "x" * 100}
        ).status_code == 400
        assert http.post(
            "/gradio_api/queue/join", json={"data": [], "fn_index": 0, "session_hash": "a/b"}
        ).status_code == 400
        body = json.dumps({**call, "session_hash": "ok", "pad": "p" * (8 * MiB)})
        answer = http.post(
            "/gradio_api/component_server/", content=body,
            headers={"content-type": "application/json"},
        )
        assert answer.status_code == 413
        many = [("files", (f"f{k}.png", b"\0" * (10 * MiB), "image/png")) for k in range(3)]
        assert http.post("/gradio_api/upload", files=many).status_code == 413
        before = server.memory_mb()["rss"]
        for k in range(400):  # new session hashes on the picture's calls: no state each
            http.post("/gradio_api/component_server/", json={**call, "session_hash": f"s{k}"})
        assert server.memory_mb()["rss"] - before < 40
        config = http.get("/config").json()
        (shapes,) = [  # a cheap event: the convolution shapes calculator
            k for k, d in enumerate(config["dependencies"]) if d.get("api_name") == "conv_shapes"
        ]
        joins = [
            http.post(
                "/gradio_api/queue/join",
                json={"data": [8, 3, 2, 1, 1], "fn_index": shapes, "session_hash": f"j{k}"},
            ).status_code
            for k in range(guard.SESSIONS_PER_CLIENT + 5)
        ]
        assert 429 in joins
    still_clicks(user)


def test_bad_input_gets_messages_and_the_log_stays_short(server, files, user):
    page = PictureClient(server.url)
    log_before = server.log.stat().st_size
    assert "damaged or truncated" in page.open(str(files["truncated"]))["error"]
    assert "not an image that can be read" in page.open(str(files["eps"]))["error"]
    for path in ("a\0b", "/tmp/" + "x" * 1_000_000, "/etc/passwd"):
        assert "Upload the photo through the page" in page.operate("open", path=path)["error"]
    # Another visitor's upload: a photo only the ordinary user sent, from its own address.
    only_theirs = write_png(files["folder"] / "only_theirs.png", 321, 241)
    with open(only_theirs, "rb") as f:
        theirs = user.http.post("/gradio_api/upload", files={"files": f}).json()[0]
    assert "Upload the photo through the page" in page.operate("open", path=theirs)["error"]
    # The same photo uploaded by both: Gradio gives it one path, and each may open it (the
    # user's, from another page of theirs, so that their page keeps its photo for the tests).
    assert "error" not in page.open(str(only_theirs))
    users_other_page = PictureClient(server.url, address="10.9.9.9")
    assert "error" not in users_other_page.operate("open", path=theirs)
    for label in (2, "1", None):
        prompt = {"kind": "point", "x": 10, "y": 10, "label": label}
        assert "error" in page.operate("prompt", prompt=prompt)
    huge = {"kind": "point", "x": 10**400, "y": 10, "label": 1}
    answer = page.operate("prompt", prompt=huge)["error"]
    assert "too large" in answer and len(answer) < 200
    assert server.log.stat().st_size - log_before < 20_000
    assert "Traceback" not in server.log.read_text()
    still_clicks(user)


def test_an_upload_is_kept_for_each_client_that_sent_it():
    uploads = guard.Uploads(size=3)
    uploads.add("10.0.0.1", ["/up/a.png"])
    uploads.add("10.0.0.2", ["/up/a.png"])  # the same bytes, so the same path
    assert uploads.uploaded_by("10.0.0.1", "/up/a.png")
    assert uploads.uploaded_by("10.0.0.2", "/up/a.png")
    assert not uploads.uploaded_by("10.0.0.3", "/up/a.png")
    uploads.add("10.0.0.3", ["/up/b.png", "/up/c.png"])  # the oldest pair is forgotten
    assert not uploads.uploaded_by("10.0.0.1", "/up/a.png")
    assert uploads.uploaded_by("10.0.0.2", "/up/a.png")


def test_a_flood_of_pages_evicts_no_one(server, files, user):
    """Last of the attacks on the server: it leaves the store full of recent pages."""
    attacker = PictureClient(server.url, session_hash="flood")
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for _ in range(200):  # empty pages: start, then a change; nothing is stored
            token = attacker.call("start", {})["token"]
            attacker.call("operate", {"token": token, "op": "clear"})
        refused = []
        for k in range(picture_store.MAX_PAGES + 8):  # real pages, each "from" its own address
            page = PictureClient(server.url, component_id=attacker.component_id,
                                 address=f"10.7.{k // 200}.{k % 200 + 1}")
            answer = page.open(str(files["small"]))
            refused.append(answer.get("error", ""))
        assert http.get("/config").status_code == 200
    assert any("as many pictures as it can" in r for r in refused), refused[-3:]
    still_clicks(user)  # a page used a moment ago survives


def test_downloads_are_removed_after_a_while(tmp_path, monkeypatch):
    from segdemo import imaging

    monkeypatch.setattr(imaging, "_downloads_folder", lambda: tmp_path)
    first = imaging.save_png(np.zeros((40, 40), np.uint8), "old")
    coco = imaging.save_json({"annotations": []}, "old-coco")
    old = time.time() - imaging.DOWNLOAD_SECONDS - 60
    for path in (first, coco):
        os.utime(path, (old, old))
    second = imaging.save_json({"annotations": []}, "new-coco")
    assert not os.path.exists(first) and not os.path.exists(coco) and os.path.exists(second)


def test_the_downloads_folder_goes_when_the_server_exits():
    script = (
        "import numpy as np; from segdemo import imaging; "
        "print(imaging.save_png(np.zeros((8, 8), np.uint8)))"
    )
    written = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=REPO_ROOT
    ).stdout.strip()
    assert Path(written).name.startswith("segdemo-") and not Path(written).parent.exists()


def test_a_stopped_server_leaves_no_downloads_behind(tmp_path, monkeypatch, files):
    """A service manager stops the server with SIGTERM: it closes as on Ctrl-C, and the
    folder of its downloads goes with it."""
    from gradio_client import Client, handle_file

    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the server's temporary files, here
    with app_server(free_port(), tmp_path / "app.log") as running:
        Client(running.url, verbose=False).predict(
            handle_file(str(files["small"])), "[[10, 10, 1]]", "", "click_net", True,
            api_name="/prompt_segment",
        )
        assert list(tmp_path.glob("segdemo-downloads-*/segdemo-*.png"))
    assert running.process.returncode == 0, (tmp_path / "app.log").read_text()[-2000:]
    assert not list(tmp_path.glob("segdemo-downloads-*"))


def test_every_tabs_download_is_written_where_old_ones_are_removed():
    """Mask R-CNN's id map and COCO JSON, one pair per request, go to the downloads folder,
    which is cleaned as it is written, not to the system's temporary folder."""
    from segdemo.examples import scene_examples
    from segdemo.imaging import downloads_folder
    from segdemo.ui.maskrcnn_tab import maskrcnn_instances_ui

    *_, id_map, coco_file, _ = maskrcnn_instances_ui(scene_examples()[0], "maskrcnn", 0.5, 0.5)
    assert {Path(id_map).parent, Path(coco_file).parent} == {downloads_folder()}


def test_uploads_are_cleaned_up():
    import app

    assert app.build_app().delete_cache == app.DELETE_CACHE
