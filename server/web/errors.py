"""Refusals the browser and the API read: a status and one sentence that says what to fix.

Every error a page or API route can meet ends here as a 4xx with a readable body: JSON for the
API and the ``.json`` twins, text for the ``.csv`` twins, a small page otherwise.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.templating import Jinja2Templates

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
