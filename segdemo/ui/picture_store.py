"""Where each page's picture lives on the server: a secret token per page, and a bounded store
of ``Page`` values under it.

Every user's image, prompts and masks live in ``STORE`` under the token the server issued to
that page, so no call can reach another page's masks. A token is random and signed with a
secret of this server process, so a made-up token opens nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace

from segdemo.prompts import PromptError
from segdemo.tasks.prompt_session import PromptSession
from segdemo.tasks.prompted import waited

DEFAULT_MODEL = "click_net"
MAX_PAGES = 64  # pages whose image and prompts are kept; the least recently used go first
BUSY_SECONDS = 5.0  # a page's call waits this long for its previous one, then is refused
TOKEN = re.compile(r"[0-9a-f]{32}")
SECRET = secrets.token_bytes(32)  # per server process: tokens of an earlier run are refused


class PictureError(PromptError):
    """A call the page cannot make now; the message says what to do."""


# One counter for all pages: a page whose picture was dropped and opened again still gets
# versions above those it has shown.
VERSIONS = itertools.count(1)


@dataclass(frozen=True)
class Page:
    """One page's picture: the chosen model, the prompt session on its photo (None before a
    photo), and the photo's file. ``version`` grows with every change, so the page can tell
    which details are current."""

    model: str = DEFAULT_MODEL
    session: PromptSession | None = None
    source: str | None = None
    version: int = 0

    def changed(self, **changes) -> Page:
        return replace(self, version=next(VERSIONS), **changes)

    def require_session(self) -> PromptSession:
        if self.session is None:
            raise PictureError("Drop a photo on the picture, upload one, or pick an example first.")
        return self.session


class PictureStore:
    """Token -> ``Page``, bounded, with one lock per page so that one page's calls take
    turns (a flood of clicks waits, then is refused) while other pages go on."""

    def __init__(self, max_pages: int = MAX_PAGES):
        self.max_pages = max_pages
        self._pages: OrderedDict[str, Page] = OrderedDict()
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def get(self, token: str) -> Page:
        """The page's picture (an empty one, not stored, for a page that has none yet)."""
        with self._lock:
            page = self._pages.get(token)
            if page is None:
                return Page()
            self._pages.move_to_end(token)
            return page

    def _put(self, token: str, page: Page) -> None:
        with self._lock:
            self._pages[token] = page
            self._pages.move_to_end(token)
            while len(self._pages) > self.max_pages:
                old, _ = self._pages.popitem(last=False)
                self._locks.pop(old, None)

    def turn(self, token: str):
        """This page's turn (a context manager), or a refusal after ``BUSY_SECONDS``."""
        with self._lock:
            lock = self._locks.setdefault(token, threading.Lock())
        return waited(lock, BUSY_SECONDS, "Still working on your previous clicks: wait a moment.")

    def update(self, token: str, change: Callable[[Page], Page]) -> Page:
        """Apply ``change`` to the page's picture; stored only if it succeeds."""
        with self.turn(token):
            page = change(self.get(token))
            self._put(token, page)
            return page

    def __len__(self) -> int:
        return len(self._pages)


STORE = PictureStore()


def _signature(nonce: str) -> str:
    return hmac.new(SECRET, nonce.encode(), hashlib.sha256).hexdigest()[:16]


def new_token() -> str:
    """A page's token: a random part and the server's signature of it."""
    nonce = secrets.token_hex(8)
    return nonce + _signature(nonce)


def checked_token(value) -> str:
    """The page's token from a call's payload or the component's value."""
    token = value.get("token") if isinstance(value, dict) else None
    if not (isinstance(token, str) and TOKEN.fullmatch(token)) or not hmac.compare_digest(
        token[16:], _signature(token[:16])
    ):
        raise PictureError("This page lost its session with the server: reload the page.")
    return token


def token_or_new(value) -> str:
    """The component value's token; a new one only for a page that never had one (a page on
    the queue fallback). A token that is not this server's is refused, not replaced: the
    page must know it lost its session."""
    if not (isinstance(value, dict) and value.get("token")):
        return new_token()
    return checked_token(value)
