"""The app in a real browser (Debian's Chromium driven by Playwright): upload, run, see results.

Skipped with a reason when Chromium is not installed (``apt-get install chromium``); CI
installs it. On failure a screenshot of the page is saved in the test's temporary folder.
"""

from __future__ import annotations

import base64
import io
import json
import re
from urllib.parse import urlparse

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from segdemo.bench_clicks import DRAFT_CALL
from segdemo.browser import (
    KEEP_DRAFTS_JS,
    browser_page,
    browser_pages,
    chromium_available,
    click_picture,
    drag_on_picture,
    drawn_mask,
    on_photo,
    opaque_pixels,
    open_photo,
    open_tab,
    paint_strokes,
    picture_button,
    set_refinement,
    upload,
    wait_for_prompts,
)
from segdemo.clicks import first_click
from segdemo.data.scenes import make_scene
from segdemo.examples import flower_examples, ground_truth, photo_examples, scene_examples
from segdemo.models.patch_classifier import output_size
from segdemo.tasks.finetune import labels_from_mask
from segdemo.ui.prompted_tab import MVAL_CURVE

pytestmark = pytest.mark.skipif(
    not chromium_available(),
    reason="Chromium not found at /usr/bin/chromium (apt-get install chromium)",
)


@pytest.fixture
def page(app_url, tmp_path, request):
    with browser_page() as page:
        page.goto(app_url)
        yield page
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)


def natural_size(page, selector: str) -> tuple[int, int]:
    """(height, width) of the picture inside an output image component, once it is shown."""
    image = page.locator(f"{selector} img").first
    image.wait_for(state="visible", timeout=90_000)
    page.wait_for_function(
        "el => el.complete && el.naturalWidth > 0", arg=image.element_handle(), timeout=30_000
    )
    width, height = image.evaluate("el => [el.naturalWidth, el.naturalHeight]")
    return height, width


def test_classification_tab_shows_the_map_and_overlay(page):
    example = flower_examples()[0]
    panel = open_tab(page, "classify")
    upload(panel, example)
    size = Image.open(example).size[::-1]
    assert natural_size(page, "#classify-overlay") == size
    assert natural_size(page, "#classify-low-res") == (output_size(size[0]), output_size(size[1]))
    assert "IoU against the ground truth" in panel.inner_text()


def test_upsampling_tab_shows_both_decoders(page):
    example = flower_examples()[1]
    panel = open_tab(page, "upsample")
    upload(panel, example)
    size = Image.open(example).size[::-1]
    for name in ("upsample_transposed", "upsample_bilinear"):
        assert natural_size(page, f"#{name}-mask") == size
        assert natural_size(page, f"#{name}-zoom") == (256, 256)
    assert "checkerboard score" in panel.inner_text()


def test_a_bad_upload_shows_a_message_and_the_page_keeps_working(page, tmp_path):
    junk = tmp_path / "notes.png"
    junk.write_text("not pixels")
    panel = open_tab(page, "classify")
    upload(panel, str(junk))
    page.get_by_text("not an image that can be read").first.wait_for(timeout=30_000)


def test_unet_tab_shows_both_label_maps_and_the_slices(page):
    example = scene_examples()[0]
    panel = open_tab(page, "unet")
    upload(panel, example)
    size = Image.open(example).size[::-1]
    for name in ("unet", "unet_noskip"):
        assert natural_size(page, f"#{name}-labels") == size
    page.get_by_text("mIoU").first.wait_for()


def test_maskrcnn_tab_shows_instances_and_the_semantic_comparison(page):
    example = scene_examples()[0]
    panel = open_tab(page, "maskrcnn")
    upload(panel, example)
    h, w = Image.open(example).size[::-1]
    assert natural_size(page, "#maskrcnn-picture") == (2 * h, 2 * w)  # small images drawn ×2
    assert natural_size(page, "#instance-picture") == (2 * h, 2 * w)
    panel.get_by_text(re.compile(r"\d+ instances")).first.wait_for()


def mask_pixels(page, prompts: int) -> int:
    """The mask's size from the picture's status line, once it shows ``prompts`` prompts."""
    status = wait_for_prompts(page, prompts)
    return int(re.search(r"([\d,]+) pixels", status).group(1).replace(",", ""))


def click_the_biggest_flower(page):
    """In the prompted tab, upload the first flower example into the picture and click inside
    its biggest flower; returns (panel, example pixels, that flower's mask, the click)."""
    example = flower_examples()[0]
    pixels = np.asarray(Image.open(example).convert("RGB"))
    regions, _ = ndimage.label(ground_truth(pixels) > 0)
    biggest = regions == np.argmax(np.bincount(regions.ravel())[1:]) + 1
    inside = first_click(biggest)
    open_photo(page, example)
    panel = page.locator("#prompted-tab")
    size = page.locator("#prompted-picture .sd-photo").evaluate(
        "el => [el.naturalHeight, el.naturalWidth]"
    )
    assert tuple(size) == pixels.shape[:2]
    click_picture(page, inside.x, inside.y)
    return panel, pixels, biggest, inside


def test_prompted_tab_click_remove_undo_and_clear(page):
    panel, _, biggest, _ = click_the_biggest_flower(page)
    first = mask_pixels(page, 1)
    # The clicked flower is mostly in the mask, and the mask is not the whole picture.
    assert 0.3 * biggest.sum() < first < 0.5 * biggest.size
    assert np.array_equal(drawn_mask(page).sum(), first)
    # Once the clicks pause the details follow, and stop being marked stale.
    panel.get_by_text(re.compile(r"mask \d of \d")).first.wait_for()
    page.wait_for_function(
        "() => !document.getElementById('prompted-details').classList.contains('sd-stale')"
    )

    picture_button(page, "Remove").click()
    ys, xs = np.nonzero(biggest)
    edge = (xs.max(), ys[np.argmax(xs)])  # the flower's rightmost pixel: part of the mask
    click_picture(page, *edge)
    second = mask_pixels(page, 2)
    assert second != first
    assert not drawn_mask(page)[edge[1], edge[0]]  # the removed spot is out of the mask

    picture_button(page, "Undo").click()
    assert mask_pixels(page, 1) == first

    picture_button(page, "Clear").click()
    page.locator("#prompted-picture .sd-status").get_by_text("is ready").wait_for()
    assert not drawn_mask(page).any()


def read_png(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L")) > 127


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return (a & b).sum() / max((a | b).sum(), 1)


def test_the_drawn_mask_is_the_servers_mask_at_the_original_size(page, client, tmp_path):
    """A photo larger than the working size, prompted with a positive click, a negative
    right-click and a box drag: the mask drawn in the page, scaled to the photo's size, is the
    mask /prompt_segment gives for the prompts the page reports. No request leaves 127.0.0.1."""
    from gradio_client import handle_file

    requests = []
    page.on("request", lambda request: requests.append(request.url))
    path = tmp_path / "street.png"
    Image.fromarray(make_scene(11, "val", (900, 1500)).image).save(path)
    open_photo(page, str(path))
    page.wait_for_timeout(300)
    click_picture(page, 500, 300)
    wait_for_prompts(page, 1)
    click_picture(page, 530, 330, positive=False)
    wait_for_prompts(page, 2)
    picture_button(page, "Box").click()
    drag_on_picture(page, (380, 200), (700, 560))
    wait_for_prompts(page, 3)

    drawn = drawn_mask(page)
    assert drawn.shape == (614, 1024) and drawn.any()
    at_original = np.asarray(Image.fromarray(drawn).resize((1500, 900), Image.NEAREST))
    page.get_by_text("Prompts as JSON").click()
    points = page.locator("#prompted-points-json textarea")
    page.wait_for_function("el => el.value.includes('box')", arg=points.element_handle())
    prompts = json.loads(points.input_value())
    assert [p["kind"] for p in prompts] == ["point", "point", "box"]
    assert prompts[0]["x"] == pytest.approx(500.5 * 1500 / 1024, abs=1.5)
    _, files, details = client.predict(
        handle_file(str(path)),
        json.dumps(prompts),
        "",
        "click_net",
        True,
        api_name="/prompt_segment",
    )
    assert iou(at_original, read_png(files[details["best"]])) >= 0.99
    hosts = {
        urlparse(url).hostname
        for url in requests
        if urlparse(url).scheme in ("http", "https", "ws", "wss")
    }
    assert hosts == {"127.0.0.1"}, hosts


def prompts_shown(page) -> str:
    """The page's prompts as the JSON box shows them (original pixels, click order)."""
    page.get_by_text("Prompts as JSON").click()
    points = page.locator("#prompted-points-json textarea")
    page.wait_for_function("el => el.value.includes('point')", arg=points.element_handle())
    return points.input_value()


def the_cat() -> str:
    """The path of a real example photo: scikit-image's cat (chelsea)."""
    return next(p for p in photo_examples() if p.endswith("chelsea.png"))


def test_refine_on_the_photo_switches_between_the_refined_and_the_networks_mask(page, client):
    """On a real photo: the first click shows the network's own mask at once (a draft), then
    the refined mask, which differs from it; each is what /prompt_segment returns with the
    refinement on or off, and switching back restores the refined mask."""
    from gradio_client import handle_file

    cat = the_cat()
    open_photo(page, cat)
    page.evaluate(KEEP_DRAFTS_JS)
    click_picture(page, 150, 150)
    wait_for_prompts(page, 1)
    refined = drawn_mask(page)
    assert page.evaluate("window.segdemoDrafts.length") == 1
    draft = opaque_pixels(page.evaluate("window.segdemoDraftDrawn"))
    assert not drawn_mask(page, ".sd-preview").any()  # the refined mask replaced the draft
    set_refinement(page, False)
    alone = drawn_mask(page)
    assert refined.any() and alone.any() and iou(refined, alone) < 0.9
    assert iou(draft, alone) >= 0.99
    prompts = prompts_shown(page)
    for refine, shown in ((True, refined), (False, alone)):
        _, files, details = client.predict(
            handle_file(cat), prompts, "", "click_net", True, refine, api_name="/prompt_segment"
        )
        assert details["refined"] is refine
        assert iou(shown, read_png(files[details["best"]])) >= 0.99
    set_refinement(page, True)
    assert np.array_equal(drawn_mask(page), refined)


def test_the_prompted_tab_shows_the_measured_curve_of_clicks(page):
    """Beside its table of MVal figures, the prompted tab shows the IoU-vs-clicks plot that
    ``python -m segdemo.evaluate`` drew, loaded in the page."""
    panel = open_tab(page, "prompted")
    panel.locator("#prompted-mval-curve").scroll_into_view_if_needed()
    assert natural_size(page, "#prompted-mval-curve") == Image.open(MVAL_CURVE).size[::-1]


def test_the_downloads_are_the_refined_mask_shown_even_when_asked_for_during_the_draft(
    page, tmp_path
):
    """A first click on a real photo larger than the working size, and "Mask PNG" pressed as
    soon as the network's draft is drawn: the file is the refined mask the picture then shows
    (not the draft), at the photo's original size; the cut-out's opaque pixels are that mask
    at the working size."""
    cat = Image.open(the_cat())
    big = cat.convert("RGB").resize((cat.width * 3, cat.height * 3), Image.BICUBIC)
    big.save(tmp_path / "cat.png")
    open_photo(page, str(tmp_path / "cat.png"))
    page.evaluate(KEEP_DRAFTS_JS)
    click_picture(page, 340, 340)
    page.wait_for_function("window.segdemoDrafts.length > 0")
    with page.expect_download() as pressed:
        picture_button(page, "Mask PNG").click()
    downloaded = read_png(pressed.value.path())
    wait_for_prompts(page, 1)
    shown = drawn_mask(page)
    draft = opaque_pixels(page.evaluate("window.segdemoDraftDrawn"))
    assert shown.shape == (681, 1024) and downloaded.shape == (big.height, big.width)
    assert iou(draft, shown) < 0.9  # had the draft been downloaded, the file would differ
    at_original = np.asarray(Image.fromarray(shown).resize(big.size, Image.NEAREST))
    assert iou(downloaded, at_original) >= 0.99
    with page.expect_download() as pressed:
        picture_button(page, "Cut-out PNG").click()
    cutout = np.asarray(Image.open(pressed.value.path()))
    assert cutout.shape == (*shown.shape, 4)
    assert np.array_equal(cutout[..., 3] > 0, shown)


def test_a_draft_that_comes_after_its_clicks_answer_is_never_drawn(page):
    """The draft call of a first click is held back until the refined mask shows, then let
    through with the network's mask the server gave it: the page leaves it undrawn, and the
    picture keeps the refined mask."""
    held = []

    def hold_drafts(route) -> None:
        if DRAFT_CALL in (route.request.post_data or ""):
            held.append((route, route.fetch()))  # the server's answer, kept back
        else:
            route.continue_()

    cat = the_cat()
    page.route("**/component_server**", hold_drafts)
    open_photo(page, cat)
    page.evaluate(KEEP_DRAFTS_JS)
    click_picture(page, 150, 150)
    wait_for_prompts(page, 1)
    refined = drawn_mask(page)
    for _ in range(50):  # the held call's handler may still wait on the server's answer
        if held:
            break
        page.wait_for_timeout(100)
    assert len(held) == 1
    route, answer = held[0]
    assert "mask" in answer.json()  # the server did send the network's mask
    route.fulfill(response=answer)
    page.wait_for_timeout(500)
    assert page.evaluate("window.segdemoDrafts.length") == 0
    assert not drawn_mask(page, ".sd-preview").any()
    assert np.array_equal(drawn_mask(page), refined)


def test_two_users_clicking_at_once_each_see_their_own_mask(app_url, client, tmp_path):
    from gradio_client import handle_file

    photos, clicks = [], [(100, 150), (220, 120)]
    for seed in (12, 13):
        photos.append(tmp_path / f"street-{seed}.png")
        Image.fromarray(make_scene(seed, "val", (240, 320)).image).save(photos[-1])
    expected = []
    for photo, (x, y) in zip(photos, clicks, strict=True):
        _, files, details = client.predict(
            handle_file(str(photo)),
            json.dumps([[x, y, 1]]),
            "",
            "click_net",
            True,
            api_name="/prompt_segment",
        )
        expected.append(read_png(files[details["best"]]))
    assert iou(*expected) < 0.9  # the two users' masks are told apart
    with browser_pages(2) as pages:
        for page, photo in zip(pages, photos, strict=True):
            page.goto(app_url)
            open_photo(page, str(photo))
        for page, (x, y) in zip(pages, clicks, strict=True):
            click_picture(page, x, y)  # both clicks leave before either answer arrives
        for page, mask in zip(pages, expected, strict=True):
            wait_for_prompts(page, 1)
            assert iou(drawn_mask(page), mask) >= 0.99


def test_the_hover_preview_shows_the_mask_a_click_would_give(page):
    example = flower_examples()[0]
    open_photo(page, example)
    picture_button(page, "Hover preview").click()
    x, y = 165, 134
    page.mouse.move(*on_photo(page, x, y))
    page.wait_for_function(
        "p => document.querySelector('#prompted-picture .sd-picture').dataset.preview === p",
        arg=f"{x},{y}",
    )
    previewed = drawn_mask(page, ".sd-preview")
    assert previewed.any() and not drawn_mask(page).any()
    click_picture(page, x, y)
    wait_for_prompts(page, 1)
    assert iou(drawn_mask(page), previewed) >= 0.99
    assert not drawn_mask(page, ".sd-preview").any()  # a click ends the preview


def test_a_photo_dropped_or_pasted_on_the_picture_opens_in_it(page, tmp_path):
    open_tab(page, "prompted")
    page.locator("#prompted-picture .sd-status").get_by_text("Drop a photo").wait_for()
    for seed, event in ((14, "drop"), (15, "paste")):
        path = tmp_path / f"street-{seed}.png"
        Image.fromarray(make_scene(seed, "val", (200, 300)).image).save(path)
        data = base64.b64encode(path.read_bytes()).decode()
        page.evaluate(
            """([data, event]) => {
                const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
                const files = new DataTransfer();
                files.items.add(new File([bytes], "street.png", {type: "image/png"}));
                const target = document.querySelector("#prompted-picture .sd-stage");
                const init = {bubbles: true, cancelable: true};
                if (event === "drop") {
                    target.dispatchEvent(new DragEvent("drop", {...init, dataTransfer: files}));
                } else {
                    const paste = new ClipboardEvent("paste", {...init, clipboardData: files});
                    window.dispatchEvent(paste);
                }
            }""",
            [data, event],
        )
        page.wait_for_function(
            "() => document.querySelector('#prompted-picture .sd-photo').naturalWidth === 300"
            " && document.querySelector('#prompted-picture .sd-status').innerText.includes('ready')"
        )
        click_picture(page, 150, 100)
        assert mask_pixels(page, 1) > 0
        picture_button(page, "Clear").click()
        page.locator("#prompted-picture .sd-status").get_by_text("is ready").wait_for()
        page.evaluate(
            "document.querySelector('#prompted-picture .sd-photo').removeAttribute('src')"
        )


def test_without_the_server_functions_clicks_go_through_the_queue(page):
    """The page cannot reach the picture's server functions (a proxy that blocks them):
    it says so, and upload, clicks and undo still work through Gradio's queue."""
    page.route("**/component_server**", lambda route: route.abort())
    page.reload()
    panel, _, biggest, _ = click_the_biggest_flower(page)
    first = mask_pixels(page, 1)
    assert 0.3 * biggest.sum() < first < 0.5 * biggest.size
    assert page.locator("#prompted-picture .sd-picture").get_attribute("data-path") == "queue"
    click_picture(page, 20, 20, positive=False)
    mask_pixels(page, 2)
    picture_button(page, "Undo").click()
    assert mask_pixels(page, 1) == first
    notice = page.locator("#prompted-picture .sd-notice").inner_text()
    assert "fast click path is not available" in notice and "queue" in notice


def test_an_example_opens_in_the_picture(page):
    example = scene_examples()[1]
    open_tab(page, "prompted")
    page.locator("#prompted-tab .gallery-item, #prompted-tab button.gallery").nth(
        len(flower_examples()) + 1
    ).click()
    page.locator("#prompted-picture .sd-picture.sd-has-photo").wait_for(timeout=90_000)
    size = page.locator("#prompted-picture .sd-photo").evaluate(
        "el => [el.naturalHeight, el.naturalWidth]"
    )
    assert tuple(size) == np.asarray(Image.open(example)).shape[:2]
    click_picture(page, 100, 100)
    assert mask_pixels(page, 1) > 0


def deepest_points(mask: np.ndarray, count: int) -> list[tuple[int, int]]:
    """(x, y) of the pixel farthest from the edge in each of the ``count`` largest regions."""
    regions, found = ndimage.label(mask)
    depth = ndimage.distance_transform_edt(mask)
    points = []
    for region in range(1, found + 1):
        inside = np.where(regions == region, depth, 0)
        y, x = np.unravel_index(inside.argmax(), inside.shape)
        points.append((inside.max(), int(x), int(y)))
    return [(x, y) for _, x, y in sorted(points, reverse=True)[:count]]


def picture(page, selector: str) -> np.ndarray:
    """The PNG an output image component shows, fetched as the browser fetched it."""
    image = page.locator(f"{selector} img").first
    image.wait_for(state="visible", timeout=90_000)
    response = page.request.get(image.get_attribute("src"))
    return np.asarray(Image.open(io.BytesIO(response.body())).convert("RGB"))


def fine_tune_the_classifier(page, steps: int) -> None:
    """Set the classification tab's fine-tuning steps and start it."""
    field = page.locator("#classify-finetune-steps input[type=number]")
    field.fill(str(steps))
    field.press("Enter")
    page.get_by_role("button", name="Fine-tune on this image").click()


def labels_as_read(page) -> tuple[np.ndarray, np.ndarray]:
    """(foreground, background) pixels of the classification tab's "labels as read" picture:
    the editor's green and red brush colours."""
    labels = picture(page, "#classify-finetune-labels")
    return np.all(labels == (0, 200, 83), axis=-1), np.all(labels == (213, 0, 0), axis=-1)


def test_brush_strokes_in_the_editor_become_the_training_labels(page):
    """Green and red strokes painted in the browser reach the fine-tuning at the pixels where
    they were painted, and the fine-tuned model then agrees with them."""
    example = flower_examples()[0]
    truth = ground_truth(np.asarray(Image.open(example).convert("RGB"))) > 0
    on_flowers = deepest_points(truth, 4)
    far_from_flowers = ~ndimage.binary_dilation(truth, iterations=10)
    on_background = [
        (x, y) for x in range(24, truth.shape[1], 64) for y in range(24, truth.shape[0], 64)
    ]
    on_background = [(x, y) for x, y in on_background if far_from_flowers[y, x]][:6]
    panel = open_tab(page, "classify")
    upload(panel, example)
    panel.get_by_text("Train on this image").first.click()
    editor = page.locator("#classify-editor")
    editor.scroll_into_view_if_needed()
    paint_strokes(editor, truth.shape, on_flowers, colour=0)
    paint_strokes(editor, truth.shape, on_background, colour=1)
    fine_tune_the_classifier(page, steps=20)

    green, red = labels_as_read(page)
    assert green.shape == truth.shape
    for x, y in on_flowers:
        assert green[y - 1 : y + 2, x - 1 : x + 2].all(), (x, y)
    for x, y in on_background:
        assert red[y - 1 : y + 2, x - 1 : x + 2].all(), (x, y)
    # Strokes, not floods: a few hundred pixels, nearly all green on flowers, red off them.
    assert 20 * len(on_flowers) < green.sum() < 0.1 * green.size
    assert truth[green].mean() > 0.95 and truth[red].mean() < 0.05
    summary = page.locator("#classify-finetune-summary")
    summary.locator("table").wait_for()
    row = summary.locator("tr", has_text="patch_classifier").inner_text()
    agreement = [float(a) for a in re.findall(r"stroke agreement ([0-9.]+)", row)]
    assert len(agreement) == 2 and agreement[1] >= 0.9


def test_a_mask_from_the_prompted_tab_trains_the_classifier(page):
    """The prompted tab's mask becomes the classification tab's label with one button: the
    mask sent is the refined mask the picture shows, and the labels the fine-tuning reads are
    that mask, minus a margin at its boundary."""
    panel, pixels, _, inside = click_the_biggest_flower(page)
    mask_pixels(page, 1)
    shown = drawn_mask(page)
    panel.get_by_role("button", name="Train tabs 1 and 2 on this mask").click()

    open_tab(page, "classify")
    sent = picture(page, "#classify-finetune-mask")[..., 0] > 127
    assert sent.shape == pixels.shape[:2] and sent[inside.y, inside.x]
    assert np.array_equal(sent, shown)  # the refined mask the picture shows
    fine_tune_the_classifier(page, steps=20)
    green, red = labels_as_read(page)
    foreground, background = labels_from_mask(sent)
    assert green.any() and np.array_equal(green, foreground)
    assert np.array_equal(red, background)
