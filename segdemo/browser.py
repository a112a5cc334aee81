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
def browser_pages(count: int, width: int = 1400, height: int = 1000):
    """``count`` headless Chromium pages, each in its own browser context (own cookies and
    storage, like separate users)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            pages = []
            for _ in range(count):
                page = browser.new_context().new_page()
                page.set_viewport_size({"width": width, "height": height})
                page.set_default_timeout(60_000)
                pages.append(page)
            yield pages
        finally:
            browser.close()


@contextmanager
def browser_page(width: int = 1400, height: int = 1000):
    """A fresh headless Chromium page (its own profile, so no state is shared)."""
    with browser_pages(1, width, height) as (page,):
        yield page


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


def choose_model(page, model: str) -> None:
    """Pick ``model`` in the prompted tab's dropdown and wait until the picture is ready."""
    field = page.locator("#prompted-tab").get_by_label("Model")
    field.click()
    page.get_by_role("option", name=model, exact=True).click()
    page.wait_for_function(
        "m => document.querySelector('#prompted-picture .sd-status').innerText.includes(m)",
        arg=model,
        timeout=120_000,
    )


def set_refinement(page, refined: bool) -> None:
    """Turn the prompted tab's "Refine on the photo" on or off and wait until the picture
    shows that kind of mask."""
    box = page.locator("#prompted-refine input[type=checkbox]")
    if box.is_checked() != refined:
        box.click()
    kind = "refined on the photo" if refined else "network alone"
    page.wait_for_function(
        "k => document.querySelector('#prompted-picture .sd-status').innerText.includes(k)",
        arg=kind,
        timeout=120_000,
    )


def open_photo(page, path: str) -> None:
    """Upload ``path`` into the prompted tab's picture and wait until it can be clicked."""
    panel = open_tab(page, "prompted")
    panel.locator("#prompted-picture input[type=file]").set_input_files(path)
    page.locator("#prompted-picture .sd-picture.sd-has-photo").wait_for(timeout=120_000)
    page.wait_for_function(
        "() => !document.querySelector('#prompted-picture .sd-picture')"
        ".classList.contains('sd-busy')",
        timeout=120_000,
    )


def click_picture(page, x: int, y: int, positive: bool = True) -> None:
    """Click pixel (x, y) of the picture's photo (working pixels; the photo is drawn scaled)."""
    photo = page.locator("#prompted-picture .sd-photo")
    box = photo.bounding_box()
    width = photo.evaluate("el => el.naturalWidth")
    scale = box["width"] / width
    page.mouse.click(
        box["x"] + (x + 0.5) * scale,
        box["y"] + (y + 0.5) * scale,
        button="left" if positive else "right",
    )


def picture_button(page, name: str):
    """A button of the picture's toolbar, by its name."""
    return page.locator("#prompted-picture").get_by_role("button", name=name)


def on_photo(page, x: float, y: float) -> tuple[float, float]:
    photo = page.locator("#prompted-picture .sd-photo")
    box = photo.bounding_box()
    scale = box["width"] / photo.evaluate("el => el.naturalWidth")
    return box["x"] + (x + 0.5) * scale, box["y"] + (y + 0.5) * scale


def drag_on_picture(page, start: tuple[int, int], end: tuple[int, int]) -> None:
    """Drag from pixel ``start`` to pixel ``end`` of the picture's photo (a box prompt)."""
    page.mouse.move(*on_photo(page, *start))
    page.mouse.down()
    page.mouse.move(*on_photo(page, *end), steps=5)
    page.mouse.up()


def wait_for_prompts(page, count: int) -> str:
    """Wait until the picture shows the mask for ``count`` prompts; returns its status."""
    status = page.locator("#prompted-picture .sd-status")
    page.wait_for_function(
        "([el, n]) => el.innerText.startsWith(n + ' prompt(s)')",
        arg=[status.element_handle(), count],
        timeout=60_000,
    )
    return status.inner_text()


def drawn_mask(page, canvas: str = ".sd-mask"):
    """The mask the picture draws, ``HxW bool`` at the working size: the non-transparent
    pixels of its mask canvas (or of ``.sd-preview``, the hover preview's)."""
    url = page.locator(f"#prompted-picture {canvas}").evaluate("c => c.toDataURL('image/png')")
    return opaque_pixels(url)


def opaque_pixels(data_url: str):
    """``HxW bool``: the pixels a PNG data URL does not leave transparent."""
    import base64
    import io

    import numpy as np
    from PIL import Image

    image = Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))).convert("RGBA")
    return np.asarray(image)[..., 3] > 0


# Keeps, in ``window.segdemoDraftDrawn``, the preview canvas as it is when a draft has been
# drawn on it (``prompt_picture.js`` notes each draft in ``window.segdemoDrafts``).
KEEP_DRAFTS_JS = """
() => {
  const drafts = window.segdemoDrafts;
  const push = drafts.push;
  drafts.push = function (...items) {
    const canvas = document.querySelector('#prompted-picture .sd-preview');
    window.segdemoDraftDrawn = canvas.toDataURL('image/png');
    return push.apply(drafts, items);
  };
}
"""


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
    from segdemo.examples import flower_examples, photo_examples, scene_examples

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
        cat = next(p for p in photo_examples() if p.endswith("chelsea.png"))
        open_photo(page, cat)  # a real photo: the mask refined on it follows the cat
        click_picture(page, 230, 170)
        wait_for_prompts(page, 1)
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
