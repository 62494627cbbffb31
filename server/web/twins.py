"""Every page is one function's data, rendered four ways (after Datasette): the HTML page, its
htmx partial, its ``.json`` twin and, for a table, its ``.csv`` twin.

A page's route is declared once, on a router from :func:`page_router`. Its path also answers
with ``.json`` or ``.csv`` appended (``/runs/3.json``, ``/runs/3/layers/features.17.csv``): the
router's routes strip a known suffix before matching and note the format in the request. The
handler computes the data and hands it to the page's :class:`Page`, which renders what was
asked for. So the three forms of a page can never disagree.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from starlette.routing import Match
from starlette.types import Scope

from server.storage.errors import NotFoundError

FORMATS = ("json", "csv")
FORMAT_KEY = "neuronscope.format"  # where a twin route notes the format asked for
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # what makes a spreadsheet cell a formula

Data = dict[str, Any]


class TwinRoute(APIRoute):
    """A route whose path also matches with ``.json`` or ``.csv`` appended."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http":
            stem, fmt = split_format(scope["path"])
            if fmt is not None:
                match, child = super().matches({**scope, "path": stem})
                if match is not Match.NONE:
                    return match, {**child, FORMAT_KEY: fmt}
        return super().matches(scope)


def page_router() -> APIRouter:
    """A router for pages: left out of the API schema, every path with its twins."""
    return APIRouter(route_class=TwinRoute, include_in_schema=False)


def split_format(path: str) -> tuple[str, str | None]:
    """``"/runs/1/layers/features.17.json"`` → ``("/runs/1/layers/features.17", "json")``; a
    path without a known suffix is returned whole, with None."""
    stem, dot, suffix = path.rpartition(".")
    if dot and suffix in FORMATS:
        return stem, suffix
    return path, None


def requested_format(request: Request) -> str | None:
    """ "json" or "csv" when a twin was asked for, else None (the HTML page)."""
    return request.scope.get(FORMAT_KEY)


@dataclass(frozen=True)
class Page:
    """How one kind of page renders its data.

    ``json`` picks what the ``.json`` twin shows (default: all of the data); ``rows`` picks the
    table the ``.csv`` twin writes, in ``columns`` order (a page without it has no CSV twin);
    ``partial`` is the template an htmx request gets instead of the whole page.
    """

    template: str
    partial: str | None = None
    json: Callable[[Data], Any] | None = None
    rows: Callable[[Data], Sequence[Data]] | None = None
    columns: Sequence[str] = ()

    def render(self, request: Request, data: Data) -> Response:
        response = self._render(request, data)
        request.state.rendered = time.perf_counter()  # the end of the server's work
        return response

    def _render(self, request: Request, data: Data) -> Response:
        fmt = requested_format(request)
        if fmt == "json":
            return JSONResponse(jsonable_encoder(self.json(data) if self.json else data))
        if fmt == "csv":
            if self.rows is None:
                raise NotFoundError("this page has no CSV form; try .json")
            return csv_response(self.rows(data), self.columns)
        htmx = request.headers.get("HX-Request") == "true"
        response = fragment(request, self.partial if htmx and self.partial else self.template, data)
        response.headers["Vary"] = "HX-Request"
        return response


def fragment(request: Request, template: str, context: Data) -> Response:
    """A template rendered on its own: a page, or a section that htmx swaps into one."""
    templates = request.app.state.templates
    response = templates.TemplateResponse(request, template, {**context, "request": request})
    request.state.rendered = time.perf_counter()
    return response


def csv_response(rows: Sequence[Data], columns: Sequence[str]) -> Response:
    """``rows`` as CSV with one column per name in ``columns`` (nulls as empty cells)."""
    columns = list(columns or (rows[0].keys() if rows else []))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: csv_cell(row.get(k)) for k in columns})
    return Response(buffer.getvalue(), media_type="text/csv; charset=utf-8")


def csv_cell(value: Any) -> Any:
    """A cell as a spreadsheet should show it: empty for null, and text that a spreadsheet would
    run as a formula (a lab's note "=HYPERLINK(...)") quoted with a leading apostrophe."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value
