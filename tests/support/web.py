"""The dashboard in the test's process, called as a browser on this machine calls it."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from server.config import Settings
from server.web.app import create_app
from server.web.security import CSRF_COOKIE, CSRF_FIELD

BASE_URL = "http://127.0.0.1"
CSRF = "test-csrf-token-0123456789"


class LabClient(TestClient):
    """A client on an allowed host whose form posts come from the dashboard's own pages: with
    its ``Origin`` and the CSRF token of the page (``/api`` calls are sent as they are).

    A test of a refusal passes its own ``headers`` or ``data``: what it gives is kept."""

    def __init__(self, app: Any, **kwargs: Any) -> None:
        super().__init__(app, base_url=BASE_URL, **kwargs)
        self.cookies.set(CSRF_COOKIE, CSRF)

    def post(self, url: str, **kwargs: Any) -> Any:
        if not str(url).startswith(("/api/", f"{BASE_URL}/api/")) and "json" not in kwargs:
            headers = {"Origin": BASE_URL, **(kwargs.pop("headers", None) or {})}
            data = {CSRF_FIELD: CSRF, **(kwargs.pop("data", None) or {})}
            kwargs = {**kwargs, "headers": headers, "data": data}
        return super().post(url, **kwargs)


def web_client(settings: Settings) -> LabClient:
    return LabClient(create_app(settings))
