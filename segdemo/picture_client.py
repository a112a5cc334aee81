"""What one page sends to the prompted tab's picture, over HTTP: its own token and photo, and
operations through the picture's server functions. The benchmark's simulated users and the
tests that call the server functions use it."""

from __future__ import annotations

import httpx


class PictureClient:
    """One page of the app at ``url``, talking to its picture as the page's script does."""

    def __init__(
        self,
        url: str,
        session_hash: str = "",
        component_id: int | None = None,
        address: str | None = None,
    ):
        # ``address``: the visitor this page stands for, as a proxy on the server's machine
        # names it (X-Forwarded-For), so that simulated users count as different clients.
        headers = {"X-Forwarded-For": address} if address else {}
        self.http = httpx.Client(base_url=url, timeout=60, headers=headers)
        if component_id is None:
            config = self.http.get("/config").json()
            (component_id,) = [
                c["id"]
                for c in config["components"]
                if c.get("props", {}).get("elem_id") == "prompted-picture"
            ]
        self.component_id = component_id
        self.session_hash = session_hash or f"client-{id(self)}"
        self.token = self.call("start", {})["token"]

    def call(self, name: str, payload: dict) -> dict:
        body = {
            "data": payload,
            "component_id": self.component_id,
            "fn_name": name,
            "session_hash": self.session_hash,
        }
        answer = self.http.post("/gradio_api/component_server/", json=body)
        answer.raise_for_status()
        return answer.json()

    def operate(self, op: str, **fields) -> dict:
        return self.call("operate", {"token": self.token, "op": op, **fields})

    def open(self, photo: str) -> dict:
        """Upload ``photo`` as the page does, then open it in the picture."""
        with open(photo, "rb") as f:
            uploaded = self.http.post("/gradio_api/upload", files={"files": f}).json()[0]
        return self.operate("open", path=uploaded)

    def point(self, x: float, y: float, positive: bool = True, **fields) -> dict:
        """A click; ``fields``: more of the operation's payload (``draft``: its number)."""
        prompt = {"kind": "point", "x": x, "y": y, "label": int(positive)}
        return self.operate("prompt", prompt=prompt, **fields)
