"""The prompted tab's clickable picture: its operations, its store, and its server functions
over HTTP (the route beside the queue), with the shipped click_net."""

from __future__ import annotations

import base64
import io
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from segdemo.data.scenes import make_scene
from segdemo.picture_client import PictureClient
from segdemo.prompts import Click, PromptError
from segdemo.ui import picture_ops, picture_store, prompt_picture
from segdemo.ui.picture_drafts import DRAFTS
from segdemo.ui.picture_ops import add_prompt, clear, open_image, undo
from segdemo.ui.picture_store import PictureError, PictureStore, checked_token, new_token
from segdemo.ui.picture_view import mask_png, view


def decoded(data_url: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1])))


def drawn_mask(view: dict) -> np.ndarray:
    """The mask as the page draws it: every pixel the PNG does not leave transparent."""
    return np.asarray(decoded(view["mask"]).convert("RGBA"))[..., 3] > 0


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Two different 240×320 street scenes, saved as PNG."""
    folder = tmp_path_factory.mktemp("photos")
    paths = []
    for seed in (3, 4):
        path = folder / f"scene-{seed}.png"
        Image.fromarray(make_scene(seed, "val", (240, 320)).image).save(path)
        paths.append(str(path))
    return paths


def opened(path: str, store: PictureStore | None = None):
    store = store or PictureStore()
    token = new_token()
    store.update(token, lambda p: open_image(p, path))
    return store, token


def test_the_drawn_mask_is_the_mask_and_its_outline_stays_inside(photos):
    store, token = opened(photos[0])
    prompt = {"kind": "point", "x": 150, "y": 120, "label": 1}
    picture = store.update(token, lambda p: add_prompt(p, prompt))
    shown = view(picture, token)
    mask = picture.session.current.mask
    assert np.array_equal(drawn_mask(shown), mask)
    palette = np.asarray(decoded(shown["mask"]))
    assert set(np.unique(palette[mask])) <= {1, 2} and (palette[~mask] == 0).all()
    assert shown["prompts"] == [{"kind": "point", "x": 150.0, "y": 120.0, "label": 1}]
    assert shown["size"] == [320, 240] and "photo" not in shown


def test_the_outline_is_the_masks_pixels_within_two_steps_of_its_background():
    """Index 2 (white) on the mask's pixels two 4-neighbour steps or fewer from a background
    pixel, 1 (fill) deeper inside; the photo's border is no edge of the mask."""
    mask = np.zeros((40, 50), bool)
    mask[5:30, 0:20] = True  # touches the left border
    mask[12, 8] = False  # a one-pixel hole
    near_background = np.zeros_like(mask)
    padded = np.pad(~mask, 2)  # outside the photo: not background
    for dy in range(-2, 3):
        for dx in range(-2, 3):
            if abs(dy) + abs(dx) <= 2:
                near_background |= padded[2 + dy : 42 + dy, 2 + dx : 52 + dx]
    expected = np.where(mask, np.where(near_background, 2, 1), 0)
    assert np.array_equal(np.asarray(decoded(mask_png(mask))), expected)


def test_clicks_are_taken_and_kept_in_working_pixels_and_exported_at_the_original_size(tmp_path):
    """A photo larger than the working size: the page clicks the working image; the prompt
    stays in working pixels, and the mask and the JSON prompts leave in the upload's."""
    path = tmp_path / "big.png"
    Image.fromarray(make_scene(5, "val", (1200, 1600)).image).save(path)
    store, token = opened(str(path))
    image = store.get(token).session.image
    assert image.size == (768, 1024)
    prompt = {"kind": "point", "x": 512, "y": 384, "label": 1}
    picture = store.update(token, lambda p: add_prompt(p, prompt))
    assert picture.session.prompts[0] == Click(512.0, 384.0, True)
    assert picture.session.original_mask().shape == (1200, 1600)
    assert '"x": 800.0, "y": 600.0' in picture.session.original_prompts_json()
    assert view(picture, token)["prompts"][0]["x"] == pytest.approx(512)


@pytest.mark.parametrize(
    "prompt, message",
    [
        ({"kind": "point", "x": "12", "y": 4, "label": 1}, "x, y, label"),
        ({"kind": "point", "x": float("nan"), "y": 4, "label": 1}, "not a number"),
        ({"kind": "point", "x": 320, "y": 4, "label": 1}, "outside the 320×240 image"),
        ({"kind": "point", "x": 12, "y": 4, "label": 2}, "label is 1"),
        ({"kind": "point", "x": 12, "y": 4, "label": True}, "x, y, label"),
        ({"kind": "box", "box": [10, 10, 11, 50]}, "too small"),
        ({"kind": "box", "box": [10, 10]}, "box must be"),
        ({"kind": "scribble"}, "point or a box"),
        ("click", "point or a box"),
    ],
)
def test_a_malformed_prompt_is_refused_and_changes_nothing(photos, prompt, message):
    store, token = opened(photos[0])
    before = store.get(token)
    with pytest.raises(PromptError, match=message):
        store.update(token, lambda p: add_prompt(p, prompt))
    assert store.get(token) is before


def test_a_box_confines_the_mask_and_undo_and_clear_need_no_model(photos):
    store, token = opened(photos[1])
    box = {"kind": "box", "box": [100, 60, 220, 200]}
    picture = store.update(token, lambda p: add_prompt(p, box))
    mask = picture.session.current.mask
    assert mask.any() and not mask[:, :100].any() and not mask[:59, :].any()
    negative = {"kind": "point", "x": 160, "y": 130, "label": 0}
    after = store.update(token, lambda p: add_prompt(p, negative))
    assert not after.session.current.mask[130, 160]
    undone = store.update(token, undo)
    assert np.array_equal(undone.session.current.mask, mask)
    assert undone.version > after.version
    cleared = store.update(token, clear)
    assert cleared.session.current is None and cleared.session.image is not None


def test_only_issued_tokens_open_a_picture():
    token = new_token()
    assert checked_token({"token": token}) == token
    forged = token[:16] + ("0" if token[16] != "0" else "1") + token[17:]
    for value in ({"token": forged}, {"token": "x" * 32}, {"token": 7}, {}, None):
        with pytest.raises(PictureError, match="reload the page"):
            checked_token(value)


def test_a_click_on_a_photo_that_was_replaced_is_refused(photos):
    store, token = opened(photos[0])
    first = store.get(token).session.image.digest
    store.update(token, lambda p: open_image(p, photos[1]))
    prompt = {"kind": "point", "x": 150, "y": 120, "label": 1}
    with pytest.raises(PictureError, match="photo changed"):
        store.update(token, lambda p: add_prompt(p, prompt, first))
    current = store.get(token).session.image.digest
    picture = store.update(token, lambda p: add_prompt(p, prompt, current))
    assert len(picture.session.prompts) == 1


def test_the_store_is_bounded_and_a_busy_page_is_refused_not_queued(photos, monkeypatch):
    store = PictureStore(max_pages=3, recent=0)  # recent=0: every page may be pushed out
    tokens = [new_token() for _ in range(5)]
    versions = [store.update(t, lambda p: open_image(p, photos[0])).version for t in tokens]
    assert len(store) == 3 and versions == sorted(versions)
    store.get(new_token())  # reading a page that has nothing stores nothing
    store.update(new_token(), clear)  # nor does a change to a page without a photo
    assert len(store) == 3
    # A page pushed out and opened again still counts its versions upwards.
    assert store.update(tokens[0], lambda p: p.changed()).version > versions[-1]
    monkeypatch.setattr(picture_store, "BUSY_SECONDS", 0.2)
    inside, release = threading.Event(), threading.Event()

    def slow(picture):
        inside.set()
        release.wait(5)
        return picture.changed()

    worker = threading.Thread(target=store.update, args=(tokens[-1], slow))
    worker.start()
    inside.wait(5)
    with pytest.raises(PromptError, match="previous clicks"):
        store.update(tokens[-1], lambda p: p.changed())
    store.update(tokens[-2], lambda p: p.changed())  # another page is not held up
    release.set()
    worker.join()


def test_the_queued_fallback_gives_the_same_view_and_reports_errors_in_it(photos, monkeypatch):
    store, token = opened(photos[0])
    monkeypatch.setattr(prompt_picture, "STORE", store)
    monkeypatch.setattr(picture_ops, "STORE", store)
    prompt = {"kind": "point", "x": 150, "y": 120, "label": 1}
    event = SimpleNamespace(value={"op": "prompt", "prompt": prompt})
    queued = prompt_picture.queued({"token": token}, event)
    session = store.get(token).session
    replayed = session.replay(session.prompts)
    assert np.array_equal(drawn_mask(queued), replayed.current.mask)
    event = SimpleNamespace(value={"op": "paint", "request": 7})
    refused = prompt_picture.queued({"token": token}, event)
    assert "Unknown operation" in refused["error"] and refused["version"] == queued["version"]
    assert refused["request"] == 7  # the page matches an answer to its request
    # A page without a token gets a new one, with an empty picture; a token that is not
    # this server's is refused, not silently replaced.
    fresh = prompt_picture.queued({}, SimpleNamespace(value={"op": "undo"}))
    assert fresh["token"] != token and fresh["image"] is None
    lost = prompt_picture.queued({"token": "0" * 32}, SimpleNamespace(value={"op": "undo"}))
    assert "lost its session" in lost["error"]


# Over HTTP, through the app's server functions: the route that skips the queue.


def test_server_functions_answer_errors_as_messages(app_url, photos, tmp_path):
    page = PictureClient(app_url)
    junk = tmp_path / "notes.png"
    junk.write_text("not pixels")
    assert "not an image that can be read" in page.open(str(junk))["error"]
    assert picture_store.TOKEN.fullmatch(page.token)
    assert "first" in page.point(10, 10)["error"]  # no photo yet
    for path in (photos[0], "/etc/passwd", "app.py"):  # not uploaded through the page
        assert "Upload the photo through the page" in page.operate("open", path=path)["error"]
    assert "reload the page" in page.call("operate", {"token": "guess", "op": "undo"})["error"]
    assert "no mask yet" in page.call("export", {"token": page.token, "what": "mask"})["error"]


def test_two_pages_see_only_their_own_masks_even_with_one_session_hash(app_url, photos):
    """Two pages (even sharing Gradio's session hash) click at once: each one's masks are
    those of its own photo and prompts; a page's token is the only key to its picture."""
    pages = [PictureClient(app_url, session_hash="same") for _ in photos]
    for page, photo in zip(pages, photos, strict=True):
        assert page.open(photo)["size"] == [320, 240]
    clicks = {0: [(150, 120, True), (60, 200, False)], 1: [(200, 80, True), (40, 40, True)]}
    answers: dict[int, list[dict]] = {0: [], 1: []}

    def clicking(k: int) -> None:
        for x, y, positive in clicks[k]:
            answers[k].append(pages[k].point(x, y, positive))

    threads = [threading.Thread(target=clicking, args=(k,)) for k in answers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    from segdemo.imaging import prepare_image
    from segdemo.tasks.prompt_session import PromptSession

    for k, photo in enumerate(photos):
        prompts = [Click(x, y, p) for x, y, p in clicks[k]]
        replayed = PromptSession.open(prepare_image(photo), "click_net").replay(prompts)
        assert np.array_equal(drawn_mask(answers[k][-1]), replayed.current.mask)
        assert [p["x"] for p in answers[k][-1]["prompts"]] == [x for x, _, _ in clicks[k]]
        exported = pages[k].call("export", {"token": pages[k].token, "what": "mask"})
        assert np.array_equal(np.asarray(decoded(exported["data"])) > 0, replayed.current.mask)
    assert answers[0][-1]["image"] != answers[1][-1]["image"]


def test_the_hover_preview_is_the_first_click_and_changes_nothing(app_url, photos):
    page = PictureClient(app_url)
    opened_version = page.open(photos[0])["version"]
    shown = page.call("preview", {"token": page.token, "x": 150, "y": 120})
    assert page.operate("undo")["prompts"] == []  # the preview added no prompt
    clicked = page.point(150, 120)
    assert np.array_equal(drawn_mask(shown), drawn_mask(clicked))
    assert clicked["version"] > opened_version
    # Once there is a prompt there is nothing to preview.
    assert page.call("preview", {"token": page.token, "x": 10, "y": 10}) == {"skipped": True}


def test_a_first_click_drafts_the_network_mask_then_answers_refined(app_url, photos):
    """Through HTTP as the page does it: the draft call, sent beside the click, gets the mask
    the network alone gives (what the tab shows with the refinement off); the click's own
    answer is the refined mask, as without a draft."""
    page = PictureClient(app_url)
    page.open(photos[0])
    prompt = {"kind": "point", "x": 150, "y": 120, "label": 1}
    drafted = {}
    call = threading.Thread(
        target=lambda: drafted.update(page.call("draft", {"token": page.token, "draft": 5}))
    )
    call.start()
    waited_for(lambda: DRAFTS.is_waiting(page.token))  # the call is there before the click
    answer = page.operate("prompt", prompt=prompt, draft=5)
    call.join(timeout=30)
    assert "mask" in drafted, drafted

    alone = PictureClient(app_url)
    alone.open(photos[0])
    alone.operate("refine", refined=False)
    network = alone.operate("prompt", prompt=prompt)
    assert np.array_equal(drawn_mask(drafted), drawn_mask(network))

    plain = PictureClient(app_url)
    plain.open(photos[0])
    assert np.array_equal(drawn_mask(answer), drawn_mask(plain.operate("prompt", prompt=prompt)))
    assert not np.array_equal(drawn_mask(answer), drawn_mask(network))  # it was refined
    assert answer["refined"] and not network["refined"]  # what the page asks drafts by


def waited_for(condition, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.01)


def test_a_draft_call_that_names_no_click_or_page_is_refused(app_url, photos):
    page = PictureClient(app_url)
    for payload in ({"token": page.token, "draft": 1}, {"token": page.token}, {"draft": 1}):
        assert "error" in page.call("draft", payload)
    page.open(photos[0])
    for number in ("1", True, -1, 2**40, None):
        assert "error" in page.call("draft", {"token": page.token, "draft": number})
    # A first click answered before its draft call came: the call ends at once.
    page.operate("prompt", prompt={"kind": "point", "x": 10, "y": 10, "label": 1}, draft=9)
    began = time.monotonic()
    assert page.call("draft", {"token": page.token, "draft": 9}) == {"skipped": True}
    assert time.monotonic() - began < 0.5


def test_only_a_first_click_publishes_a_draft_and_a_failure_to_does_not_fail_it(
    app_url, photos, monkeypatch
):
    published = []
    monkeypatch.setattr(DRAFTS, "publish", lambda *args: published.append(args[:2]))
    page = PictureClient(app_url)
    page.open(photos[0])
    page.operate("prompt", prompt={"kind": "point", "x": 150, "y": 120, "label": 1}, draft=1)
    page.operate("prompt", prompt={"kind": "point", "x": 60, "y": 60, "label": 0}, draft=2)
    assert published == [(page.token, 1)]

    def broken(*args):
        raise RuntimeError("no draft today")

    monkeypatch.setattr(DRAFTS, "publish", broken)
    page.operate("clear")
    answer = page.operate(
        "prompt", prompt={"kind": "point", "x": 150, "y": 120, "label": 1}, draft=3
    )
    assert "error" not in answer and drawn_mask(answer).any()
