"""Render one view's data as a full page, an htmx partial, JSON or CSV."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Sequence
from typing import Any

from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, Response

from server.storage.errors import NotFoundError
from server.web.deps import MAX_ID

FORMATS = ("json", "csv")


def split_format(reference: str) -> tuple[str, str | None]:
    """``"features.17.json"`` → ``("features.17", "json")``; no known suffix → (reference, None)."""
    stem, dot, suffix = reference.rpartition(".")
    if dot and suffix in FORMATS:
        return stem, suffix
    return reference, None


def parse_int(text: str, what: str) -> int:
    """A non-negative id from a URL segment; anything else names no page (404)."""
    if not text.isdigit() or int(text) > MAX_ID:
        raise NotFoundError(f"{what} must be a number from 0 to {MAX_ID}, not {text!r}")
    return int(text)


def render(
    request: Request,
    template: str,
    data: dict[str, Any],
    fmt: str | None,
    csv_rows: Sequence[dict[str, Any]] | None = None,
    csv_columns: Sequence[str] | None = None,
    partial: str | None = None,
) -> Response:
    response = _render(request, template, data, fmt, csv_rows, csv_columns, partial)
    request.state.rendered = time.perf_counter()  # the end of the server's work (Server-Timing)
    return response


def _render(
    request: Request,
    template: str,
    data: dict[str, Any],
    fmt: str | None,
    csv_rows: Sequence[dict[str, Any]] | None,
    csv_columns: Sequence[str] | None,
    partial: str | None,
) -> Response:
    if fmt == "json":
        return JSONResponse(jsonable_encoder(data))
    if fmt == "csv":
        if csv_rows is None:
            raise NotFoundError("this view has no CSV form; try .json")
        return csv_response(csv_rows, csv_columns)
    is_htmx = request.headers.get("HX-Request") == "true"
    name = partial if is_htmx and partial else template
    templates = request.app.state.templates
    response = templates.TemplateResponse(request, name, {**data, "request": request})
    response.headers["Vary"] = "HX-Request"
    return response


def csv_response(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> Response:
    columns = list(columns or (rows[0].keys() if rows else []))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in columns})
    return Response(buffer.getvalue(), media_type="text/csv; charset=utf-8")
