"""Jobs and workers as plain data: what ``neuronscope jobs``, the API and the jobs pages show."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.storage.errors import NotFoundError
from server.storage.schema import JOB_ACTIVE, Job, Worker


def job_record(job: Job) -> dict[str, Any]:
    """A job as the CLI, the JSON API and the jobs page show it."""
    return {
        "id": job.id,
        "kind": job.kind,
        "status": job.status,
        "progress": round(job.progress, 4),
        "run": job.run_id,
        "params": job.params,
        "message": job.message,
        "error": job.error,
        "result": job.result,
        "worker": job.worker,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "depends_on": job.depends_on,
        "heartbeat": job.heartbeat.isoformat() if job.heartbeat else None,
        "created": job.created.isoformat(),
        "started": job.started.isoformat() if job.started else None,
        "finished": job.finished.isoformat() if job.finished else None,
    }


def list_jobs(
    session: Session, run_id: int | None = None, active: bool = False, limit: int = 200
) -> list[dict[str, Any]]:
    """Newest first; ``active`` keeps only jobs that have not finished."""
    query = select(Job).order_by(Job.id.desc()).limit(limit)
    if run_id is not None:
        query = query.where(Job.run_id == run_id)
    if active:
        query = query.where(Job.status.in_(JOB_ACTIVE))
    return [job_record(job) for job in session.scalars(query)]


def get_job(session: Session, job_id: int) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise NotFoundError(f"no job {job_id}")
    return job


def run_stages(session: Session, run_id: int) -> list[dict[str, Any]]:
    """Progress of a run's jobs per stage (sweep shards, merge, indexes), in pipeline order."""
    stages: dict[str, dict[str, Any]] = {}
    for job in session.scalars(select(Job).where(Job.run_id == run_id).order_by(Job.id)):
        stage = stages.setdefault(
            job.kind, {"kind": job.kind, "jobs": 0, "done": 0, "progress": 0.0, "statuses": {}}
        )
        stage["jobs"] += 1
        stage["done"] += job.status == "done"
        stage["progress"] += job.progress
        stage["statuses"][job.status] = stage["statuses"].get(job.status, 0) + 1
        if job.status in ("running", "cancelling") and job.message:
            stage["message"] = job.message
        if job.error and "error" not in stage:
            stage["error"] = job.error.split("\n", 1)[0]
    for stage in stages.values():
        stage["progress"] = round(stage["progress"] / stage["jobs"], 4)
    order = {"sweep": 0, "merge": 1, "indexes": 2, "featureviz": 3, "dream": 4}
    return sorted(stages.values(), key=lambda stage: order.get(stage["kind"], 9))


def list_workers(session: Session, timeout: float) -> list[dict[str, Any]]:
    """Workers seen in the last day, newest first: ``alive`` unless stopped or silent for longer
    than ``timeout``."""
    now = datetime.now(UTC)
    recent = select(Worker).where(Worker.heartbeat > now - timedelta(days=1))
    found = []
    for worker in session.scalars(recent.order_by(Worker.heartbeat.desc()).limit(100)):
        seen = _aware(worker.heartbeat)
        silent = (now - seen).total_seconds()
        state = "stopped" if worker.stopped else ("alive" if silent <= timeout else "silent")
        found.append(
            {
                "name": worker.name,
                "device": worker.device,
                "state": state,
                "job": worker.job_id if state == "alive" else None,
                "started": _aware(worker.started).isoformat(),
                "last_seen": seen.isoformat(),
                "seconds_since_seen": round(silent, 1),
            }
        )
    return found


def last_asked(session: Session, run_id: int, kind: str, params: dict[str, Any]) -> dict | None:
    """The newest unfinished or failed job of ``kind`` asked of a run with exactly ``params``:
    what a page shows while the answer is being computed, or why it could not be."""
    found = session.scalars(
        select(Job)
        .where(Job.run_id == run_id, Job.kind == kind, Job.status.in_((*JOB_ACTIVE, "failed")))
        .order_by(Job.id)
    )
    matching = [job for job in found if job.params == params]
    return job_record(matching[-1]) if matching else None


def workers_alive(session: Session, timeout: float) -> bool:
    """Whether any worker reported in within ``timeout`` seconds and has not stopped."""
    cutoff = datetime.now(UTC) - timedelta(seconds=timeout)
    alive = select(Worker.name).where(Worker.heartbeat > cutoff, Worker.stopped.is_(None))
    return session.scalar(alive.limit(1)) is not None


def _aware(moment: datetime) -> datetime:
    """SQLite gives back naive datetimes; everything we store is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
