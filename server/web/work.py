"""Background work in the browser and the API: jobs, models, image folders, starting runs.

Reading is open; every POST goes through :func:`server.web.actions.check_write_access`. Forms
post and redirect (they work without JavaScript); pages that show unfinished work poll
themselves through htmx and stop once nothing is left to wait for.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.jobs.read import get_job, job_record, list_jobs, list_workers
from server.jobs.state import stop_run
from server.jobs.submit import submit_work
from server.runs.read import get_run
from server.storage.schema import JOB_ACTIVE, Dataset, Model
from server.web import actions
from server.web.actions import ActionError, ModelRequest, RunRequest, check_write_access
from server.web.deps import MAX_ID, JobRef, RunId, SessionDep
from server.web.render import parse_int, render, split_format

pages = APIRouter(include_in_schema=False)
api = APIRouter(prefix="/api", tags=["jobs"])

QueryId = Annotated[int, Query(ge=0, le=MAX_ID)]
FormText = Annotated[str, Form()]
OptionalFormText = Annotated[str | None, Form()]


# ---- reading ---------------------------------------------------------------------------------


def jobs_data(session: Session, timeout: float, active: bool, run: int | None) -> dict[str, Any]:
    jobs = list_jobs(session, run_id=run, active=active)
    query = "&".join(p for p in ("active=1" if active else "", f"run={run}" if run else "") if p)
    workers = list_workers(session, timeout)
    waiting = any(job["status"] == "queued" for job in jobs)
    return {
        "jobs": jobs,
        "workers": workers,
        "no_worker": waiting and not any(w["state"] == "alive" for w in workers),
        "active": active,
        "polling": any(job["status"] in JOB_ACTIVE for job in jobs),
        "poll_url": "/jobs" + (f"?{query}" if query else ""),
    }


def models_data(session: Session) -> dict[str, Any]:
    models = session.scalars(select(Model).order_by(Model.id.desc())).all()
    return {
        "models": [
            {
                "id": model.id,
                "spec": model.spec,
                "weights": model.weights_path,
                "weights_sha256": model.weights_sha256,
                "input_size": model.input_size,
                "input_shape": list(model.input_shape),
                "input_channels": model.input_channels,
                "mean": model.mean,
                "std": model.std,
                "layers": model.layers or [],
                "created": model.created.isoformat(),
            }
            for model in models
        ]
    }


def datasets_data(session: Session) -> dict[str, Any]:
    datasets = session.scalars(select(Dataset).order_by(Dataset.id.desc())).all()
    return {
        "datasets": [
            {
                "id": dataset.id,
                "root": dataset.root,
                "images": dataset.image_count,
                "classes": dataset.class_count,
                "fingerprint": dataset.fingerprint,
                "created": dataset.created.isoformat(),
            }
            for dataset in datasets
        ]
    }


def _format(request: Request) -> str | None:
    """A listing and its ``.json`` twin share one handler (both paths are registered)."""
    return "json" if request.url.path.endswith(".json") else None


def _timeout(request: Request) -> float:
    return request.app.state.settings.heartbeat_timeout


@pages.get("/jobs")
@pages.get("/jobs.json")
async def jobs_page(
    request: Request, session: SessionDep, active: int = 0, run: QueryId | None = None
) -> Response:
    data = jobs_data(session, _timeout(request), bool(active), run)
    if _format(request) == "json":
        data = {"jobs": data["jobs"], "workers": data["workers"]}
    return render(request, "jobs.html", data, _format(request), partial="_jobs_table.html")


@pages.get("/jobs/{job_ref}")
async def job_page(request: Request, session: SessionDep, job_ref: str) -> Response:
    stem, fmt = split_format(job_ref)
    job = job_record(get_job(session, parse_int(stem, "a job id")))
    if fmt == "json":
        return render(request, "job.html", job, "json")
    data = {"job": job, "polling": job["status"] in JOB_ACTIVE}
    return render(request, "job.html", data, fmt, partial="_job_body.html")


@pages.get("/models")
@pages.get("/models.json")
async def models_page(request: Request, session: SessionDep) -> Response:
    return render(request, "models.html", models_data(session), _format(request))


@pages.get("/datasets")
@pages.get("/datasets.json")
async def datasets_page(request: Request, session: SessionDep) -> Response:
    return render(request, "datasets.html", datasets_data(session), _format(request))


@pages.get("/runs/new")
async def new_run_page(
    request: Request,
    session: SessionDep,
    model: QueryId | None = None,
    dataset: QueryId | None = None,
) -> Response:
    models = [m for m in models_data(session)["models"] if m["layers"]]
    chosen = next((m for m in models if m["id"] == model), models[0] if models else None)
    data = {
        "models": models,
        "datasets": datasets_data(session)["datasets"],
        "chosen_model": chosen,
        "chosen_dataset": dataset,
    }
    return render(request, "new_run.html", data, None)


# ---- changing (forms) ------------------------------------------------------------------------


@pages.post("/models")
async def register_model_form(
    request: Request,
    spec: FormText,
    weights: OptionalFormText = None,
    input_size: OptionalFormText = None,
    mean: OptionalFormText = None,
    std: OptionalFormText = None,
    token: OptionalFormText = None,
) -> Response:
    check_write_access(request, token)
    model = ModelRequest(
        spec=spec,
        weights=weights,
        input_size=_optional_size(input_size),
        mean=_optional_numbers(mean, "mean"),
        std=_optional_numbers(std, "std"),
    )
    settings = request.app.state.settings
    job = actions.submit_single(
        request, lambda session: actions.register_model(session, settings, model)
    )
    return actions.see_other(request, f"/jobs/{job['id']}", token)


@pages.post("/datasets")
async def register_dataset_form(
    request: Request, path: FormText, token: OptionalFormText = None
) -> Response:
    check_write_access(request, token)
    settings = request.app.state.settings
    job = actions.submit_single(
        request, lambda session: actions.register_dataset(session, settings, path)
    )
    return actions.see_other(request, f"/jobs/{job['id']}", token)


@pages.post("/runs")
async def start_run_form(
    request: Request,
    model: FormText,
    dataset: FormText,
    layers: Annotated[list[str] | None, Form()] = None,
    top_k: FormText = "100",
    resize: FormText = "whole",
    jpeg_draft: OptionalFormText = None,
    shards: FormText = "1",
    batch_size: FormText = "64",
    indexes: OptionalFormText = None,
    featureviz: OptionalFormText = None,
    token: OptionalFormText = None,
) -> Response:
    check_write_access(request, token)
    run = RunRequest(
        model=_required_int(model, "the model"),
        dataset=_required_int(dataset, "the image folder"),
        layers=list(layers or []),
        top_k=_required_int(top_k, "top-K"),
        resize=resize,
        jpeg_draft=bool(jpeg_draft),
        shards=_required_int(shards, "the number of shards"),
        batch_size=_required_int(batch_size, "the batch size"),
        indexes=bool(indexes),
        featureviz=bool(featureviz),
    )
    run_id = _submit_run(request, lambda session: actions.start_run(session, run))["run"]
    return actions.see_other(request, f"/runs/{run_id}", token)


@pages.post("/jobs/{job_id}/cancel")
async def cancel_job_form(
    request: Request, job_id: JobRef, token: OptionalFormText = None
) -> Response:
    check_write_access(request, token)
    with request.app.state.database.session() as session:
        actions.cancel_job(session, job_id)
    return actions.see_other(request, f"/jobs/{job_id}", token)


@pages.post("/runs/{run_id}/cancel")
async def cancel_run_form(
    request: Request, run_id: RunId, token: OptionalFormText = None
) -> Response:
    check_write_access(request, token)
    _cancel_run(request, run_id)
    return actions.see_other(request, f"/runs/{run_id}", token)


@pages.post("/runs/{run_id}/resume")
async def resume_run_form(
    request: Request, run_id: RunId, token: OptionalFormText = None
) -> Response:
    check_write_access(request, token)
    _submit_run(request, lambda session: actions.resume_run(session, run_id))
    return actions.see_other(request, f"/runs/{run_id}", token)


def _submit_run(request: Request, action: Callable[[Session], Any]) -> dict[str, Any]:
    """Plan a run's jobs with ``action`` (start or resume), commit, send; the run and its jobs."""

    def plan(session: Session) -> tuple[dict[str, Any], list[int]]:
        run_id, jobs, to_send = action(session)
        return {"run": run_id, "jobs": [job_record(job) for job in jobs]}, to_send

    return submit_work(request.app.state.database, request.app.state.queue, plan)


def _cancel_run(request: Request, run_id: int) -> None:
    with request.app.state.database.session() as session:
        run = get_run(session, run_id)
        if run.status in ("pending", "queued", "running"):
            stop_run(session, run.id, "cancelled", "cancelled from the browser")


def _required_int(text: str, what: str) -> int:
    value = _optional_int(text, what)
    if value is None:
        raise ActionError(f"give {what}")
    return value


def _optional_int(text: str | None, what: str) -> int | None:
    if text is None or not text.strip():
        return None
    if not text.strip().isdigit() or int(text) > MAX_ID:
        raise ActionError(f"{what} must be a whole number, not {text!r}")
    return int(text)


def _optional_size(text: str | None) -> list[int] | None:
    """``"224"`` or ``"256,128"`` (height, width) as [height, width]."""
    if text is None or not text.strip():
        return None
    parts = text.replace(" ", "").replace("x", ",").split(",")
    if len(parts) not in (1, 2) or not all(part.isdigit() and len(part) < 6 for part in parts):
        raise ActionError(f"the input size must be N or H,W in pixels, not {text!r}")
    values = [int(part) for part in parts]
    return values * 2 if len(values) == 1 else values


def _optional_numbers(text: str | None, what: str) -> list[float] | None:
    if text is None or not text.strip():
        return None
    try:
        values = [float(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise ActionError(f"{what} must be three numbers R,G,B or one, not {text!r}") from None
    if len(values) not in (1, 3) or any(v != v or abs(v) == float("inf") for v in values):
        raise ActionError(f"{what} must be three numbers R,G,B or one, not {text!r}")
    return values


# ---- the JSON API ----------------------------------------------------------------------------


class ModelBody(BaseModel):
    spec: str = Field(max_length=500, description="torchvision:NAME, a .pt2 file, or a known spec")
    weights: str | None = Field(None, max_length=1000, description="weights file on the server")
    input_size: int | list[int] | None = Field(
        None, description="N (square) or [height, width], 8 to 4096 pixels"
    )
    mean: list[float] | None = Field(None, min_length=1, max_length=3, description="R,G,B or grey")
    std: list[float] | None = Field(None, min_length=1, max_length=3, description="R,G,B or grey")


class DatasetBody(BaseModel):
    path: str = Field(max_length=1000, description="an image folder on the server")


class RunBody(BaseModel):
    model: int = Field(ge=0, le=MAX_ID)
    dataset: int = Field(ge=0, le=MAX_ID)
    layers: list[str] = Field(default_factory=list, description="default: every conv activation")
    top_k: int = Field(100, ge=1, le=actions.MAX_TOP_K)
    resize: str = Field("whole", pattern="^(whole|center-crop)$")
    jpeg_draft: bool = Field(
        False,
        description="decode JPEGs at the smallest DCT scale that covers the input size "
        "(several times faster on camera photos; pixels differ slightly from a full decode)",
    )
    shards: int = Field(1, ge=1, le=actions.MAX_SHARDS)
    batch_size: int = Field(64, ge=1, le=4096)
    indexes: bool = True
    featureviz: bool = Field(False, description="render a visualisation of every neuron too")


@api.get("/jobs", summary="Jobs, newest first")
async def api_jobs(
    session: SessionDep, active: bool = False, run: QueryId | None = None
) -> list[dict[str, Any]]:
    return list_jobs(session, run_id=run, active=active)


@api.get("/jobs/{job_id}", summary="One job: status, progress, message, error")
async def api_job(session: SessionDep, job_id: JobRef) -> dict[str, Any]:
    return job_record(get_job(session, job_id))


@api.post("/jobs/{job_id}/cancel", summary="Cancel a job (and the rest of its run)")
async def api_cancel_job(request: Request, job_id: JobRef) -> dict[str, Any]:
    check_write_access(request)
    with request.app.state.database.session() as session:
        return actions.cancel_job(session, job_id)


@api.get("/workers", summary="Workers seen recently: alive, silent or stopped, and their job")
async def api_workers(request: Request, session: SessionDep) -> list[dict[str, Any]]:
    return list_workers(session, _timeout(request))


@api.get("/models", summary="Registered models with their layers")
async def api_models(session: SessionDep) -> list[dict[str, Any]]:
    return models_data(session)["models"]


@api.post("/models", summary="Register a model (a worker loads it): returns the job")
async def api_register_model(request: Request, body: ModelBody) -> dict[str, Any]:
    check_write_access(request)
    settings = request.app.state.settings
    model = ModelRequest(**body.model_dump())
    return actions.submit_single(
        request, lambda session: actions.register_model(session, settings, model)
    )


@api.get("/datasets", summary="Registered image folders")
async def api_datasets(session: SessionDep) -> list[dict[str, Any]]:
    return datasets_data(session)["datasets"]


@api.post("/datasets", summary="Register an image folder (a worker scans it): returns the job")
async def api_register_dataset(request: Request, body: DatasetBody) -> dict[str, Any]:
    check_write_access(request)
    settings = request.app.state.settings
    return actions.submit_single(
        request, lambda session: actions.register_dataset(session, settings, body.path)
    )


@api.post("/runs", summary="Start (or find) a run: returns it and its jobs")
async def api_start_run(request: Request, body: RunBody) -> dict[str, Any]:
    check_write_access(request)
    run = RunRequest(**body.model_dump())
    return _submit_run(request, lambda session: actions.start_run(session, run))


@api.post("/runs/{run_id}/resume", summary="Queue a failed or cancelled run again")
async def api_resume_run(request: Request, run_id: RunId) -> dict[str, Any]:
    check_write_access(request)
    return _submit_run(request, lambda session: actions.resume_run(session, run_id))


@api.post("/runs/{run_id}/cancel", summary="Cancel a run's unfinished jobs")
async def api_cancel_run(request: Request, run_id: RunId) -> dict[str, Any]:
    check_write_access(request)
    _cancel_run(request, run_id)
    with request.app.state.database.session() as session:
        return {"run": run_id, "status": get_run(session, run_id).status}
