"""What a page can do to its picture, as operations ``Page -> Page``, and ``perform``, the one
way every change reaches the store: open a photo (an upload or an example), prompt, undo,
clear, choose a mask, change model. The page's server functions, the queued fallback and the
tab's events all call ``perform`` with the same payloads.

Prompts arrive in the working image's pixels, as the page measures them, and are checked by
the one validator of ``segdemo.prompts``.
"""

from __future__ import annotations

from gradio.utils import get_upload_folder, is_in_or_equal

from segdemo.examples import EXAMPLES_DIR
from segdemo.prompts import checked
from segdemo.tasks.prompt_session import PromptSession
from segdemo.ui.common import load_input
from segdemo.ui.picture_store import STORE, Page, PictureError


def open_image(page: Page, path: str) -> Page:
    """A new photo, prepared for the page's model now so that the first click answers at once."""
    session = PromptSession.open(load_input(path), page.model)
    return page.changed(session=session, source=str(path))


def add_prompt(page: Page, prompt, image: str | None = None) -> Page:
    """A point ``{"kind": "point", "x", "y", "label"}`` or a box ``{"kind": "box", "box"}``,
    in working pixels, added to the session. ``image``: the digest of the photo the page
    clicked, when it says; a click on a photo that has since been replaced is refused."""
    session = page.require_session()
    if image is not None and image != session.image.digest:
        raise PictureError("The photo changed before that click arrived: click again.")
    return page.changed(session=session.click(checked(prompt, session.image.size)))


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


def _openable(path) -> str:
    # Only files that Gradio's upload route wrote, or the app's own examples: a page cannot
    # open the server's other files.
    if isinstance(path, str) and (
        is_in_or_equal(path, get_upload_folder()) or is_in_or_equal(path, str(EXAMPLES_DIR))
    ):
        return path
    raise PictureError("Upload the photo through the page, then try again.")


def perform(token: str, payload: dict) -> tuple[Page, bool]:
    """Apply the operation a payload names to the token's page; returns the new page and
    whether its photo is new. ``payload["op"]``: ``open`` (``path``), ``prompt`` (``prompt``,
    ``image``), ``undo``, ``clear``, ``choose`` (``index``) or ``model`` (``model``)."""
    operation = payload.get("op")
    if operation == "open":
        path = _openable(payload.get("path"))
        return STORE.update(token, lambda p: open_image(p, path)), True
    changes = {
        "prompt": lambda p: add_prompt(p, payload.get("prompt"), payload.get("image")),
        "undo": undo,
        "clear": clear,
        "choose": lambda p: choose(p, payload.get("index")),
        "model": lambda p: change_model(p, payload.get("model")),
    }
    if operation not in changes:
        raise PictureError(f"Unknown operation {str(operation)[:40]!r}.")
    return STORE.update(token, changes[operation]), False

