"""A layer's neurons as a table and a grid: sort, filter and page them by the URL grammar of
:mod:`server.web.table_query`, in the browser and the API."""

from __future__ import annotations

from collections import OrderedDict
from threading import Lock
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from server.featureviz.read import latest_featureviz
from server.notes.read import layer_labels
from server.runs.read import get_layer, layer_summary, neuron_table, run_summary
from server.storage.schema import INDEX_NAMES, Layer
from server.web.deps import RunId, RunRef, SessionDep
from server.web.featureviz import active_featureviz_jobs
from server.web.table_query import TableQuery, apply_query, parse_query
from server.web.twins import Data, Page, page_router

pages = page_router()
api = APIRouter(prefix="/api", tags=["runs"])

NEURON_COLUMNS: dict[str, type] = {
    "channel": int,
    "dead": bool,
    "mean": float,
    "max": float,
    **dict.fromkeys(INDEX_NAMES, float),
    "color_bounded": float,
    "double_opponent": float,
    "top_class": str,
    "spectral_class": str,
    "spatial_class": str,
    "label": str,
}
INDEX_LABELS = {
    "color": "colour",
    "orientation": "orientation",
    "symmetry": "symmetry",
    "class": "class",
    "shape": "shape",
}

LAYER = Page(
    "layer.html",
    partial="_neuron_table.html",
    json=lambda data: {k: v for k, v in data.items() if k not in ("query", "index_labels")},
    rows=lambda data: data["rows"],
    columns=tuple(NEURON_COLUMNS),
)


class LayerTableCache:
    """Neuron tables of finished runs, which never change, kept in memory (LRU).

    A table is built once however many requests ask for it at the same moment: the first
    builds it, the others wait for it (a lab opening a new layer at once made every request
    build the same table, each as slow as all of them together)."""

    def __init__(self, capacity: int = 64) -> None:
        self.capacity = capacity
        self._tables: OrderedDict[tuple[int, bool], list[dict[str, Any]]] = OrderedDict()
        self._lock = Lock()
        self._building: dict[tuple[int, bool], Lock] = {}

    def rows(self, session: Session, layer: Layer) -> list[dict[str, Any]]:
        # A finished layer changes once more: when index jobs add its indexes (and summary).
        key = (layer.id, layer.summary is not None)
        if layer.run.status != "done":
            return neuron_table(session, layer)
        with self._lock:
            if key in self._tables:
                self._tables.move_to_end(key)
                return self._tables[key]
            building = self._building.setdefault(key, Lock())
        with building:
            with self._lock:
                if key in self._tables:
                    return self._tables[key]
            rows = neuron_table(session, layer)
            with self._lock:
                self._tables[key] = rows
                self._building.pop(key, None)
                while len(self._tables) > self.capacity:
                    self._tables.popitem(last=False)
        return rows


def layer_data(
    session: Session, cache: LayerTableCache, run_id: int, layer_name: str, query: TableQuery
) -> Data:
    """One page of a layer's neuron table, with the newest feature visualisation per channel."""
    layer = get_layer(session, run_id, layer_name)
    labels = layer_labels(session, layer.id)  # a lab's labels change on a finished run too
    rows = [{**row, "label": labels.get(row["channel"])} for row in cache.rows(session, layer)]
    page = apply_query(rows, query)
    return {
        "run": run_summary(layer.run),
        "layer": {**layer_summary(layer), "summary": layer.summary or {}},
        "columns": list(NEURON_COLUMNS),
        "feature_vis": latest_featureviz(session, run_id, layer_name),
        "rendering": bool(active_featureviz_jobs(session, run_id, layer_name)),
        **page,
    }


def table_query(request: Request) -> TableQuery:
    return parse_query(list(request.query_params.multi_items()), NEURON_COLUMNS)


@pages.get("/runs/{run_id}/layers/{layer_name}")
def layer_page(request: Request, session: SessionDep, run_id: RunRef, layer_name: str) -> Response:
    query = table_query(request)
    data = layer_data(session, request.app.state.tables, run_id, layer_name, query)
    return LAYER.render(request, {**data, "query": query, "index_labels": INDEX_LABELS})


@api.get(
    "/runs/{run_id}/layers/{layer_name}/neurons",
    summary="A layer's neurons: filter, sort and page them",
    description=(
        "Query grammar: `_sort=COL` and `_sort_desc=COL` (repeatable, in order), "
        "`COL__gt=`, `__gte`, `__lt`, `__lte`, `__eq`, `__ne`, `__isnull`, `__contains` (text, "
        "any case: `label__contains=curve`), `_dead=0` hides "
        "dead neurons, `_size=N`, `_next=TOKEN` for the next page. Columns: "
        + ", ".join(NEURON_COLUMNS)
    ),
)
def api_layer_neurons(
    request: Request,
    session: SessionDep,
    run_id: RunId,
    layer_name: str,
    _sort: list[str] | None = Query(None, description="ascending sort column(s)"),  # noqa: B008
    _sort_desc: list[str] | None = Query(None, description="descending sort column(s)"),  # noqa: B008
    _size: int | None = Query(None, ge=1, le=5000),
    _next: int | None = Query(None, ge=0),
    _dead: str | None = Query(None, description="0 hides dead neurons"),
) -> dict[str, Any]:
    return layer_data(session, request.app.state.tables, run_id, layer_name, table_query(request))
