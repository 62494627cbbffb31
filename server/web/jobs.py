"""Background jobs in the browser and the API: the list with the workers that reported in, one
job with its error, cancelling. Pages that show unfinished work poll themselves through htmx."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.orm import Session

from server.jobs.read import get_job, job_record, list_jobs, list_workers
from server.jobs.state import request_cancel
from server.storage.errors import NotFoundError
from server.storage.schema import JOB_ACTIVE
from server.web.deps import MAX_ID, JobId, JobRef, SessionDep, SettingsDep
from server.web.errors import RequestError
from server.web.forms import OptionalFormText
from server.web.security import check_write_access, forms_router, see_other
from server.web.twins import Data, Page, page_router

pages = page_router()
forms = forms_router()
api = APIRouter(prefix="/api", tags=["jobs"])

QueryId = Annotated[int, Query(ge=0, le=MAX_ID)]
JOBS = Page(
    "jobs.html",
    partial="_jobs_table.html",
    json=lambda data: {"jobs": data["jobs"], "workers": data["workers"]},
)
JOB = Page("job.html", partial="_job_body.html", json=lambda data: data["job"])


def jobs_data(session: Session, timeout: float, active: bool, run: int | None) -> Data:
    """Jobs newest first (``active``: unfinished only; ``run``: of one run), and the workers."""
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


def not_ready(job: Data | None, what: str) -> Response:
    """What a read-only GET answers for something computed on request that is not stored yet:
    202 while ``job`` computes it, 409 with the reason when its last try failed, 404 when no one
    has asked (the same URL takes a POST to ask)."""
    if job and job["status"] == "failed":
        reason = (job["error"] or "no reason given").split("\n", 1)[0]
        raise RequestError(f"{what} could not be computed: {reason}; POST to try again", 409)
    if job:
        return JSONResponse({"status": job["status"], "job": job["id"]}, status_code=202)
    raise NotFoundError(f"{what} has not been computed; POST to this URL to compute it")


def cancel_job(session: Session, job_id: int) -> dict[str, Any]:
    """Cancel a job (and the rest of its unfinished run); the job as it is now."""
    job = get_job(session, job_id)
    request_cancel(session, job)
    session.flush()
    session.refresh(job)
    return job_record(job)


@pages.get("/jobs")
def jobs_page(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    active: int = 0,
    run: QueryId | None = None,
) -> Response:
    return JOBS.render(request, jobs_data(session, settings.heartbeat_timeout, bool(active), run))


@pages.get("/jobs/{job_id}")
def job_page(request: Request, session: SessionDep, job_id: JobRef) -> Response:
    job = job_record(get_job(session, job_id))
    return JOB.render(request, {"job": job, "polling": job["status"] in JOB_ACTIVE})


@forms.post("/jobs/{job_id}/cancel")
def cancel_job_form(request: Request, job_id: JobId, token: OptionalFormText = None) -> Response:
    check_write_access(request, token)
    with request.app.state.database.session() as session:
        cancel_job(session, job_id)
    return see_other(request, f"/jobs/{job_id}", token)


@api.get("/jobs", summary="Jobs, newest first")
def api_jobs(
    session: SessionDep, active: bool = False, run: QueryId | None = None
) -> list[dict[str, Any]]:
    return list_jobs(session, run_id=run, active=active)


@api.get("/jobs/{job_id}", summary="One job: status, progress, message, error")
def api_job(session: SessionDep, job_id: JobId) -> dict[str, Any]:
    return job_record(get_job(session, job_id))


@api.post("/jobs/{job_id}/cancel", summary="Cancel a job (and the rest of its run)")
def api_cancel_job(request: Request, job_id: JobId) -> dict[str, Any]:
    check_write_access(request)
    with request.app.state.database.session() as session:
        return cancel_job(session, job_id)


@api.get("/workers", summary="Workers seen recently: alive, silent or stopped, and their job")
def api_workers(session: SessionDep, settings: SettingsDep) -> list[dict[str, Any]]:
    return list_workers(session, settings.heartbeat_timeout)
