"""The job table's state machine.

Every transition is one conditional UPDATE (``... WHERE status = 'queued'``), so when two workers,
a reaper and a cancel race for the same row, exactly one of them wins and the others see that
they lost. Callers commit; functions that hand out work return the ids to send to the queue.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from server.storage.schema import JOB_ACTIVE, Job, Run, Worker, utcnow

REVIVABLE = ("failed", "cancelled")


@dataclass(frozen=True)
class JobSpec:
    """A job to submit. ``identity`` (with ``kind``) names the work: the same work is one job."""

    kind: str
    identity: Any
    params: dict[str, Any] = field(default_factory=dict)
    run_id: int | None = None
    depends_on: tuple[int, ...] = ()
    max_attempts: int = 3
    # Work that looks at files which may have changed (registering a model or a folder) runs
    # again when asked again after it finished; a finished analysis job never does.
    repeatable: bool = False

    @property
    def key(self) -> str:
        payload = json.dumps([self.kind, self.identity], sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()


def submit(session: Session, spec: JobSpec) -> tuple[Job, bool]:
    """The job for ``spec``, created or found; and whether it now needs a queue message.

    A job found failed or cancelled is revived (the user asked for the work again), and so is a
    finished ``repeatable`` one; otherwise a job found waiting, queued, running or done is
    returned as it is. A concurrent insert of the same key raises ``IntegrityError`` on flush:
    the caller retries, and then finds the row.
    """
    job = session.scalar(select(Job).where(Job.key == spec.key))
    ready = dependencies_done(session, spec.depends_on)
    if job is None:
        job = Job(
            key=spec.key,
            kind=spec.kind,
            params=spec.params,
            run_id=spec.run_id,
            depends_on=list(spec.depends_on),
            status="queued" if ready else "waiting",
            max_attempts=spec.max_attempts,
            queued=utcnow() if ready else None,
            progress=0.0,
            attempts=0,
            result={},
        )
        session.add(job)
        session.flush()
        return job, ready
    if job.status in REVIVABLE or (spec.repeatable and job.status == "done"):
        job.status = "queued" if ready else "waiting"
        job.queued = utcnow() if ready else None
        job.depends_on = list(spec.depends_on)
        job.attempts = 0
        job.progress = 0.0
        job.error = None
        job.worker = None
        job.lease = None
        job.finished = None
        job.result = {}
        job.message = "submitted again"
        session.flush()
        return job, ready
    return job, False


def dependencies_done(session: Session, job_ids: tuple[int, ...] | list[int]) -> bool:
    if not job_ids:
        return True
    done = session.scalar(
        select(func.count()).select_from(Job).where(Job.id.in_(job_ids), Job.status == "done")
    )
    return done == len(set(job_ids))


def claim(session: Session, job_id: int, worker: str) -> str | None:
    """Take a queued job for ``worker``; the lease names this attempt (None: not ours to run)."""
    lease = uuid.uuid4().hex
    now = utcnow()
    taken = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == "queued")
        .values(
            status="running",
            worker=worker,
            lease=lease,
            attempts=Job.attempts + 1,
            started=now,
            heartbeat=now,
            progress=0.0,
            message="started",
        )
    )
    return lease if taken.rowcount == 1 else None


def heartbeat(
    session: Session,
    job_id: int,
    lease: str,
    progress: float | None = None,
    message: str | None = None,
) -> str | None:
    """Prove the attempt alive (and report progress); returns the job's status, or None when
    the lease was lost (the job was re-queued, or cancelled and closed, behind our back)."""
    values: dict[str, Any] = {"heartbeat": utcnow()}
    if progress is not None:
        values["progress"] = min(max(float(progress), 0.0), 1.0)
    if message is not None:
        values["message"] = message[:500]
    row = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.lease == lease, Job.status.in_(("running", "cancelling")))
        .values(**values)
        .returning(Job.status)
    ).first()
    return row[0] if row else None


def close(
    session: Session,
    job_id: int,
    lease: str,
    status: str,
    *,
    result: dict[str, Any] | None = None,
    error: str | None = None,
    message: str | None = None,
) -> bool:
    """End an attempt as ``done``, ``failed`` or ``cancelled``; False if the lease was lost."""
    values: dict[str, Any] = {"status": status, "finished": utcnow(), "lease": None}
    if status == "done":
        values["progress"] = 1.0
        values["result"] = result or {}
    if error is not None:
        values["error"] = error[:4000]
    if message is not None:
        values["message"] = message[:500]
    closed = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.lease == lease, Job.status.in_(("running", "cancelling")))
        .values(**values)
    )
    return closed.rowcount == 1


def release_ready(session: Session, run_id: int | None = None) -> list[int]:
    """Move waiting jobs (of one run, or of all) whose dependencies are all done to the queue."""
    released = []
    waiting = select(Job).where(Job.status == "waiting")
    if run_id is not None:
        waiting = waiting.where(Job.run_id == run_id)
    for job in session.scalars(waiting).all():
        if not dependencies_done(session, job.depends_on):
            continue
        moved = session.execute(
            update(Job)
            .where(Job.id == job.id, Job.status == "waiting")
            .values(status="queued", queued=utcnow(), message="ready")
        )
        if moved.rowcount == 1:
            released.append(job.id)
    return released


def finish_run_if_complete(session: Session, run_id: int) -> None:
    """Mark the run done once every one of its jobs is; index jobs mean it now has indexes."""
    kinds = session.execute(select(Job.kind, Job.status).where(Job.run_id == run_id)).all()
    if not kinds or any(status != "done" for _, status in kinds):
        return
    run = session.get(Run, run_id)
    if run is None:
        return
    has_indexes = any(kind == "indexes" for kind, _ in kinds) or run.stats.get("indexes")
    run.stats = {**run.stats, "indexes": bool(has_indexes)}
    if run.status != "done":
        run.status = "done"
        run.finished = utcnow()


def finish_complete_runs(session: Session) -> None:
    """Finish runs whose last job's worker died between closing the job and finishing the run."""
    open_runs = session.scalars(
        select(Run.id).where(Run.status.in_(("queued", "running")), Run.id.in_(select(Job.run_id)))
    ).all()
    for run_id in open_runs:
        finish_run_if_complete(session, run_id)


def stop_run(session: Session, run_id: int, status: str, reason: str) -> None:
    """Mark a run failed or cancelled, and stop its other jobs: nothing more can finish it.

    A run that is already done stays done, and so do the jobs asked of it since (feature
    visualisations, dreams): each of those stands alone.
    """
    if session.scalar(select(Run.status).where(Run.id == run_id)) == "done":
        return
    session.execute(
        update(Job)
        .where(Job.run_id == run_id, Job.status.in_(("waiting", "queued")))
        .values(status="cancelled", finished=utcnow(), message=reason[:500])
    )
    session.execute(
        update(Job)
        .where(Job.run_id == run_id, Job.status == "running")
        .values(status="cancelling", message=reason[:500])
    )
    session.execute(
        update(Run)
        .where(Run.id == run_id, Run.status != "done")
        .values(status=status, error=reason[:2000] if status == "failed" else None)
    )


def request_cancel(session: Session, job: Job) -> None:
    """Cancel a job: at once if no worker holds it, else at the worker's next check.

    A job of an unfinished run stops the whole run, since the run cannot finish without it; a
    job asked of a finished run stops alone.
    """
    if job.status not in JOB_ACTIVE:
        return
    run_status = session.scalar(select(Run.status).where(Run.id == job.run_id))
    if job.run_id is not None and run_status != "done":
        stop_run(session, job.run_id, "cancelled", f"cancelled (job {job.id})")
        return
    session.execute(
        update(Job)
        .where(Job.id == job.id, Job.status.in_(("waiting", "queued")))
        .values(status="cancelled", finished=utcnow(), message="cancelled")
    )
    session.execute(
        update(Job).where(Job.id == job.id, Job.status == "running").values(status="cancelling")
    )


def give_back(session: Session, worker: str) -> list[int]:
    """Re-queue the jobs ``worker`` is running (it is stopping); returns their ids to send."""
    returned = session.scalars(
        update(Job)
        .where(Job.worker == worker, Job.status == "running")
        .values(
            status="queued",
            lease=None,
            worker=None,
            queued=utcnow(),
            message=f"worker {worker} stopped; re-queued",
        )
        .returning(Job.id)
    )
    return list(returned)


def requeue_stale(session: Session, timeout: timedelta) -> list[int]:
    """Take back jobs whose worker stopped heart-beating (it died): re-queue them, or fail them
    once their attempts are spent. Returns the re-queued ids, which need queue messages."""
    cutoff = utcnow() - timeout
    stale = session.execute(
        select(
            Job.id, Job.lease, Job.status, Job.worker, Job.attempts, Job.max_attempts, Job.run_id
        ).where(Job.status.in_(("running", "cancelling")), Job.heartbeat < cutoff)
    ).all()
    requeued = []
    for job in stale:
        mine = update(Job).where(Job.id == job.id, Job.lease == job.lease)
        lost = f"worker {job.worker} stopped heart-beating"
        if job.status == "cancelling":
            session.execute(
                mine.values(status="cancelled", lease=None, finished=utcnow(), message=lost)
            )
        elif job.attempts < job.max_attempts:
            moved = session.execute(
                mine.values(status="queued", lease=None, worker=None, queued=utcnow(), message=lost)
            )
            if moved.rowcount == 1:
                requeued.append(job.id)
        else:
            error = f"{lost}; gave up after {job.attempts} attempts"
            failed = session.execute(
                mine.values(status="failed", lease=None, finished=utcnow(), error=error)
            )
            if failed.rowcount == 1 and job.run_id is not None:
                stop_run(session, job.run_id, "failed", f"job {job.id}: {error}")
    return requeued


def queued_without_message(
    session: Session, pending: Callable[[], set[int]], older_than: datetime
) -> list[int]:
    """Queued jobs the queue has no message for (a worker died between taking the message and
    claiming the job, or a sender died between committing and sending). ``pending`` reads the
    queue's messages, which is only worth doing when some job has waited that long."""
    queued = session.scalars(
        select(Job.id).where(Job.status == "queued", Job.queued < older_than)
    ).all()
    if not queued:
        return []
    waiting = pending()
    return [job_id for job_id in queued if job_id not in waiting]


def report_worker(session: Session, name: str, device: str, job_id: int | None) -> None:
    """Record that worker ``name`` is alive (and what it is running)."""
    worker = session.get(Worker, name)
    if worker is None:
        session.add(Worker(name=name, device=device, job_id=job_id))
        return
    if worker.stopped is not None:  # the same name started again
        worker.started, worker.stopped = utcnow(), None
    worker.heartbeat, worker.job_id, worker.device = utcnow(), job_id, device


def report_worker_stopped(session: Session, name: str) -> None:
    session.execute(update(Worker).where(Worker.name == name).values(stopped=utcnow(), job_id=None))
