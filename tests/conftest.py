"""Shared fixtures: one app server on a free local port for the endpoint tests."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # so that `import app` works from any working directory


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def app_url():
    """Launch the real app (all tabs) on 127.0.0.1 and yield its URL."""
    import app

    demo = app.build_app()
    args = app.get_args_parser().parse_args(["--port", str(free_port())])
    demo.launch(prevent_thread_lock=True, quiet=True, **app.launch_kwargs(args))
    yield demo.local_url
    demo.close()


@pytest.fixture(scope="session")
def client(app_url):
    from gradio_client import Client

    return Client(app_url, verbose=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Expose each phase's report on the test item, so fixtures can react to a failure."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
