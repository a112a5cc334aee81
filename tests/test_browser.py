"""The app in a real browser (Debian's Chromium driven by Playwright): upload, run, see results.

Skipped with a reason when Chromium is not installed (``apt-get install chromium``); CI
installs it. On failure a screenshot of the page is saved in the test's temporary folder.
"""

from __future__ import annotations

import pytest
from PIL import Image

from segdemo.browser import browser_page, chromium_available, open_tab, upload
from segdemo.examples import flower_examples
from segdemo.models.patch_classifier import output_size

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
