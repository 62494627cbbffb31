"""Refusals the browser and the API read: a status and one sentence that says what to fix.

Every error a page or API route can meet ends here as a 4xx with a readable body: JSON for the
API and the ``.json`` twins, text for the ``.csv`` twins, a small page otherwise.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException

from server.storage.errors import NotFoundError
from server.storage.uploads import UploadError
from server.web.table_query import QueryError
from server.web.twins import requested_format, split_format


class RequestError(ValueError):
    """A request the server refuses; ``status`` is the HTTP status, the message what to fix."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def error_response(request: Request, status: int, message: str) -> Response:
    """A readable error in the form the request asked for."""
    path = request.url.path
    fmt = requested_format(request) or split_format(path)[1]
    if path.startswith("/api/") or fmt == "json":
        return JSONResponse({"detail": message}, status_code=status)
    if fmt == "csv":
        return Response(f"error: {message}\n", status_code=status, media_type="text/plain")
    templates: Jinja2Templates = request.app.state.templates
    return templates.TemplateResponse(
        request, "error.html", {"status": status, "message": message}, status_code=status
    )


def add_error_handlers(app: FastAPI) -> None:
    """Our own errors, whoever raises them, as :func:`error_response`."""

    @app.exception_handler(NotFoundError)
    def not_found(request: Request, error: NotFoundError) -> Response:
        return error_response(request, 404, str(error))

    @app.exception_handler(QueryError)
    def bad_query(request: Request, error: QueryError) -> Response:
        return error_response(request, 400, str(error))

    @app.exception_handler(UploadError)
    def refused_upload(request: Request, error: UploadError) -> Response:
        return error_response(request, error.status, str(error))

    @app.exception_handler(RequestError)
    def refused(request: Request, error: RequestError) -> Response:
        return error_response(request, error.status, str(error))

    @app.exception_handler(HTTPException)
    def no_route(request: Request, error: HTTPException) -> Response:
        """Starlette's own refusals (no route, a wrong method), said in a sentence."""
        messages = {
            404: f"there is no page at {request.url.path[:200]}",
            405: f"{request.url.path[:200]} does not take {request.method} requests",
        }
        message = messages.get(error.status_code, str(error.detail))
        response = error_response(request, error.status_code, message)
        response.headers.update(error.headers or {})
        return response

    @app.exception_handler(PoolTimeoutError)
    def overloaded(request: Request, _error: PoolTimeoutError) -> Response:
        return busy(request, "the server is busy: every database connection is in use")

    @app.exception_handler(OperationalError)
    def locked(request: Request, error: OperationalError) -> Response:
        if "locked" not in str(error.orig):
            raise error
        return busy(request, "the database is busy with a long write; try again in a moment")


def busy(request: Request, message: str) -> Response:
    """503 with ``Retry-After``: the request was fine, the server could not take it now."""
    response = error_response(request, 503, f"{message}; try again in a moment")
    response.headers["Retry-After"] = "1"
    return response
