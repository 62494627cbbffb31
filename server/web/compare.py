"""Runs side by side in the browser: ``/compare?runs=3,7`` shows, per matched layer, each run's
index distributions overlaid with their medians, selective shares and Kolmogorov–Smirnov tests,
and the median of each index by depth; with ``&layer=NAME`` (runs of one architecture) a neuron
table sortable by any index's change (``&_sort_desc=delta_color``)."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from server.compare.read import DELTA_COLUMNS, MAX_RUNS, compare_runs, neuron_changes
from server.featureviz.read import latest_featureviz
from server.storage.errors import NotFoundError
from server.web.deps import MAX_ID, SessionDep, is_number
from server.web.errors import RequestError
from server.web.table_query import apply_query, parse_query
from server.web.twins import Data, Page, page_router

pages = page_router()

SUMMARY_COLUMNS = (
    "layer",
    "index",
    "run",
    "run_layer",
    "neurons",
    "median",
    "selective",
    "dead_fraction",
    "ks",
    "p",
)
LAYERS = Page(
    "compare.html",
    json=lambda data: {key: value for key, value in data.items() if key != "plots"},
    rows=lambda data: summary_rows(data["comparison"]),
    columns=SUMMARY_COLUMNS,
)
NEURONS = Page(
    "compare.html",
    json=lambda data: {k: v for k, v in data.items() if k not in ("query", "plots")},
    rows=lambda data: data["rows"],
    columns=tuple(DELTA_COLUMNS),
)


def parse_runs(text: str) -> list[int]:
    """``"3,7"`` → [3, 7]."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not 2 <= len(parts) <= MAX_RUNS:
        raise RequestError(f"name 2 to {MAX_RUNS} runs to compare: ?runs=3,7")
    if not all(is_number(part) and int(part) <= MAX_ID for part in parts):
        raise RequestError(f"runs are numbers separated by commas, not {text[:60]!r}")
    return [int(part) for part in parts]


def summary_rows(comparison: Data) -> list[Data]:
    """One row per matched layer, index and run: the CSV of the comparison."""
    rows = []
    for layer in comparison["layers"]:
        for index in comparison["indexes"]:
            tests = {test["run"]: test for test in layer["tests"][index]}
            for entry in layer["runs"]:
                stats = entry["indexes"][index]
                test = tests.get(entry["run"], {})
                rows.append(
                    {
                        "layer": layer["name"],
                        "index": index,
                        "run": entry["run"],
                        "run_layer": entry["layer"],
                        "neurons": stats["neurons"],
                        "median": stats["median"],
                        "selective": stats["selective"],
                        "dead_fraction": entry["dead_fraction"],
                        "ks": test.get("ks"),
                        "p": test.get("p"),
                    }
                )
    return rows


def plot_series(comparison: Data) -> Data:
    """What the page's plots draw: per index, each run's median against relative depth; per
    matched layer and index, each run's histogram counts."""
    labels = [f"run {run['id']}" for run in comparison["runs"]]
    depth = {
        name: [
            (
                label,
                [layer["runs"][i]["depth"] for layer in comparison["layers"]],
                [layer["runs"][i]["indexes"][name]["median"] for layer in comparison["layers"]],
            )
            for i, label in enumerate(labels)
        ]
        for name in comparison["indexes"]
    }
    histograms = [
        {
            name: [
                (label, entry["indexes"][name]["counts"])
                for label, entry in zip(labels, layer["runs"], strict=True)
            ]
            for name in comparison["indexes"]
        }
        for layer in comparison["layers"]
    ]
    return {"depth": depth, "histograms": histograms}


def compare_data(session: Session, request: Request) -> tuple[Page, Data]:
    params = request.query_params
    run_ids = parse_runs(params.get("runs", ""))
    comparison = compare_runs(session, run_ids)
    layer = params.get("layer") or None
    data: Data = {
        "comparison": comparison,
        "layer": layer,
        "refusal": None,
        "plots": plot_series(comparison),
    }
    if layer is None:
        return LAYERS, data
    table = [(k, v) for k, v in params.multi_items() if k not in ("runs", "layer")]
    query = parse_query(table, DELTA_COLUMNS)
    try:
        rows = neuron_changes(session, run_ids, layer)
    except NotFoundError as error:
        if comparison["same_architecture"]:
            raise
        data.update(refusal=str(error), rows=[], total=0, offset=0, next=None, query=query)
        return NEURONS, data
    data.update(apply_query(rows, query), query=query)
    data["feature_vis"] = [latest_featureviz(session, run, layer) for run in run_ids[:2]]
    return NEURONS, data


@pages.get("/compare")
def compare_page(request: Request, session: SessionDep) -> Response:
    page, data = compare_data(session, request)
    return page.render(request, data)
