"""Runs in the browser and the API: the list of runs, a run's page, the new-run form; starting,
cancelling and resuming a run, which workers then compute.

Forms post and redirect (they work without JavaScript); a run's page polls itself through htmx
while its jobs are unfinished and stops once nothing is left to wait for.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from analysis.metadata import META_RESIZE
from analysis.resize import ResizePolicy
from server.decompositions.read import list_decompositions
from server.jobs.planning import PlanOptions, plan_analysis
from server.jobs.read import job_record, list_workers, run_stages
from server.jobs.state import JobSpec, stop_run, submit
from server.notes.read import find_notes, label_counts
from server.runs.read import (
    get_run,
    layer_summary,
    list_datasets,
    list_models,
    list_runs,
    run_summary,
)
from server.runs.register import RunParams, find_or_create_run
from server.storage.schema import JOB_ACTIVE, Dataset, Job, Model, Run
from server.web.deps import MAX_ID, RunId, RunRef, SessionDep, SettingsDep, SubmitDep, is_number
from server.web.errors import RequestError
from server.web.forms import FormText, OptionalFormText, required_int
from server.web.security import check_write_access, forms_router, see_other
from server.web.twins import Data, Page, page_router

pages = page_router()
forms = forms_router()
api = APIRouter(prefix="/api", tags=["runs"])

MAX_TOP_K = 10_000
MAX_SHARDS = 4096
RUN_COLUMNS = ("id", "status", "model", "dataset", "images", "neurons", "dead", "created")
LAYER_COLUMNS = (
    "name",
    "type",
    "channels",
    "dead",
    "map_size",
    "rf_size",
    "rf_stride",
    "rf_offset",
)
QueryId = Annotated[int, Query(ge=0, le=MAX_ID)]


def _without(*keys: str) -> Callable[[Data], Data]:
    return lambda data: {key: value for key, value in data.items() if key not in keys}


RUNS = Page("home.html", rows=lambda data: data["runs"], columns=RUN_COLUMNS)
RUN = Page(
    "run.html",
    partial="_run_body.html",
    json=_without("active", "no_worker"),
    rows=lambda data: data["layers"],
    columns=LAYER_COLUMNS,
)
NEW_RUN = Page("new_run.html")


# ---- data ------------------------------------------------------------------------------------


def runs_data(session: Session, only: list[int] | None = None) -> Data:
    """Every run, newest first; or only the runs ``only`` names (a list to share: ``/?runs=3,7``,
    the front page of a static copy)."""
    query = select(Run).order_by(Run.id.desc())
    if only is not None:
        query = query.where(Run.id.in_(only))
    return {"runs": [run_summary(run) for run in session.scalars(query)], "only": only}


def run_data(session: Session, run_id: int, heartbeat_timeout: float) -> Data:
    """A run, its layers with their index histograms, its jobs per stage, its decompositions;
    ``no_worker`` warns that its jobs wait for a worker that is not there."""
    run = get_run(session, run_id)
    layers = [{**layer_summary(layer), "summary": layer.summary or {}} for layer in run.layers]
    stages = run_stages(session, run_id)
    active = any(status in JOB_ACTIVE for stage in stages for status in stage["statuses"])
    workers = list_workers(session, heartbeat_timeout) if active else []
    return {
        "run": run_summary(run),
        "layers": layers,
        "stages": stages,
        "active": active,
        "no_worker": active and not any(worker["state"] == "alive" for worker in workers),
        "decompositions": list_decompositions(session, run_id),
        "labels": label_counts(session, run_id),
        "other_runs": [
            other for other in session.scalars(select(Run.id).order_by(Run.id)) if other != run_id
        ],
        "notes": find_notes(session, run_id=run_id, limit=None),
    }


def new_run_data(session: Session, model: int | None, dataset: int | None) -> Data:
    """The models whose layers are known (one chosen, to list its layers) and the folders."""
    models = [entry for entry in list_models(session) if entry["layers"]]
    chosen = next((m for m in models if m["id"] == model), models[0] if models else None)
    return {
        "models": models,
        "datasets": list_datasets(session),
        "chosen_model": chosen,
        "chosen_dataset": dataset,
    }


# ---- actions ---------------------------------------------------------------------------------


class RunBody(BaseModel):
    model: int = Field(ge=0, le=MAX_ID)
    dataset: int = Field(ge=0, le=MAX_ID)
    layers: list[str] = Field(default_factory=list, description="default: every conv activation")
    top_k: int = Field(100, ge=1, le=MAX_TOP_K)
    resize: str = Field(
        "model",
        max_length=40,
        description="model (its own: a zoo model's evaluation transform, else whole), whole, "
        "center-crop, or center-crop SIZE [bicubic]",
    )
    jpeg_draft: bool = Field(
        False,
        description="decode JPEGs at the smallest DCT scale that covers the input size "
        "(several times faster on camera photos; pixels differ slightly from a full decode)",
    )
    shards: int = Field(1, ge=1, le=MAX_SHARDS)
    batch_size: int = Field(64, ge=1, le=4096)
    indexes: bool = True
    featureviz: bool = Field(False, description="render a visualisation of every neuron too")


Planned = tuple[int, list[Job], list[int]]


def checked_run(session: Session, request: RunBody) -> tuple[Model, Dataset, tuple[str, ...], str]:
    """The model, image folder, layers (in the model's order) and resize text ``request``
    names, each checked: a bad value is refused with its reason."""
    model = session.get(Model, request.model)
    if model is None or not model.layers:
        raise RequestError(f"no registered model {request.model}", 404)
    dataset = session.get(Dataset, request.dataset)
    if dataset is None:
        raise RequestError(f"no registered image folder {request.dataset}", 404)
    if not 1 <= request.top_k <= MAX_TOP_K:
        raise RequestError(f"top-K must be between 1 and {MAX_TOP_K}")
    if not 1 <= request.shards <= MAX_SHARDS or not 1 <= request.batch_size <= 4096:
        raise RequestError(f"shards must be 1 to {MAX_SHARDS} and the batch size 1 to 4096")
    try:
        resize = ResizePolicy.of(
            (model.meta or {}).get(META_RESIZE, "whole")
            if request.resize == "model"
            else request.resize
        )
    except ValueError as error:
        raise RequestError(str(error)) from None
    known = {layer["name"]: layer for layer in model.layers}
    chosen = request.layers or [layer["name"] for layer in model.layers if layer["default"]]
    if not chosen:
        raise RequestError(
            f"model {model.id} has no default layer; choose layers (`neuronscope layers` lists "
            "them)"
        )
    for name in chosen:
        if name not in known:
            raise RequestError(f"model {model.id} has no layer {name!r}")
        if not known[name]["hookable"]:
            raise RequestError(f"layer {name!r} runs several times per forward pass")
    order = list(known)
    return model, dataset, tuple(sorted(set(chosen), key=order.index)), resize.value


def start_run(session: Session, request: RunBody) -> Planned:
    """Create (or find) the run and plan its jobs; returns the run id, its jobs, ids to send."""
    model, dataset, layers, resize = checked_run(session, request)
    params = RunParams(layers, request.top_k, resize, request.jpeg_draft)
    run, _finished = find_or_create_run(session, model, dataset, params, clear=False)
    options = PlanOptions(
        request.shards, request.batch_size, request.indexes, {} if request.featureviz else None
    )
    jobs, to_send = plan_analysis(session, run, options)
    session.flush()
    return run.id, jobs, to_send


def estimate_cost(session: Session, request: RunBody) -> tuple[Job, bool]:
    """The job that measures what the run ``request`` describes would cost, on a worker's
    device (asked again, it measures again)."""
    model, dataset, layers, resize = checked_run(session, request)
    params = {
        "model": model.id,
        "dataset": dataset.id,
        "layers": list(layers),
        "top_k": request.top_k,
        "resize": resize,
        "batch_size": request.batch_size,
        "indexes": request.indexes,
        "featureviz": request.featureviz,
    }
    job, ready = submit(
        session, JobSpec(kind="estimate", identity=params, params=params, repeatable=True)
    )
    session.flush()
    return job, ready


def resume_run(session: Session, run_id: int) -> Planned:
    """Queue a failed or cancelled run again: its failed and cancelled jobs are revived, its
    finished ones kept (the same plan: shards, batch size, indexes and feature visualisations
    if it had them)."""
    run = get_run(session, run_id)
    if run.status not in ("failed", "cancelled"):
        raise RequestError(f"run {run_id} is {run.status}; only a failed or cancelled run resumes")
    kinds = set(session.scalars(select(Job.kind).where(Job.run_id == run_id)))
    if not kinds:
        raise RequestError(f"run {run_id} was computed on the command line; run it there again")
    visualised = session.scalars(
        select(Job.params).where(Job.run_id == run_id, Job.kind == "featureviz")
    ).all()
    whole_layers = [params for params in visualised if params["layer"] and not params["units"]]
    options = PlanOptions(
        indexes="indexes" in kinds,
        featureviz=whole_layers[0]["settings"] if whole_layers else None,
    )
    jobs, to_send = plan_analysis(session, run, options)
    session.flush()
    return run.id, jobs, to_send


def submit_run(submit: SubmitDep, action: Callable[[Session], Planned]) -> dict[str, Any]:
    """Plan a run's jobs with ``action`` (start or resume), commit, send; the run and its jobs."""

    def plan(session: Session) -> tuple[dict[str, Any], list[int]]:
        run_id, jobs, to_send = action(session)
        return {"run": run_id, "jobs": [job_record(job) for job in jobs]}, to_send

    return submit.plan(plan)


def cancel_run(session: Session, run_id: int) -> str:
    """Stop an unfinished run and its jobs; the run's status after."""
    run = get_run(session, run_id)
    if run.status in ("pending", "queued", "running"):
        stop_run(session, run.id, "cancelled", "cancelled from the browser")
        session.flush()
        session.refresh(run)
    return run.status


# ---- pages -----------------------------------------------------------------------------------


@pages.get("/")
@pages.get("/runs")
def runs_page(request: Request, session: SessionDep, runs: str | None = None) -> Response:
    only = None
    if runs:
        parts = runs.split(",")
        if not all(is_number(part.strip()) and int(part) <= MAX_ID for part in parts):
            raise RequestError(f"runs are run ids separated by commas, not {runs[:60]!r}")
        only = [int(part) for part in parts]
    return RUNS.render(request, runs_data(session, only))


@pages.get("/runs/new")  # before the run page: "new" names no run
def new_run_page(
    request: Request,
    session: SessionDep,
    model: QueryId | None = None,
    dataset: QueryId | None = None,
) -> Response:
    return NEW_RUN.render(request, new_run_data(session, model, dataset))


@pages.get("/runs/{run_id}")
def run_page(
    request: Request, session: SessionDep, settings: SettingsDep, run_id: RunRef
) -> Response:
    return RUN.render(request, run_data(session, run_id, settings.heartbeat_timeout))


def run_form(
    request: Request,
    model: FormText,
    dataset: FormText,
    layers: Annotated[list[str] | None, Form()] = None,
    top_k: FormText = "100",
    resize: FormText = "model",
    jpeg_draft: OptionalFormText = None,
    shards: FormText = "1",
    batch_size: FormText = "64",
    indexes: OptionalFormText = None,
    featureviz: OptionalFormText = None,
    token: OptionalFormText = None,
) -> RunBody:
    """The new-run form's fields as a run request (its token checked first)."""
    check_write_access(request, token)
    request.state.token = token
    return RunBody.model_construct(
        model=required_int(model, "the model"),
        dataset=required_int(dataset, "the image folder"),
        layers=list(layers or []),
        top_k=required_int(top_k, "top-K"),
        resize=resize,
        jpeg_draft=bool(jpeg_draft),
        shards=required_int(shards, "the number of shards"),
        batch_size=required_int(batch_size, "the batch size"),
        indexes=bool(indexes),
        featureviz=bool(featureviz),
    )


RunForm = Annotated[RunBody, Depends(run_form)]


@forms.post("/runs")
def start_run_form(request: Request, submit: SubmitDep, body: RunForm) -> Response:
    run_id = submit_run(submit, lambda session: start_run(session, body))["run"]
    return see_other(request, f"/runs/{run_id}", request.state.token)


@forms.post("/runs/estimate")
def estimate_form(request: Request, submit: SubmitDep, body: RunForm) -> Response:
    """The new-run form's "estimate the cost" button: the job's page shows the figures (and
    the form shows that part of it under itself)."""
    job = submit.job(lambda session: estimate_cost(session, body))
    return see_other(request, f"/jobs/{job['id']}", request.state.token)


@forms.post("/runs/{run_id}/cancel")
def cancel_run_form(request: Request, run_id: RunId, token: OptionalFormText = None) -> Response:
    check_write_access(request, token)
    with request.app.state.database.session() as session:
        cancel_run(session, run_id)
    return see_other(request, f"/runs/{run_id}", token)


@forms.post("/runs/{run_id}/resume")
def resume_run_form(
    request: Request, submit: SubmitDep, run_id: RunId, token: OptionalFormText = None
) -> Response:
    check_write_access(request, token)
    submit_run(submit, lambda session: resume_run(session, run_id))
    return see_other(request, f"/runs/{run_id}", token)


# ---- the JSON API ----------------------------------------------------------------------------


@api.get("/runs", summary="Every analysis run")
def api_runs(session: SessionDep) -> list[dict[str, Any]]:
    return list_runs(session)


@api.get("/runs/{run_id}", summary="A run and its layers, with index histograms")
def api_run(session: SessionDep, settings: SettingsDep, run_id: RunId) -> dict[str, Any]:
    return _without("no_worker")(run_data(session, run_id, settings.heartbeat_timeout))


@api.post("/runs", summary="Start (or find) a run: returns it and its jobs")
def api_start_run(request: Request, submit: SubmitDep, body: RunBody) -> dict[str, Any]:
    check_write_access(request)
    return submit_run(submit, lambda session: start_run(session, body))


@api.post(
    "/runs/estimate",
    summary="Measure what a run would cost (a worker's short trial): returns the job, whose "
    "result holds each stage's time and disk",
)
def api_estimate(request: Request, submit: SubmitDep, body: RunBody) -> dict[str, Any]:
    check_write_access(request)
    return submit.job(lambda session: estimate_cost(session, body))


@api.post("/runs/{run_id}/resume", summary="Queue a failed or cancelled run again")
def api_resume_run(request: Request, submit: SubmitDep, run_id: RunId) -> dict[str, Any]:
    check_write_access(request)
    return submit_run(submit, lambda session: resume_run(session, run_id))


@api.post("/runs/{run_id}/cancel", summary="Cancel a run's unfinished jobs")
def api_cancel_run(request: Request, run_id: RunId) -> dict[str, Any]:
    check_write_access(request)
    with request.app.state.database.session() as session:
        return {"run": run_id, "status": cancel_run(session, run_id)}
