"""Limits on what one HTTP request may bring, in front of every Gradio route, and who a request
comes from.

Gradio caps each uploaded file (``max_file_size``) but not a request's whole body, which may
carry a thousand files, nor a JSON body, nor the ``session_hash`` a request names (each new
one makes Gradio keep a session's state). ``RequestLimits``, an ASGI middleware, refuses with
413 a body above ``UPLOAD_BODY`` (uploads) or ``JSON_BODY`` (anything else), and with 400 a
session hash that is not a short token, before Gradio reads the request.
"""

from __future__ import annotations

import ipaddress
import json
import re
import threading
import time
from collections import OrderedDict
from urllib.parse import parse_qs

UPLOAD_BODY = 26 * 2**20  # one upload request: a 25 MB file and its multipart framing
JSON_BODY = 4 * 2**20  # any other request: a page's view with its photo is under 1 MB
DRAIN = 64 * 2**20  # of a refused body, read this much before answering (then hang up)
SESSION_HASH = re.compile(r"[A-Za-z0-9_-]{1,64}")
# Requests whose JSON body names a session hash (Gradio's queue and component server).
NAMES_SESSION = ("/queue/join", "/component_server", "/component_server/")
MAX_SESSIONS = 1000  # Gradio's per-session states kept (its default: 10,000)
SESSIONS_PER_CLIENT = 100  # new Gradio sessions one address may open per window
SESSION_WINDOW = 600.0  # seconds
SERVER_FUNCTIONS = "segdemo-server-functions"  # the one session the picture's calls run in
MAX_UPLOADS_KEPT = 10_000  # uploads whose client is remembered (about 200 bytes each)


def _response(status: int, message: str):
    body = json.dumps({"error": message}).encode()

    async def send_to(send) -> None:
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return send_to


TOO_LARGE = _response(413, "This request is larger than the server accepts.")
BAD_SESSION = _response(400, "The session id is not one this server issues: reload the page.")
TOO_MANY_SESSIONS = _response(
    429, "Too many new sessions from your address: use the pages you have open, or wait."
)


class RequestLimits:
    """ASGI middleware: body size caps and session hash checks (see the module's docstring)."""

    def __init__(self, app, upload_body: int = UPLOAD_BODY, json_body: int = JSON_BODY):
        self.app = app
        self.upload_body = upload_body
        self.json_body = json_body

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "").rstrip("/")
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if any(not SESSION_HASH.fullmatch(h) for h in query.get("session_hash", [])):
            return await BAD_SESSION(send)
        limit = self.upload_body if path.endswith("/upload") else self.json_body
        headers = dict(scope.get("headers", []))
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await _drain(receive, DRAIN)  # so that the client, still sending, reads the answer
            return await TOO_LARGE(send)
        if path.endswith(NAMES_SESSION) and scope.get("method") == "POST":
            body = await _read(receive, limit)
            if body is None:
                return await TOO_LARGE(send)
            session = _session_of(body, headers.get(b"content-type", b""))
            if session is False:
                return await BAD_SESSION(send)
            if isinstance(session, str) and path.endswith("/component_server"):
                # The picture's server functions keep nothing per Gradio session, but Gradio
                # makes a session's state (about 350 KB) for every new hash they name: they
                # all run under one.
                body = json.dumps({**json.loads(body), "session_hash": SERVER_FUNCTIONS})
                body = body.encode()
            elif isinstance(session, str) and not SESSIONS.admit(client_of(_Peer(scope)), session):
                return await TOO_MANY_SESSIONS(send)
            return await self.app(scope, _replay(body, receive), send)
        if path.endswith("/upload") and scope.get("method") == "POST":
            client = client_of(_Peer(scope))
            return await self.app(scope, _counted(receive, limit), _noting(send, client))
        return await self.app(scope, _counted(receive, limit), send)


class _Peer:
    """What ``client_of`` reads, from an ASGI scope."""

    def __init__(self, scope):
        peer = scope.get("client") or ("", 0)
        self.client = type("Client", (), {"host": peer[0]})
        self.headers = {
            k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])
        }


def _noting(send, client: str):
    """``send`` that records the files an upload answer names as uploaded by ``client``."""
    status, chunks = 0, []

    async def noted(message):
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body" and status == 200:
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                try:
                    paths = json.loads(b"".join(chunks))
                except ValueError:
                    paths = []
                if isinstance(paths, list):
                    UPLOADS.add(client, [p for p in paths if isinstance(p, str)])
        await send(message)

    return noted


class Uploads:
    """Which client uploaded which file, for the last ``MAX_UPLOADS_KEPT`` uploads: the picture
    opens only a file its own client uploaded (or an example). Gradio names an upload by its
    content, so two visitors who upload the same photo get the same path: each pair is kept."""

    def __init__(self, size: int = MAX_UPLOADS_KEPT):
        self.size = size
        self._pairs: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, client: str, paths: list[str]) -> None:
        with self._lock:
            for path in paths:
                self._pairs[(client, path)] = None
                self._pairs.move_to_end((client, path))
            while len(self._pairs) > self.size:
                self._pairs.popitem(last=False)

    def uploaded_by(self, client: str, path: str) -> bool:
        with self._lock:
            return (client, path) in self._pairs


UPLOADS = Uploads()


async def _drain(receive, most: int) -> None:
    """Read and drop up to ``most`` bytes of the body."""
    size = 0
    while size <= most:
        message = await receive()
        if message["type"] != "http.request":
            return
        size += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


async def _read(receive, limit: int) -> bytes | None:
    """The whole body, or None once it passes ``limit`` bytes."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _session_of(body: bytes, content_type: bytes) -> str | bool | None:
    """The session hash a JSON body names; False for one that is not a short token; None
    where there is none to check (not JSON: Gradio answers that itself)."""
    if not content_type.startswith(b"application/json"):
        return None
    try:
        value = json.loads(body).get("session_hash")
    except (ValueError, AttributeError, RecursionError):
        return None
    if value is None:
        return None
    return value if isinstance(value, str) and SESSION_HASH.fullmatch(value) else False


class Sessions:
    """The session hashes each client opened within the last ``window`` seconds: a client
    may open at most ``most`` (each costs Gradio a session's state, and a flood of new ones
    would push every other user's state out of Gradio's bounded table)."""

    def __init__(self, most: int = SESSIONS_PER_CLIENT, window: float = SESSION_WINDOW):
        self.most, self.window = most, window
        self._seen: dict[str, dict[str, float]] = {}
        self._lock = threading.Lock()

    def admit(self, client: str, session: str) -> bool:
        now = time.monotonic()
        with self._lock:
            if len(self._seen) > 4 * MAX_SESSIONS:  # forget clients gone quiet
                recent = now - self.window
                self._seen = {
                    c: s for c, s in self._seen.items() if max(s.values(), default=0) > recent
                }
            hashes = self._seen.setdefault(client, {})
            for old in [h for h, t in hashes.items() if t < now - self.window]:
                del hashes[old]
            if session not in hashes and len(hashes) >= self.most:
                return False
            hashes[session] = now
            return True


SESSIONS = Sessions()


def _replay(body: bytes, receive):
    """``receive`` that gives the body read already, then waits on the client as before."""
    sent = False

    async def replayed():
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed


def _counted(receive, limit: int):
    """``receive`` that ends the request as a disconnect once the body passes ``limit`` bytes
    (a body sent without a length)."""
    size = 0

    async def counted():
        nonlocal size
        message = await receive()
        if message["type"] == "http.request":
            size += len(message.get("body", b""))
            if size > limit:
                return {"type": "http.disconnect"}
        return message

    return counted


def client_of(request) -> str:
    """Who a request comes from, for per-client limits: its peer's address; behind a proxy on
    this machine (Gradio's share tunnel, a reverse proxy), the first address the proxy names
    in X-Forwarded-For. A request without a peer (a direct call in tests) is ""."""
    peer = getattr(getattr(request, "client", None), "host", None) or ""
    try:
        local = ipaddress.ip_address(peer).is_loopback
    except ValueError:
        local = False
    if local and request is not None:
        forwarded = request.headers.get("x-forwarded-for", "")
        first = forwarded.split(",")[0].strip()[:64]
        if first:
            return first
    return peer[:64]
