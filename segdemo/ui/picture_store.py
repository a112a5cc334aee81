"""Where each page's picture lives on the server: a secret token per page, and a bounded store
of ``Page`` values under it.

Every user's image, prompts and masks live in ``STORE`` under the token the server issued to
that page, so no call can reach another page's masks. A token is random and signed with a
secret of this server process, so a made-up token opens nothing.

The store is bounded in pages, in bytes, in bytes per page and in pages per client (the
visitor's address), so that no visitor can fill it: a page without a photo stores nothing, a
client's new page pushes out that client's own idle pages first, and otherwise the pages idle
longest go, but never one seen within ``RECENT_SECONDS``: rather than push out someone who is
working, the store refuses the new page.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, is_dataclass, replace

import numpy as np

from segdemo.prompts import PromptError
from segdemo.tasks.prompt_session import PromptSession
from segdemo.tasks.prompted import ServerBusy

DEFAULT_MODEL = "click_net"
MAX_PAGES = 64  # pages whose image and prompts are kept
MAX_BYTES = 1536 * 2**20  # all pages together
PAGE_BYTES = 96 * 2**20  # one page: its photo, the model's state and every step's masks
PAGES_PER_CLIENT = 8  # pages one address may hold (a class behind one router shares it)
RECENT_SECONDS = 300.0  # a page used this recently is never pushed out for another
MAX_CHOICES = 4096  # choices (model, refinement) remembered for pages without a photo yet
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
    """One page's picture: the chosen model, whether masks are refined on the photo, the
    prompt session on its photo (None before a photo), and the photo's file. ``version`` grows
    with every change, so the page can tell which details are current."""

    model: str = DEFAULT_MODEL
    session: PromptSession | None = None
    source: str | None = None
    version: int = 0
    refined: bool = True

    def changed(self, **changes) -> Page:
        return replace(self, version=next(VERSIONS), **changes)

    def require_session(self) -> PromptSession:
        if self.session is None:
            raise PictureError("Drop a photo on the picture, upload one, or pick an example first.")
        return self.session


def held_bytes(value, seen: set[int] | None = None) -> int:
    """The bytes of the arrays and tensors in ``value`` (tuples, lists, dicts, dataclasses and
    plain objects are looked into; each array counted once)."""
    seen = set() if seen is None else seen
    if id(value) in seen or value is None or isinstance(value, str | int | float | bool):
        return 0
    seen.add(id(value))
    if isinstance(value, np.ndarray):
        return value.nbytes
    if hasattr(value, "element_size") and hasattr(value, "nelement"):  # a torch tensor
        return value.element_size() * value.nelement()
    if isinstance(value, tuple | list):
        return sum(held_bytes(v, seen) for v in value)
    if isinstance(value, dict):
        return sum(held_bytes(v, seen) for v in value.values())
    if is_dataclass(value):
        return sum(held_bytes(getattr(value, f.name), seen) for f in fields(value))
    if hasattr(value, "__dict__") and not callable(value):
        return sum(held_bytes(v, seen) for v in vars(value).values())
    return 0


def page_bytes(page: Page) -> int:
    """What a page holds: its working image, its model's per-image state, every step. The
    prompter is the shared model, not the page's."""
    session = page.session
    if session is None:
        return 0
    return held_bytes((session.image.pixels, session.state, session.steps))


@dataclass
class _Entry:
    page: Page
    client: str
    nbytes: int
    seen: float = field(default_factory=time.monotonic)


class PictureStore:
    """Token -> ``Page``, bounded (see the module's docstring), with one lock per page so
    that one page's calls take turns (a flood of clicks waits, then is refused) while other
    pages go on."""

    def __init__(
        self,
        max_pages: int = MAX_PAGES,
        max_bytes: int = MAX_BYTES,
        page_bytes: int = PAGE_BYTES,
        per_client: int = PAGES_PER_CLIENT,
        recent: float = RECENT_SECONDS,
    ):
        self.max_pages = max_pages
        self.max_bytes = max_bytes
        self.page_bytes = page_bytes
        self.per_client = per_client
        self.recent = recent
        self._pages: OrderedDict[str, _Entry] = OrderedDict()  # idle longest first
        self._choices: OrderedDict[str, Page] = OrderedDict()  # photo-less pages' choices
        self._locks: dict[str, list] = {}  # token -> [lock, calls holding or waiting]
        self._lock = threading.Lock()
        self.nbytes = 0

    def get(self, token: str) -> Page:
        """The page's picture (an empty one, not stored, for a page that has none yet)."""
        with self._lock:
            entry = self._pages.get(token)
            if entry is None:
                return self._choices.get(token, Page())
            entry.seen = time.monotonic()
            self._pages.move_to_end(token)
            return entry.page

    def _put(self, token: str, page: Page, client: str) -> None:
        nbytes = page_bytes(page)
        if nbytes > self.page_bytes:
            raise PictureError(
                f"This picture holds as much as the server keeps for one page "
                f"({self.page_bytes // 2**20} MB): clear the prompts, or undo some, to go on."
            )
        with self._lock:
            before = self._pop(token)
            if page.session is None:  # a page without a photo stores nothing but its choices
                self._choices.pop(token, None)
                chosen = Page(model=page.model, refined=page.refined)
                if chosen != Page():
                    self._choices[token] = chosen
                    while len(self._choices) > MAX_CHOICES:
                        self._choices.popitem(last=False)
                return
            try:
                self._make_room(client, nbytes)
            except PictureError:
                if before is not None:  # refused: the page keeps what it had
                    self._pages[token] = before
                    self.nbytes += before.nbytes
                raise
            self._choices.pop(token, None)
            self._pages[token] = _Entry(page, client, nbytes)
            self.nbytes += nbytes

    def _pop(self, token: str) -> _Entry | None:
        entry = self._pages.pop(token, None)
        if entry is not None:
            self.nbytes -= entry.nbytes
        return entry

    def _make_room(self, client: str, nbytes: int) -> None:
        """Push out pages until one of ``nbytes`` for ``client`` fits, or refuse it."""
        own = [t for t, e in self._pages.items() if e.client == client]
        for old in own[: max(0, len(own) + 1 - self.per_client)]:  # the client's idle first
            self._pop(old)
        now = time.monotonic()
        while len(self._pages) + 1 > self.max_pages or self.nbytes + nbytes > self.max_bytes:
            idle = next((t for t, e in self._pages.items() if now - e.seen > self.recent), None)
            if idle is None:
                raise PictureError(
                    "The server is holding as many pictures as it can for people working right "
                    "now: try again in a few minutes."
                )
            self._pop(idle)

    @contextmanager
    def turn(self, token: str) -> Iterator[None]:
        """This page's turn, or a refusal after ``BUSY_SECONDS``. Only pages with calls under
        way have a lock, so the locks stay as few as the calls."""
        with self._lock:
            held = self._locks.setdefault(token, [threading.Lock(), 0])
            held[1] += 1
        try:
            if not held[0].acquire(timeout=BUSY_SECONDS):
                raise ServerBusy("Still working on your previous clicks: wait a moment.")
            try:
                yield
            finally:
                held[0].release()
        finally:
            with self._lock:
                held[1] -= 1
                if held[1] == 0:
                    del self._locks[token]

    def update(self, token: str, change: Callable[[Page], Page], client: str = "") -> Page:
        """Apply ``change`` to the page's picture; stored only if it succeeds. ``client``: who
        asks (their address), for the per-client bound."""
        with self.turn(token):
            page = change(self.get(token))
            self._put(token, page, client)
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
