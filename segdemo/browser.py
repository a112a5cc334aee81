"""Driving the app in a real browser: Debian's Chromium through Playwright.

Used by the browser tests and by ``python -m segdemo.browser`` (README screenshots). No browser
is downloaded: Playwright drives the system Chromium at ``CHROMIUM``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
from contextlib import contextmanager
from pathlib import Path

CHROMIUM = os.environ.get("SEGDEMO_CHROMIUM", "/usr/bin/chromium")
# Without these Chromium keeps trying to reach Google's servers, which a closed network refuses.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
TAB_NAMES = {
    "classify": "Classification as segmentation",
    "upsample": "Upsampling: transposed conv vs bilinear",
    "unet": "UNet semantic masks",
    "maskrcnn": "Mask R-CNN instances",
    "prompted": "Prompted masks (SAM-style)",
    "models": "Models",
}


def chromium_available() -> bool:
    return shutil.which(CHROMIUM) is not None or Path(CHROMIUM).is_file()


@contextmanager
def browser_page(width: int = 1400, height: int = 1000):
    """A fresh headless Chromium page (its own profile, so no state is shared)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(60_000)
            yield page
        finally:
            browser.close()


def open_tab(page, tab: str):
    """Click a tab by its id in ``TAB_NAMES``; returns the visible tab panel."""
    page.get_by_role("tab", name=TAB_NAMES[tab]).click()
    panel = page.locator(f"#{tab}-tab")
    panel.wait_for(state="visible")
    return panel


def upload(panel, image_path: str) -> None:
    """Put a file into the first image upload box of a tab panel."""
    panel.locator("input[type=file]").first.set_input_files(image_path)


def click_image(page, selector: str, x: float, y: float) -> None:
    """Click the picture of an image component at pixel (x, y) of the picture itself.

    The picture is drawn centred in its box, scaled as its CSS ``object-fit`` says (gradio
    shows small pictures at their natural size: ``scale-down``), so the pixel is mapped
    through that scale and the centring offset, as the browser draws it.
    """
    image = page.locator(f"{selector} img").first
    box = image.bounding_box()
    width, height, fit = image.evaluate(
        "el => [el.naturalWidth, el.naturalHeight, getComputedStyle(el).objectFit]"
    )
    scale = min(box["width"] / width, box["height"] / height)
    scale_x = scale_y = {"scale-down": min(scale, 1.0), "none": 1.0}.get(fit, scale)
    if fit == "fill":  # stretched to the box
        scale_x, scale_y = box["width"] / width, box["height"] / height
    left = box["x"] + (box["width"] - width * scale_x) / 2
    top = box["y"] + (box["height"] - height * scale_y) / 2
    page.mouse.click(left + (x + 0.5) * scale_x, top + (y + 0.5) * scale_y)


def wait_until_still(locator, interval_ms: int = 400, timeout_ms: int = 30_000) -> None:
    """Wait until two screenshots of ``locator`` taken ``interval_ms`` apart are identical:
    the image editor fits and zooms its picture in animated steps after it appears."""
    previous = locator.screenshot()
    for _ in range(timeout_ms // interval_ms):
        locator.page.wait_for_timeout(interval_ms)
        current = locator.screenshot()
        if current == previous:
            return
        previous = current
    raise TimeoutError("the component kept changing")


def paint_strokes(editor, image_size: tuple[int, int], points, colour: int) -> None:
    """Paint short brush strokes in a ``gr.ImageEditor`` at pixels (x, y) of its picture.

    ``image_size`` is the picture's (height, width); ``colour`` indexes the brush's colours.
    The editor draws its picture centred on its canvas at the zoom its toolbar shows.
    """
    page = editor.page
    wait_until_still(editor.locator("canvas").first)
    editor.get_by_label("Brush", exact=True).click()
    editor.get_by_label("Color", exact=True).click()
    editor.locator("menu.swatch button.color").nth(colour).click()
    zoom = float(re.search(r"(\d+)%", editor.inner_text()).group(1)) / 100
    box = editor.locator("canvas").first.bounding_box()
    height, width = image_size
    for x, y in points:
        screen_x = box["x"] + box["width"] / 2 + (x + 0.5 - width / 2) * zoom
        screen_y = box["y"] + box["height"] / 2 + (y + 0.5 - height / 2) * zoom
        page.mouse.move(screen_x - 2 * zoom, screen_y)
        page.mouse.down()
        page.mouse.move(screen_x + 2 * zoom, screen_y, steps=4)
        page.mouse.up()


def take_screenshots(url: str, out_dir: Path) -> list[Path]:
    """Run an example in each tab and save a screenshot of it to ``out_dir``."""
    from segdemo.examples import flower_examples, scene_examples

    out_dir.mkdir(parents=True, exist_ok=True)
    shots = []

    def shoot(page, tab: str) -> None:
        page.wait_for_timeout(1500)  # let the remaining outputs render
        shots.append(out_dir / f"tab-{tab}.png")
        page.screenshot(path=str(shots[-1]), full_page=True)

    with browser_page() as page:
        page.goto(url)
        for tab, example, result in (
            ("classify", flower_examples()[1], "#classify-overlay img"),
            ("upsample", flower_examples()[1], "#upsample_bilinear-mask img"),
            ("unet", scene_examples()[1], "#unet_noskip-labels img"),
            ("maskrcnn", scene_examples()[1], "#instance-picture img"),
        ):
            panel = open_tab(page, tab)
            upload(panel, example)
            page.locator(result).first.wait_for(state="visible")
            shoot(page, tab)
        panel = open_tab(page, "prompted")
        upload(panel, flower_examples()[0])
        panel.get_by_text("Click on it").first.wait_for()
        page.wait_for_timeout(500)
        click_image(page, "#prompted-canvas", 165, 134)  # the big yellow flower of this example
        panel.get_by_text("1 prompt(s)").first.wait_for()
        shoot(page, "prompted")
        open_tab(page, "models")
        shoot(page, "models")
    return shots


def main() -> None:
    parser = argparse.ArgumentParser(description="Save a screenshot of every tab.")
    parser.add_argument("--out", default="docs/screenshots")
    args = parser.parse_args()
    import app

    demo = app.build_app()
    launch_args = app.get_args_parser().parse_args([])
    launch_args.port = None  # any free port
    demo.launch(prevent_thread_lock=True, quiet=True, **app.launch_kwargs(launch_args))
    try:
        for path in take_screenshots(demo.local_url, Path(args.out)):
            print(f"wrote {path}")
    finally:
        demo.close()


if __name__ == "__main__":
    main()
