"""What a page can do to its picture, as operations ``Page -> Page``, and ``perform``, the one
way every change reaches the store: open a photo (an upload or an example), prompt, undo,
clear, choose a mask, change model, refine on the photo or not. The page's server functions,
the queued fallback and the tab's events all call ``perform`` with the same payloads.

Prompts arrive in the working image's pixels, as the page measures them, and are checked by
the one validator of ``segdemo.prompts``.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
from gradio.utils import is_in_or_equal

from segdemo.examples import EXAMPLES_DIR, photo_examples
from segdemo.prompts import checked
from segdemo.tasks.prompt_session import PromptSession
from segdemo.ui.common import load_input, log_unexpected
from segdemo.ui.guard import UPLOADS
from segdemo.ui.picture_drafts import DRAFTS
from segdemo.ui.picture_store import STORE, Page, PictureError
from segdemo.ui.picture_view import mask_png


def open_image(page: Page, path: str) -> Page:
    """A new photo, prepared for the page's model now so that the first click answers at once."""
    session = PromptSession.open(load_input(path), page.model, page.refined)
    return page.changed(session=session, source=str(path))


def add_prompt(
    page: Page,
    prompt,
    image: str | None = None,
    on_draft: Callable[[np.ndarray], None] | None = None,
) -> Page:
    """A point ``{"kind": "point", "x", "y", "label"}`` or a box ``{"kind": "box", "box"}``,
    in working pixels, added to the session. ``image``: the digest of the photo the page
    clicked, when it says; a click on a photo that has since been replaced is refused.
    ``on_draft``: called with the network's own mask before it is refined, if this is the
    first prompt (the only one a draft is shown for)."""
    session = page.require_session()
    if image is not None and image != session.image.digest:
        raise PictureError("The photo changed before that click arrived: click again.")
    prompt = checked(prompt, session.image.size)
    on_network = None if session.prompts else on_draft
    return page.changed(session=session.click(prompt, on_network=on_network))


def undo(page: Page) -> Page:
    return page.changed(session=page.session and page.session.undo())


def clear(page: Page) -> Page:
    return page.changed(session=page.session and page.session.clear())


def choose(page: Page, index) -> Page:
    if isinstance(index, bool) or not isinstance(index, int):
        raise PictureError("Choose a mask by its number.")
    return page.changed(session=page.require_session().choose(index))


def change_model(page: Page, model) -> Page:
    """The photo prepared for ``model`` and the prompts replayed with it."""
    if not isinstance(model, str):
        raise PictureError("Choose a model from the list.")
    session = page.session and page.session.with_model(model)
    return page.changed(model=model, session=session)


def set_refinement(page: Page, refined) -> Page:
    """Masks refined on the photo (True) or the network's own (False), the prompts replayed."""
    if not isinstance(refined, bool):
        raise PictureError("Refinement is on (true) or off (false).")
    session = page.session and page.session.with_refinement(refined)
    return page.changed(refined=refined, session=session)


def _openable(path) -> str:
    """``path`` if it is one of the app's examples (or Gradio's copy of one); files a client
    uploaded are let through before this (``perform``). Not the server's other files, nor
    another visitor's upload or the masks written for their downloads, which sit in the same
    upload folder."""
    if isinstance(path, str) and len(path) < 4096 and "\0" not in path:
        if (
            is_in_or_equal(path, str(EXAMPLES_DIR))
            or path in photo_examples()
            or _copy_of_an_example(path)
        ):
            return path
    raise PictureError("Upload the photo through the page, then try again.")


@functools.cache
def _examples() -> dict[str, tuple[int, str]]:
    """Each example image's file name -> (size in bytes, SHA-1 of its bytes)."""
    found = {}
    for path in [*EXAMPLES_DIR.rglob("*"), *map(Path, photo_examples())]:
        if path.is_file() and path.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp"):
            data = path.read_bytes()
            found[path.name] = (len(data), hashlib.sha1(data).hexdigest())
    return found


def _copy_of_an_example(path: str) -> bool:
    """Whether ``path`` is a byte-for-byte copy of an example with its name (Gradio copies
    an example into its cache when it is picked)."""
    expected = _examples().get(Path(path).name)
    try:
        if expected is None or Path(path).stat().st_size != expected[0]:
            return False
        return hashlib.sha1(Path(path).read_bytes()).hexdigest() == expected[1]
    except OSError:
        return False


def perform(token: str, payload: dict, client: str = "") -> tuple[Page, bool]:
    """Apply the operation a payload names to the token's page; returns the new page and
    whether its photo is new. ``payload["op"]``: ``open`` (``path``), ``prompt`` (``prompt``,
    ``image``), ``undo``, ``clear``, ``choose`` (``index``), ``model`` (``model``) or
    ``refine`` (``refined``: true or false).
    ``client``: who asks (``guard.client_of``), for the store's per-client bound and uploads.
    A ``prompt`` with ``draft`` (the page's number for the click) publishes the network's own
    mask as that click's draft before refining it (``picture_drafts``)."""
    operation = payload.get("op")
    if operation == "open":
        path = payload.get("path")
        if not (isinstance(path, str) and UPLOADS.uploaded_by(client, path)):
            path = _openable(path)
        return STORE.update(token, lambda p: open_image(p, path), client), True
    draft = draft_number(payload.get("draft")) if operation == "prompt" else None
    on_draft = None if draft is None else _publisher(token, draft)
    changes = {
        "prompt": lambda p: add_prompt(p, payload.get("prompt"), payload.get("image"), on_draft),
        "undo": undo,
        "clear": clear,
        "choose": lambda p: choose(p, payload.get("index")),
        "model": lambda p: change_model(p, payload.get("model")),
        "refine": lambda p: set_refinement(p, payload.get("refined")),
    }
    if operation not in changes:
        raise PictureError(f"Unknown operation {str(operation)[:40]!r}.")
    try:
        return STORE.update(token, changes[operation], client), False
    finally:
        if draft is not None:
            DRAFTS.finish(token, draft)


def _publisher(token: str, draft: int) -> Callable[[np.ndarray], None]:
    """Publishes a click's network mask as the page's ``draft`` (``picture_drafts``). The
    draft is a help, not a must: a failure to publish it is logged, and the click goes on."""

    def publish(mask: np.ndarray) -> None:
        try:
            DRAFTS.publish(token, draft, mask_png(mask))
        except Exception as err:
            log_unexpected("publishing a draft", err)

    return publish


def draft_number(value) -> int | None:
    """The page's number for a click it wants a draft of (``picture_drafts``), if valid."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**31:
        return value
    return None
