"""The door every request passes first: a plain ASGI middleware, so a refusal costs no handler,
no thread and no body.

- **Host.** The ``Host`` header must name this server (:attr:`Settings.allowed_hosts`): a page
  on another site that rebinds its own name to this address sends its own name, and is refused.
- **Writes come from here.** A POST whose ``Origin`` is another site (or ``null``), or that a
  browser marks ``Sec-Fetch-Site: cross-site``/``same-site``, is refused before its body is read.
  Form posts also need the form's CSRF token (:mod:`server.web.security`).
- **Bodies are bounded while they stream**: by ``Content-Length`` first, then byte by byte, so a
  200 MB upload is refused after the limit, not spooled to disk. With a lab token set, an upload
  must show it (header, cookie, or the form's ``token`` field before the file) before the file
  is read.
- **Every response** carries ``X-Frame-Options: DENY``, a Content-Security-Policy, ``nosniff``,
  a same-origin referrer policy and ``Server-Timing`` (the server's own time for the request).

It also sizes the thread pool that runs the (plain ``def``) handlers, once, on the first request.
"""

from __future__ import annotations

import hmac
import json
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

import anyio.to_thread
from starlette.datastructures import Headers, MutableHeaders

from server.config import Settings
from server.storage.uploads import readable_size

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
TOKEN_COOKIE = "neuronscope_token"
FORM_BODY_LIMIT = 1 << 20  # a form without a file, or a JSON body
MULTIPART_OVERHEAD = 64 << 10  # boundaries, part headers and the small fields beside the file
PEEK_LIMIT = 64 << 10  # how far into an upload the token may be looked for
MAX_QUERY = 8 << 10  # a query string (700 repeated sort keys built a 386 KB page)
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; style-src-attr 'unsafe-inline'; "
    "script-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'; object-src 'none'"
)
# FastAPI's interactive API pages load Swagger UI and ReDoc from their CDN, with inline scripts.
API_DOCS_POLICY = (
    "default-src 'self'; img-src 'self' data: https:; style-src 'self' 'unsafe-inline' https:; "
    "script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; worker-src blob:; "
    "frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
API_DOCS_PATHS = ("/docs", "/docs/oauth2-redirect", "/redoc")
SECURITY_HEADERS = (
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
)


class BodyTooLargeError(Exception):
    """Raised into the application when a request body passes its limit while streaming."""


def hostname(authority: str | None) -> str:
    """``"Example.org:8000"`` → ``"example.org"``; ``"[::1]:8000"`` → ``"::1"``."""
    if not authority:
        return ""
    authority = authority.strip().lower()
    if authority.startswith("["):
        return authority[1 : authority.find("]")] if "]" in authority else authority
    return authority.rsplit(":", 1)[0] if authority.count(":") == 1 else authority


def origin_host(url: str) -> str | None:
    """The host name of an ``Origin`` or ``Referer`` URL (None for ``null`` or garbage)."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return parts.hostname.lower()


class RequestGuard:
    """See the module's docstring. ``app`` is the FastAPI application it stands in front of."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.allowed_hosts = frozenset(settings.allowed_hosts)
        self._threads_sized = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self._size_threads()
        scope.setdefault("state", {})
        arrived = time.perf_counter()
        headers = Headers(scope=scope)
        refusal = self._refusal(scope, headers)
        if refusal is None and scope["method"] not in SAFE_METHODS:
            refusal, receive = await self._check_token_first(scope, headers, receive)
        if refusal is not None:
            await self._refuse(scope, send, *refusal)
            return
        limit = self._body_limit(headers)
        counted = _counting(receive, limit, scope["state"])
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if scope["state"].get("body_too_large"):
                    await self._refuse(scope, send, 413, _too_large(limit))
                    raise BodyTooLargeError
                self._decorate(message, scope, arrived)
            await send(message)

        try:
            await self.app(scope, counted, send_with_headers)
        except BodyTooLargeError:
            if not started:
                await self._refuse(scope, send, 413, _too_large(limit))

    def _size_threads(self) -> None:
        """Handlers run in anyio's thread pool; it gets as many threads as the database pool
        has connections, so a request waits for a thread, never for a connection."""
        if not self._threads_sized:
            limiter = anyio.to_thread.current_default_thread_limiter()
            limiter.total_tokens = self.settings.web_threads
            self._threads_sized = True

    def _refusal(self, scope: Scope, headers: Headers) -> tuple[int, str] | None:
        host = hostname(headers.get("host"))
        if host not in self.allowed_hosts:
            return 400, (
                f"this server does not answer to the host name {host or '(none)'!r}; "
                "its operator can add it to NEURONSCOPE_ALLOWED_HOSTS"
            )
        if len(scope.get("query_string", b"")) > MAX_QUERY:
            return 414, f"the query string is longer than {MAX_QUERY:,} characters"
        if scope["method"] in SAFE_METHODS:
            return None
        origin = headers.get("origin")
        if origin is not None and origin_host(origin) != host:
            return 403, f"refused a change requested from another site (Origin: {origin})"
        fetch_site = headers.get("sec-fetch-site")
        if fetch_site is not None and fetch_site not in ("same-origin", "none"):
            return 403, f"refused a change requested from another site ({fetch_site})"
        declared = headers.get("content-length")
        limit = self._body_limit(headers)
        if declared and declared.isascii() and declared.isdigit() and int(declared) > limit:
            return 413, _too_large(limit)
        return None

    def _body_limit(self, headers: Headers) -> int:
        if headers.get("content-type", "").startswith("multipart/form-data"):
            return self.settings.max_upload_bytes + MULTIPART_OVERHEAD
        return FORM_BODY_LIMIT

    async def _check_token_first(
        self, scope: Scope, headers: Headers, receive: Receive
    ) -> tuple[tuple[int, str] | None, Receive]:
        """With a lab token set, an upload without it in a header or cookie must carry it in a
        form field before its file: read that far (at most PEEK_LIMIT), then replay."""
        expected = self.settings.token
        content_type = headers.get("content-type", "")
        if not expected or not content_type.startswith("multipart/form-data"):
            return None, receive
        if _offers(expected, _header_or_cookie_token(headers)):
            return None, receive
        boundary = _boundary(content_type)
        messages: list[Message] = []
        prefix = b""
        fields: dict[str, str] = {}
        decided = boundary is None
        while not decided and len(prefix) < PEEK_LIMIT:
            message = await receive()
            messages.append(message)
            prefix += message.get("body", b"")
            fields, decided = leading_fields(prefix, boundary or b"")
            if message["type"] != "http.request" or not message.get("more_body", False):
                decided = True
        if not _offers(expected, [fields.get("token")]):
            return (403, NEEDS_TOKEN), receive
        return None, _replaying(messages, receive)

    def _decorate(self, message: Message, scope: Scope, arrived: float) -> None:
        headers = MutableHeaders(scope=message)
        policy = API_DOCS_POLICY if scope.get("path") in API_DOCS_PATHS else CONTENT_SECURITY_POLICY
        for name, value in (*SECURITY_HEADERS, (b"content-security-policy", policy.encode())):
            if name.decode() not in headers:
                headers.raw.append((name, value))
        state = scope.get("state", {})
        started = state.get("started", arrived)
        finished = state.get("rendered") or time.perf_counter()
        headers.append("Server-Timing", f"app;dur={(finished - started) * 1000:.1f}")
        if state.get("csrf_new"):
            headers.append("Set-Cookie", state["csrf_new"])

    async def _refuse(self, scope: Scope, send: Send, status: int, message: str) -> None:
        path = scope.get("path", "")
        if path.startswith("/api/") or path.endswith(".json"):
            body, media = json.dumps({"detail": message}).encode(), b"application/json"
        else:
            body, media = f"error: {message}\n".encode(), b"text/plain; charset=utf-8"
        headers = [(b"content-type", media), (b"content-length", str(len(body)).encode())]
        if status == 413:
            headers.append((b"connection", b"close"))
        start = {"type": "http.response.start", "status": status, "headers": headers}
        self._decorate(start, scope, time.perf_counter())
        await send(start)
        await send({"type": "http.response.body", "body": body})


NEEDS_TOKEN = (
    "this server needs the lab token (NEURONSCOPE_TOKEN) to change anything; enter it in the "
    "form, or send it as 'Authorization: Bearer TOKEN'"
)


def _too_large(limit: int) -> str:
    if limit == FORM_BODY_LIMIT:
        return f"the request is larger than a form or JSON body may be ({readable_size(limit)})"
    return (
        f"the upload is larger than this server accepts: a file may be at most "
        f"{readable_size(limit - MULTIPART_OVERHEAD)} (NEURONSCOPE_MAX_UPLOAD_BYTES)"
    )


def _header_or_cookie_token(headers: Headers) -> list[str | None]:
    authorization = headers.get("authorization", "")
    offered = [authorization[7:].strip()] if authorization.lower().startswith("bearer ") else []
    cookies = headers.get("cookie", "")
    match = re.search(rf"(?:^|;\s*){TOKEN_COOKIE}=([^;]*)", cookies)
    return [*offered, match.group(1) if match else None]


def _offers(expected: str, candidates: list[str | None]) -> bool:
    return any(c and hmac.compare_digest(c.encode(), expected.encode()) for c in candidates)


def _boundary(content_type: str) -> bytes | None:
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    return match.group(1).encode("latin-1") if match else None


def leading_fields(prefix: bytes, boundary: bytes) -> tuple[dict[str, str], bool]:
    """The text fields of a multipart body's start, up to its first file; and whether that
    start is known (a file part, or the end, has begun)."""
    fields: dict[str, str] = {}
    parts = prefix.split(b"--" + boundary)
    for index, part in enumerate(parts[1:], start=1):
        complete = index < len(parts) - 1
        if part.startswith(b"--"):
            return fields, True
        head, separator, body = part.partition(b"\r\n\r\n")
        if not separator:
            return fields, False
        if b"filename=" in head:
            return fields, True
        if not complete:
            return fields, False
        name = re.search(rb'name="([^"]*)"', head)
        if name:
            fields[name.group(1).decode("latin-1")] = body.removesuffix(b"\r\n").decode(
                "utf-8", "replace"
            )
    return fields, False


def _replaying(messages: list[Message], receive: Receive) -> Receive:
    """Hand the already-read messages to the application first, then the rest."""
    pending = list(messages)

    async def replay() -> Message:
        return pending.pop(0) if pending else await receive()

    return replay


def _counting(receive: Receive, limit: int, state: dict[str, Any]) -> Receive:
    """``receive`` that fails once more than ``limit`` body bytes have come."""
    seen = 0

    async def counted() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                state["body_too_large"] = True
                raise BodyTooLargeError
        return message

    return counted
