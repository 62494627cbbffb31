"""Who may change what: reading is open; a change needs the lab token when one is set, must come
from this site's own pages, and may name only files under the allowed roots.

:mod:`server.web.guard` refuses other hosts and cross-site requests before a body is read. A
form post must also show where it came from (``Origin`` or ``Referer``, on this host) and carry
the CSRF token of the page that holds the form: a random value in a ``SameSite=Strict`` cookie,
repeated in the form's hidden ``csrf`` field (double submission). Another site can neither read
the cookie nor make the browser send it.

A ``package.module:callable`` model spec runs code when built, so the browser may only reuse
one that an operator already registered from the command line (:mod:`server.web.models`).
"""

from __future__ import annotations

import hmac
import re
import secrets
from pathlib import Path

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from server.config import Settings
from server.web.errors import RequestError
from server.web.guard import NEEDS_TOKEN, TOKEN_COOKIE, hostname, origin_host

CSRF_COOKIE = "neuronscope_csrf"
CSRF_FIELD = "csrf"
_CSRF_FORMAT = re.compile(r"[A-Za-z0-9_-]{16,64}")


def check_write_access(request: Request, offered: str | None = None) -> None:
    """Changes need the lab token when one is set: as ``Authorization: Bearer``, a form field
    or the cookie a form sets. (Where a change may come from is checked before: the guard, and
    :func:`form_intent` for forms.)"""
    expected = request.app.state.settings.token
    if not expected:
        return
    header = request.headers.get("authorization", "")
    candidates = [offered, request.cookies.get(TOKEN_COOKIE)]
    if header.lower().startswith("bearer "):
        candidates.append(header[7:].strip())
    if not any(c and hmac.compare_digest(c.encode(), expected.encode()) for c in candidates):
        raise RequestError(NEEDS_TOKEN, 403)


async def form_intent(request: Request) -> None:
    """A form post came from one of this site's pages: its ``Origin`` (or, where a browser
    sends none, its ``Referer``) is this host, and its ``csrf`` field matches the cookie."""
    host = hostname(request.headers.get("host"))
    source = request.headers.get("origin") or request.headers.get("referer")
    if source is None:
        raise RequestError("refused a form post that says neither its Origin nor its Referer", 403)
    if origin_host(source) != host:
        raise RequestError(f"refused a change requested from another site ({source})", 403)
    form = await request.form()  # already read for the handler: this is the same, cached form
    offered = form.get(CSRF_FIELD)
    cookie = request.cookies.get(CSRF_COOKIE)
    if not (
        isinstance(offered, str)
        and cookie
        and hmac.compare_digest(offered.encode(), cookie.encode())
    ):
        raise RequestError(
            "this form is out of date or came from another page (its CSRF token does not match); "
            "reload the page and send it again",
            403,
        )


def forms_router() -> APIRouter:
    """A router for the pages' form posts: each one checked by :func:`form_intent` first."""
    return APIRouter(include_in_schema=False, dependencies=[Depends(form_intent)])


def csrf_token(request: Request) -> str:
    """The token a page's forms repeat: the browser's cookie, or a new one that the guard sets
    on this response."""
    current = request.cookies.get(CSRF_COOKIE, "")
    if _CSRF_FORMAT.fullmatch(current):
        return current
    if getattr(request.state, "csrf", None) is None:
        token = secrets.token_urlsafe(24)
        request.state.csrf = token
        request.state.csrf_new = f"{CSRF_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict"
    return request.state.csrf


def see_other(request: Request, url: str, token: str | None) -> Response:
    """See the result of a form (POST → 303 → GET); a token typed into the form is remembered."""
    response = RedirectResponse(url, status_code=303)
    if token and request.app.state.settings.token:
        response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
    return response


def allowed_path(settings: Settings, raw: str, what: str, directory: bool) -> Path:
    """``raw`` resolved (symlinks followed), existing, and under an allowed root."""
    if not raw or not raw.strip():
        raise RequestError(f"give the {what}'s path on the server")
    path = Path(raw.strip()).expanduser()
    if not path.is_absolute():
        raise RequestError(f"the {what} path must be absolute, not {raw!r}")
    path = path.resolve()
    if not any(path.is_relative_to(root) for root in settings.allowed_roots):
        roots = ", ".join(str(root) for root in settings.allowed_roots)
        raise RequestError(
            f"{path} is outside the folders this server may read ({roots}); "
            "the operator can add folders with NEURONSCOPE_ALLOWED_ROOTS",
            403,
        )
    if directory and not path.is_dir():
        raise RequestError(f"no folder {path}")
    if not directory and not path.is_file():
        raise RequestError(f"no file {path}")
    return path
