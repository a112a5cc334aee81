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
from collections import OrderedDict
from urllib.parse import parse_qs

UPLOAD_BODY = 26 * 2**20  # one upload request: a 25 MB file and its multipart framing
JSON_BODY = 4 * 2**20  # any other request: a page's view with its photo is under 1 MB
SESSION_HASH = re.compile(r"[A-Za-z0-9_-]{1,64}")
# Requests whose JSON body names a session hash (Gradio's queue and component server).
NAMES_SESSION = ("/queue/join", "/component_server", "/component_server/")
MAX_SESSIONS = 1000  # Gradio's per-session states kept (its default: 10,000)
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
            return await TOO_LARGE(send)
        if path.endswith(NAMES_SESSION) and scope.get("method") == "POST":
            body = await _read(receive, limit)
            if body is None:
                return await TOO_LARGE(send)
            if not _session_ok(body, headers.get(b"content-type", b"")):
                return await BAD_SESSION(send)
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
    """Which client uploaded which file, for the last ``MAX_UPLOADS_KEPT`` files: the picture
    opens only a file its own client uploaded (or an example)."""

    def __init__(self, size: int = MAX_UPLOADS_KEPT):
        self.size = size
        self._owners: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, client: str, paths: list[str]) -> None:
        with self._lock:
            for path in paths:
                self._owners[path] = client
                self._owners.move_to_end(path)
            while len(self._owners) > self.size:
                self._owners.popitem(last=False)

    def uploaded_by(self, client: str, path: str) -> bool:
        with self._lock:
            return self._owners.get(path) == client


UPLOADS = Uploads()


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


def _session_ok(body: bytes, content_type: bytes) -> bool:
    if not content_type.startswith(b"application/json"):
        return True  # a multipart call to the component server: its hash is checked by form
    try:
        value = json.loads(body).get("session_hash")
    except (ValueError, AttributeError, RecursionError):
        return True  # not JSON: Gradio answers that itself
    return value is None or (isinstance(value, str) and bool(SESSION_HASH.fullmatch(value)))


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
