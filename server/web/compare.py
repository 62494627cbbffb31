"""Runs side by side in the browser: ``/compare?runs=3,7`` shows, per matched layer, each run's
index distributions overlaid with their medians, selective shares and Kolmogorov–Smirnov tests,
and the median of each index by depth; with ``&layer=NAME`` (runs of one architecture) a neuron
table sortable by any index's change (``&_sort_desc=delta_color``); with
``&near_layer=L&near_channel=C`` the second run's neurons whose responses to a probe set best
correlate with that neuron of the first (a form asks a worker to record the responses). With
more than two runs, ``&against=R`` picks the run that these two views set against the first."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from server.compare.read import (
    DELTA_COLUMNS,
    MAX_RUNS,
    PROBE_IMAGES,
    compare_runs,
    compared_pair,
    nearest_neurons,
    neuron_changes,
    probe_response,
)
from server.featureviz.read import latest_featureviz
from server.jobs.planning import plan_probe
from server.jobs.read import job_record, last_asked
from server.runs.read import get_neuron, get_run
from server.storage.artifacts import ArtifactStore
from server.storage.errors import NotFoundError
from server.storage.schema import JOB_ACTIVE
from server.web.deps import MAX_ID, SessionDep, StoreDep, SubmitDep, is_number, no_live_worker
from server.web.errors import RequestError
from server.web.forms import FormText, OptionalFormText, required_int
from server.web.security import check_write_access, forms_router, see_other
from server.web.table_query import apply_query, parse_query
from server.web.twins import Data, Page, page_router

pages = page_router()
forms = forms_router()
NEAR_PARAMS = ("near_layer", "near_channel", "against")

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


def parse_against(text: str | None) -> int | None:
    """``against=7`` → 7; absent or empty → None (the second run)."""
    if not text:
        return None
    if not is_number(text) or int(text) > MAX_ID:
        raise RequestError(f"against names a run by its number, not {text[:60]!r}")
    return int(text)


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


def nearest_data(
    session: Session, store: ArtifactStore, run_ids: list[int], layer: str, channel: int
) -> Data:
    """The neurons of the second of ``run_ids`` (the compared pair) nearest to (``layer``,
    ``channel``) of the first by their responses to PROBE_IMAGES images of the first run's
    folder, once both runs' responses are stored; until then, the jobs that record them (if
    asked)."""
    get_neuron(session, run_ids[0], layer, channel)
    dataset = get_run(session, run_ids[0]).dataset
    found = [probe_response(session, run_id, dataset.id) for run_id in run_ids[:2]]
    params = {"dataset": dataset.id, "images": PROBE_IMAGES}
    jobs = [last_asked(session, run_id, "probe", params) for run_id in run_ids[:2]]
    data: Data = {
        "layer": layer,
        "channel": channel,
        "probe": {"dataset": dataset.root, "images": min(PROBE_IMAGES, dataset.image_count)},
        "jobs": [job for job in jobs if job],
        "waiting": any(job and job["status"] in JOB_ACTIVE for job in jobs),
        "matches": None,
    }
    if found[0] is not None and found[1] is not None:
        data["matches"] = nearest_neurons(session, store, found[0], layer, channel, found[1])
    return data


def compare_data(session: Session, store: ArtifactStore, request: Request) -> tuple[Page, Data]:
    params = request.query_params
    run_ids = parse_runs(",".join(params.getlist("runs")))  # "3,7", or runs=3&runs=7 (a form)
    against = parse_against(params.get("against"))
    pair = compared_pair(run_ids, against)
    comparison = compare_runs(session, run_ids)
    layer = params.get("layer") or None
    data: Data = {
        "comparison": comparison,
        "layer": layer,
        "pair": pair,
        "against": against,
        "refusal": None,
        "plots": plot_series(comparison),
        "nearest": None,
    }
    if params.get("near_layer"):
        channel = required_int(params.get("near_channel", ""), "the neuron's channel")
        data["nearest"] = nearest_data(session, store, pair, params["near_layer"], channel)
    if layer is None:
        return LAYERS, data
    skipped = ("runs", "layer", *NEAR_PARAMS)
    table = [(k, v) for k, v in params.multi_items() if k not in skipped]
    query = parse_query(table, DELTA_COLUMNS)
    try:
        rows = neuron_changes(session, pair, layer)
    except NotFoundError as error:
        if comparison["same_architecture"]:
            raise
        data.update(refusal=str(error), rows=[], total=0, offset=0, next=None, query=query)
        return NEURONS, data
    data.update(apply_query(rows, query), query=query)
    data["feature_vis"] = [latest_featureviz(session, run, layer) for run in pair]
    return NEURONS, data


@pages.get("/compare")
def compare_page(request: Request, session: SessionDep, store: StoreDep) -> Response:
    page, data = compare_data(session, store, request)
    nearest = data["nearest"]
    if nearest is not None:
        nearest["no_worker"] = no_live_worker(request, session, nearest["waiting"])
    return page.render(request, data)


@forms.post("/compare/probe")
def probe_form(
    request: Request,
    submitter: SubmitDep,
    runs: FormText,
    near_layer: FormText,
    near_channel: FormText,
    token: OptionalFormText = None,
    against: OptionalFormText = None,
) -> Response:
    """Ask a worker for both runs' responses to the probe set (once; kept for every neuron)."""
    check_write_access(request, token)
    run_ids = parse_runs(runs)
    chosen = parse_against(against)
    pair = compared_pair(run_ids, chosen)
    channel = required_int(near_channel, "the neuron's channel")

    def plan(session: Session) -> tuple[list[Data], list[int]]:
        get_neuron(session, pair[0], near_layer, channel)
        dataset = get_run(session, pair[0]).dataset
        planned = [plan_probe(session, get_run(session, r), dataset, PROBE_IMAGES) for r in pair]
        return [job_record(job) for job, _ready in planned], [
            job.id for job, ready in planned if ready
        ]

    submitter.plan(plan)
    fields: dict[str, object] = {"runs": ",".join(map(str, run_ids)), "near_layer": near_layer}
    fields["near_channel"] = channel
    if chosen:
        fields["against"] = chosen
    query = urlencode(fields)
    return see_other(request, f"/compare?{query}#nearest", token)
