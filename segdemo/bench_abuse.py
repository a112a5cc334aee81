"""A hostile visitor beside an ordinary one, over loopback against ``python app.py``: what the
abuse tests (``tests/test_abuse.py``) repeat, and the benchmark's load entry.

    python -m segdemo.bench_abuse

prints the server's memory (resident set: at start, and its peak) while the largest accepted
photo is opened and exported, and another user's click latency (median and 90th percentile)
idle, beside the same while one page floods the picture with pages and clicks and another
opens and exports the largest accepted photo, all in one run.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from segdemo.bench_clicks import wait_until_serving
from segdemo.imaging import MAX_INPUT_PIXELS
from segdemo.picture_client import PictureClient
from segdemo.weights import REPO_ROOT

LARGEST_SIDE = int(MAX_INPUT_PIXELS**0.5)  # a square photo at the pixel limit: 7071×7071
IDLE_CLICKS = 30  # the ordinary user's clicks in each phase
CLICK_GAP_S = 0.15  # between the ordinary user's clicks, as a person clicks


def write_png(path: Path, width: int, height: int, channels: int = 3) -> Path:
    """A valid PNG of ``width×height`` pixels (8-bit grey or RGB, a gentle gradient), written
    row by row: a 20000×20000 one costs this process a row, not 400 megabytes."""
    import struct

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    colour = {1: 0, 3: 2}[channels]
    header = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    row = bytes((x * 255 // max(1, width - 1)) for x in range(width) for _ in range(channels))
    squeeze = zlib.compressobj(6)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header))
        data = bytearray()
        for y in range(height):
            data += squeeze.compress(b"\0" + row[y % 7 :] + row[: y % 7])
            if len(data) > 1 << 20:
                f.write(chunk(b"IDAT", bytes(data)))
                data.clear()
        data += squeeze.flush()
        f.write(chunk(b"IDAT", bytes(data)) + chunk(b"IEND", b""))
    return path


@dataclass
class Server:
    """``python app.py`` in its own process: its URL, process and log file."""

    url: str
    process: subprocess.Popen
    log: Path

    def memory_mb(self, helpers: bool = True) -> dict[str, float]:
        """The resident memory of the server and (unless ``helpers`` is false) its helper
        processes now (``rss``) and the sum of their highest so far (``peak``), in MiB, from
        /proc (Linux)."""
        totals = {"VmRSS": 0.0, "VmHWM": 0.0}
        for pid in [self.process.pid, *(_children(self.process.pid) if helpers else [])]:
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except FileNotFoundError:  # a helper that has just ended
                continue
            for line in status.splitlines():
                name, _, value = line.partition(":")
                if name in totals:
                    totals[name] += int(value.split()[0]) / 1024
        return {"rss": totals["VmRSS"], "peak": totals["VmHWM"]}


def _children(pid: int) -> list[int]:
    """The process's child processes (Linux's /proc/PID/task/*/children)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except FileNotFoundError:  # a thread that has just ended
            continue
    return found


@contextmanager
def app_server(port: int, log: Path) -> Iterator[Server]:
    """``python app.py --port port`` of this tree, its output in ``log``; yields a ``Server``
    once it answers, and stops it afterwards."""
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "app.py", "--port", str(port)],
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(url, process, log)
        yield Server(url, process, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def percentiles(ms: list[float]) -> dict[str, float]:
    ordered = sorted(ms)
    p90 = ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))]
    return {"p50_ms": round(statistics.median(ordered), 1), "p90_ms": round(p90, 1)}


def clicks_ms(page: PictureClient, count: int = IDLE_CLICKS) -> list[float]:
    """``count`` clicks of an ordinary user (a positive click, cleared every fourth), each
    timed from request to answer; a refusal counts as 10 s, so it cannot hide."""
    times = []
    for k in range(count):
        if k % 4 == 0:
            page.operate("clear")
        began = time.perf_counter()
        answer = page.point(60 + 7 * (k % 20), 80 + 3 * (k % 30))
        times.append(10_000.0 if "error" in answer else 1000 * (time.perf_counter() - began))
        time.sleep(CLICK_GAP_S)
    return times


class Attack:
    """The hostile pages, in threads until ``stop``: one floods (new pages, photo-less
    changes, clicks on a small photo, exports), one opens and exports the largest photo
    again and again. ``answers`` counts what they got back."""

    def __init__(self, url: str, small: str, largest: str):
        self.url, self.small, self.largest = url, small, largest
        self.stopping = threading.Event()
        self.answers: dict[str, int] = {}
        self._lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._flood, daemon=True),
            threading.Thread(target=self._largest, daemon=True),
        ]

    def _count(self, what: str) -> None:
        with self._lock:
            self.answers[what] = self.answers.get(what, 0) + 1

    def _flood(self) -> None:
        page = PictureClient(self.url, session_hash="flood")
        page.open(self.small)
        k = 0
        while not self.stopping.is_set():
            fresh = page.call("start", {})  # a new page, then a change that stores nothing
            page.call("operate", {"token": fresh["token"], "op": "clear"})
            if k % 30 == 0:
                page.operate("clear")  # under the prompts' limit, so that every click counts
            answer = page.point(50 + k % 100, 60)
            self._count(f"flood: {answer['error'][:50]}" if "error" in answer else "flood click")
            k += 1

    def _largest(self) -> None:
        page = PictureClient(self.url, session_hash="largest")
        while not self.stopping.is_set():
            opened = page.open(self.largest)
            self._count("largest error" if "error" in opened else "largest opened")
            page.point(512, 512)  # working pixels: the middle of the 1024×1024 working image
            exported = page.call("export", {"token": page.token, "what": "mask"})
            self._count(f"export: {exported['error'][:50]}" if "error" in exported else "export")

    def __enter__(self) -> Attack:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=120)


def measure(folder: Path, port: int = 7931) -> dict:
    """One run: memory while the largest photo is opened and exported, and another user's
    click latency idle and under attack."""
    small = str(write_png(folder / "small.png", 320, 240))
    largest = str(write_png(folder / "largest.png", LARGEST_SIDE, LARGEST_SIDE))
    with app_server(port, folder / "app.log") as server:
        user = PictureClient(server.url, session_hash="user", address="10.9.9.9")
        user.open(small)
        clicks_ms(user, 5)  # warm-up
        started = server.memory_mb()
        idle = clicks_ms(user)
        with Attack(server.url, small, largest) as attack:
            time.sleep(2.0)  # the attack under way before the user clicks
            attacked = clicks_ms(user)
        memory = server.memory_mb()
    return {
        "memory_mb": {"at_start": round(started["rss"]), "peak": round(memory["peak"])},
        "idle": percentiles(idle),
        "under_attack": percentiles(attacked),
        "attack_answers": attack.answers,
    }


def main() -> dict:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        result = measure(Path(folder))
    idle, attacked = result["idle"], result["under_attack"]
    print(
        f"server memory: {result['memory_mb']['at_start']} MiB at start, "
        f"{result['memory_mb']['peak']} MiB at its peak"
    )
    print(f"another user's click, idle: median {idle['p50_ms']} ms, p90 {idle['p90_ms']} ms")
    print(
        f"the same under attack: median {attacked['p50_ms']} ms, p90 {attacked['p90_ms']} ms "
        f"(one page flooding, one opening and exporting a {LARGEST_SIDE}×{LARGEST_SIDE} photo)"
    )
    print(f"the attackers got: {result['attack_answers']}")
    return result


def markdown(result: dict) -> str:
    """The run as the benchmark report's section."""
    idle, attacked, memory = result["idle"], result["under_attack"], result["memory_mb"]
    return "\n".join(
        [
            "### Another user's clicks beside a hostile visitor (`python -m segdemo.bench_abuse`)",
            "",
            "| | median | p90 |",
            "|---|---|---|",
            f"| idle | {idle['p50_ms']} ms | {idle['p90_ms']} ms |",
            f"| one page flooding, one opening the {LARGEST_SIDE}×{LARGEST_SIDE} photo "
            f"| {attacked['p50_ms']} ms | {attacked['p90_ms']} ms |",
            "",
            f"Server memory: {memory['at_start']} MiB at start, {memory['peak']} MiB at its peak.",
        ]
    )


if __name__ == "__main__":
    main()
