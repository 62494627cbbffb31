"""Who may change what: reading is open; a change needs the lab token when one is set, must come
from this site's own pages, and may name only files under the allowed roots.

A ``package.module:callable`` model spec runs code when built, so the browser may only reuse
one that an operator already registered from the command line (:mod:`server.web.models`).
"""

from __future__ import annotations

import hmac
from pathlib import Path

from fastapi import Request
from fastapi.responses import RedirectResponse, Response

from server.config import Settings
from server.web.errors import RequestError

TOKEN_COOKIE = "neuronscope_token"


def check_write_access(request: Request, offered: str | None = None) -> None:
    """Changes need the lab token when one is set, and must come from this site's own pages.

    The token may come as ``Authorization: Bearer``, a form field or the cookie a form sets.
    A cross-site form post (an ``Origin`` that is not this host) is refused even without a token.
    """
    origin = request.headers.get("origin")
    if origin and origin.split("://", 1)[-1] != request.headers.get("host"):
        raise RequestError(f"refused a change requested from another site ({origin})", 403)
    expected = request.app.state.settings.token
    if not expected:
        return
    header = request.headers.get("authorization", "")
    candidates = [offered, request.cookies.get(TOKEN_COOKIE)]
    if header.lower().startswith("bearer "):
        candidates.append(header[7:].strip())
    if not any(c and hmac.compare_digest(c.encode(), expected.encode()) for c in candidates):
        raise RequestError(
            "this server needs the lab token (NEURONSCOPE_TOKEN) to change anything; "
            "enter it in the form, or send it as 'Authorization: Bearer TOKEN'",
            403,
        )


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
