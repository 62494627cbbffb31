"""The dashboard in the test's process, called as a browser on this machine calls it."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi.testclient import TestClient

from server.config import Settings, load_settings
from server.web.app import create_app
from server.web.security import CSRF_COOKIE, CSRF_FIELD

BASE_URL = "http://127.0.0.1"
CSRF = "test-csrf-token-0123456789"


class LabClient(TestClient):
    """A client on an allowed host whose form posts come from the dashboard's own pages: with
    its ``Origin`` and the CSRF token of the page (``/api`` calls are sent as they are).

    A test of a refusal passes its own ``headers`` or ``data``: what it gives is kept, and a
    header given as ``""`` is left out (``{"Origin": ""}``: a post that names no origin)."""

    def __init__(self, app: Any, **kwargs: Any) -> None:
        super().__init__(app, base_url=BASE_URL, **kwargs)
        self.cookies.set(CSRF_COOKIE, CSRF)

    def post(self, url: str, **kwargs: Any) -> Any:
        if not str(url).startswith(("/api/", f"{BASE_URL}/api/")) and "json" not in kwargs:
            given = {"Origin": BASE_URL, **(kwargs.pop("headers", None) or {})}
            headers = {name: value for name, value in given.items() if value != ""}
            data = {CSRF_FIELD: CSRF, **(kwargs.pop("data", None) or {})}
            kwargs = {**kwargs, "headers": headers, "data": data}
        return super().post(url, **kwargs)


def web_client(settings: Settings) -> LabClient:
    return LabClient(create_app(settings))


@contextmanager
def serving(environ: dict[str, str]) -> Iterator[str]:
    """The dashboard for the settings ``environ`` on a free loopback port, served by uvicorn in
    a thread as ``neuronscope serve`` does; yields its base URL."""
    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = create_app(load_settings(environ))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
