"""The dashboard's pages. Each URL also answers as ``.json`` (and tables as ``.csv``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from server.jobs.read import list_workers
from server.web.data import (
    INDEX_LABELS,
    NEURON_COLUMNS,
    home_data,
    layer_data,
    neuron_data,
    run_data,
)
from server.web.decompositions import composition_data
from server.web.deps import RunId, SessionDep, StoreDep, TablesDep
from server.web.render import parse_int, render, split_format
from server.web.table_query import parse_query

router = APIRouter(include_in_schema=False)


@router.get("/")
async def home(request: Request, session: SessionDep) -> Response:
    return render(request, "home.html", home_data(session), None)


@router.get("/runs.{fmt}")
async def runs_twin(request: Request, session: SessionDep, fmt: str) -> Response:
    data = home_data(session)
    columns = ["id", "status", "model", "dataset", "images", "neurons", "dead", "created"]
    return render(request, "home.html", data, fmt, data["runs"], columns)


@router.get("/runs/{run_ref}")
async def run_page(request: Request, session: SessionDep, run_ref: str) -> Response:
    stem, fmt = split_format(run_ref)
    data = run_data(session, parse_int(stem, "a run id"))
    columns = ["name", "type", "channels", "dead", "map_size", "rf_size", "rf_stride", "rf_offset"]
    if fmt == "json":
        data = {k: v for k, v in data.items() if k != "active"}
    elif data["active"]:
        workers = list_workers(session, request.app.state.settings.heartbeat_timeout)
        data["no_worker"] = not any(worker["state"] == "alive" for worker in workers)
    return render(request, "run.html", data, fmt, data["layers"], columns, partial="_run_body.html")


@router.get("/runs/{run_id}/layers/{layer_ref}")
async def layer_page(
    request: Request, session: SessionDep, tables: TablesDep, run_id: RunId, layer_ref: str
) -> Response:
    layer_name, fmt = split_format(layer_ref)
    query = parse_query(list(request.query_params.multi_items()), NEURON_COLUMNS)
    data = layer_data(session, tables, run_id, layer_name, query)
    data.update(query=query, index_labels=INDEX_LABELS)
    if fmt == "json":
        data = {k: v for k, v in data.items() if k not in ("query", "index_labels")}
    csv_columns = list(NEURON_COLUMNS)
    return render(
        request, "layer.html", data, fmt, data["rows"], csv_columns, partial="_neuron_table.html"
    )


@router.get("/runs/{run_id}/layers/{layer_name}/neurons/{channel_ref}")
async def neuron_page(
    request: Request,
    session: SessionDep,
    store: StoreDep,
    run_id: RunId,
    layer_name: str,
    channel_ref: str,
    source: str | None = None,
    mode: str = "activation",
    depth: Annotated[int, Query(ge=1, le=6)] = 3,
) -> Response:
    stem, fmt = split_format(channel_ref)
    channel = parse_int(stem, "a channel")
    data = neuron_data(session, store, run_id, layer_name, channel)
    data["index_labels"] = INDEX_LABELS
    if fmt == "json":
        data = data["neuron"]
    else:
        data["comp"] = composition_data(
            session, run_id, layer_name, channel, source or None, mode, depth
        )
    return render(request, "neuron.html", data, fmt)
