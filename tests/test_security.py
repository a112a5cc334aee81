"""What a hostile visitor might try: reading files through the app, huge uploads, and
checkpoints that run code when unpickled."""

from __future__ import annotations

import pickle
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch

from segdemo import weights
from segdemo.examples import EXAMPLES_DIR, flower_examples

REPO = Path(__file__).resolve().parent.parent


def fetch(url: str, data: bytes | None = None, headers: dict | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


@pytest.mark.parametrize("route", ["gradio_api/file=", "file=", "gradio_api/file/"])
@pytest.mark.parametrize(
    "target",
    [
        "/etc/passwd",
        str(REPO / "app.py"),
        str(REPO / "weights" / "unet.safetensors"),
        f"{EXAMPLES_DIR}/../../../app.py",  # out of an allowed folder by "..": still refused
    ],
)
def test_files_outside_the_app_are_refused(app_url, route, target):
    status, body = fetch(f"{app_url.rstrip('/')}/{route}{target}")
    assert status in (403, 404, 405), f"{route}{target} answered {status}"
    assert b"root:" not in body and b"build_app" not in body


def test_the_examples_folder_is_served(app_url):
    example = flower_examples()[0]
    status, body = fetch(f"{app_url.rstrip('/')}/gradio_api/file={example}")
    assert status == 200 and body == Path(example).read_bytes()


def test_uploads_above_the_size_cap_are_refused(app_url):
    boundary = "segdemo-boundary"
    too_big = b"\x89PNG" + b"\0" * (26 * 1024 * 1024)  # the cap is 25 MB
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="big.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + too_big
        + f"\r\n--{boundary}--\r\n".encode()
    )
    status, answer = fetch(
        f"{app_url.rstrip('/')}/gradio_api/upload",
        data=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert status == 413, (status, answer[:200])


class RunsCodeWhenUnpickled:
    marker: Path

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_checkpoints_are_loaded_without_running_their_code(tmp_path):
    marker = tmp_path / "code-ran"
    payload = RunsCodeWhenUnpickled()
    payload.marker = marker
    path = tmp_path / "sam_vit_b_01ec64.pth"
    torch.save({"weight": torch.zeros(1), "surprise": payload}, path, pickle_module=pickle)
    with pytest.raises(Exception, match="[Ww]eights only|weights_only|Unsupported"):
        weights.load_checkpoint(path)
    assert not marker.exists()
