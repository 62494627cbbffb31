"""The JSON API under /api/, described by the OpenAPI schema at /openapi.json."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request

from server.runs.read import list_runs, neuron_detail
from server.web.data import NEURON_COLUMNS, layer_data, run_data
from server.web.deps import Channel, RunId, SessionDep, StoreDep, TablesDep
from server.web.table_query import parse_query

router = APIRouter(prefix="/api", tags=["api"])


@router.get("/runs", summary="Every analysis run")
async def api_runs(session: SessionDep) -> list[dict[str, Any]]:
    return list_runs(session)


@router.get("/runs/{run_id}", summary="A run and its layers, with index histograms")
async def api_run(session: SessionDep, run_id: RunId) -> dict[str, Any]:
    return run_data(session, run_id)


@router.get(
    "/runs/{run_id}/layers/{layer_name}/neurons",
    summary="A layer's neurons: filter, sort and page them",
    description=(
        "Query grammar: `_sort=COL` and `_sort_desc=COL` (repeatable, in order), "
        "`COL__gt=`, `__gte`, `__lt`, `__lte`, `__eq`, `__ne`, `__isnull`, `_dead=0` hides "
        "dead neurons, `_size=N`, `_next=TOKEN` for the next page. Columns: "
        + ", ".join(NEURON_COLUMNS)
    ),
)
async def api_layer_neurons(
    request: Request,
    session: SessionDep,
    tables: TablesDep,
    run_id: RunId,
    layer_name: str,
    _sort: list[str] | None = Query(None, description="ascending sort column(s)"),  # noqa: B008
    _sort_desc: list[str] | None = Query(None, description="descending sort column(s)"),  # noqa: B008
    _size: int | None = Query(None, ge=1, le=5000),
    _next: int | None = Query(None, ge=0),
    _dead: str | None = Query(None, description="0 hides dead neurons"),
) -> dict[str, Any]:
    query = parse_query(list(request.query_params.multi_items()), NEURON_COLUMNS)
    return layer_data(session, tables, run_id, layer_name, query)


@router.get(
    "/runs/{run_id}/layers/{layer_name}/neurons/{channel}",
    summary="One neuron: the same object as `neuronscope neuron --json`",
)
async def api_neuron(
    session: SessionDep, store: StoreDep, run_id: RunId, layer_name: str, channel: Channel
) -> dict[str, Any]:
    return neuron_detail(session, store, run_id, layer_name, channel)
