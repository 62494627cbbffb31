"""Run one job in a worker: claim it, keep its heartbeat, report progress, record the outcome.

The heartbeat runs on its own thread, so a long step without progress calls (loading a model,
storing a layer) never looks like a dead worker. It also carries progress to the database (at
most once per beat, whatever the compute loop's pace) and brings back a cancel request, which the
compute loop notices at its next progress call.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from sqlalchemy import update

from server.jobs import state
from server.jobs.context import JobContext
from server.jobs.handlers import HANDLERS
from server.runs.inputs import ModelCache
from server.runs.stages import AnalysisSettings
from server.storage.artifacts import ArtifactStore
from server.storage.db import Database
from server.storage.schema import Job, Run

log = logging.getLogger("neuronscope.worker")


class JobCancelledError(Exception):
    """Raised in the compute loop when someone asked to cancel the job."""


class LeaseLostError(Exception):
    """Raised in the compute loop when the job was taken from this worker (it was presumed dead)."""


class LeaseMonitor:
    """The heartbeat thread of one attempt."""

    def __init__(self, database: Database, job_id: int, lease: str, interval: float) -> None:
        self.database = database
        self.job_id = job_id
        self.lease = lease
        self.interval = interval
        self.cancelled = threading.Event()
        self.lost = threading.Event()
        self.progress: float | None = None
        self.message: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{job_id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                with self.database.session() as session:
                    status = state.heartbeat(
                        session, self.job_id, self.lease, self.progress, self.message
                    )
            except Exception:  # a database hiccup: try again next beat
                log.warning("job %s: heartbeat failed", self.job_id, exc_info=True)
                continue
            if status is None:
                self.lost.set()
            elif status == "cancelling":
                self.cancelled.set()


class JobProgress:
    """The pipeline's Progress for a job: stages map to a message, counts to a fraction."""

    def __init__(self, monitor: LeaseMonitor) -> None:
        self.monitor = monitor
        self._stage = ""
        self._total = 1
        self._unit = ""
        self._note = ""
        self._started = time.perf_counter()

    def start(self, stage: str, total: int, unit: str = "") -> None:
        self._stage, self._total, self._unit = stage, max(total, 1), f" {unit}" if unit else ""
        self._started = time.perf_counter()
        self.update(0)

    def update(self, done: int) -> None:
        if self.monitor.lost.is_set():
            raise LeaseLostError()
        if self.monitor.cancelled.is_set():
            raise JobCancelledError()
        self.monitor.progress = min(done / self._total, 1.0)
        self.monitor.message = (
            f"{self._stage}: {done:,} of {self._total:,}{self._unit}{self._pace(done)}"
            + (f"\n{self._note}" if self._note else "")
        )

    def note(self, text: str) -> None:
        """Kept under every later message of the job (the line a user should not miss)."""
        self._note = text
        self.monitor.message = text

    def _pace(self, done: int) -> str:
        """Items per second and the time left, so a user sees which stage is slow."""
        seconds = time.perf_counter() - self._started
        if done <= 0 or seconds < 0.5:
            return ""
        rate = done / seconds
        left = (self._total - done) / rate
        return f" · {rate:,.1f}{self._unit}/s · {_clock(left)} left" if done < self._total else ""

    def finish(self) -> None:
        self.update(self._total)


@dataclass
class JobRunner:
    """Runs the jobs a worker receives; ``send`` queues messages for jobs this one released."""

    database: Database
    store: ArtifactStore
    settings: AnalysisSettings
    worker: str
    heartbeat_interval: float
    send: Callable[[Iterable[int]], None]
    current_job: int | None = None
    models: ModelCache = field(default_factory=ModelCache)

    def __call__(self, job_id: int) -> None:
        with self.database.session() as session:
            lease = state.claim(session, job_id, self.worker)
            job = session.get(Job, job_id)
            if lease is None or job is None:
                log.info("job %s is not queued (%s); skipped", job_id, job and job.status)
                return
            if job.run_id is not None:
                session.execute(
                    update(Run)
                    .where(Run.id == job.run_id, Run.status.in_(("pending", "queued")))
                    .values(status="running")
                )
            session.expunge(job)
        log.info("job %s %s %s: started (attempt %s)", job.id, job.kind, job.params, job.attempts)
        started = time.perf_counter()
        monitor = LeaseMonitor(self.database, job.id, lease, self.heartbeat_interval)
        monitor.start()
        self.current_job = job.id
        try:
            context = JobContext(
                job, self.database, self.store, self.settings, JobProgress(monitor), self.models
            )
            result = HANDLERS[job.kind](context)
        except JobCancelledError:
            self._close(job, lease, "cancelled", message="cancelled")
            log.info("job %s: cancelled", job.id)
        except LeaseLostError:
            log.warning("job %s: taken over by another worker; stopped", job.id)
        except Exception as error:
            self._fail(job, lease, error)
        else:
            seconds = time.perf_counter() - started
            self._succeed(job, lease, result, f"done in {seconds:.1f} s")
            log.info("job %s: done in %.1f s", job.id, seconds)
        finally:
            self.current_job = None
            monitor.stop()
            _release_device_memory()

    def _close(self, job: Job, lease: str, status: str, **fields: str | None) -> None:
        with self.database.session() as session:
            state.close(session, job.id, lease, status, **fields)

    def _fail(self, job: Job, lease: str, error: Exception) -> None:
        summary = f"{type(error).__name__}: {error}"
        log.error("job %s failed: %s", job.id, summary, exc_info=error)
        message = str(error) if _explained(error) else summary
        if not _explained(error):  # a bug: the last frames help whoever reports it
            message += "\n\n" + "".join(traceback.format_exception(error)[-6:])
        with self.database.session() as session:
            closed = state.close(session, job.id, lease, "failed", error=message)
            if closed and job.run_id is not None:
                state.stop_run(session, job.run_id, "failed", f"{job.kind} job {job.id}: {summary}")

    def _succeed(self, job: Job, lease: str, result: dict, message: str) -> None:
        with self.database.session() as session:
            if not state.close(session, job.id, lease, "done", result=result, message=message):
                return
        if job.run_id is None:
            return
        # A second transaction, after the first committed: of two jobs finishing at once, each
        # would otherwise see the other still running, and neither would move the run on.
        with self.database.session() as session:
            released = state.release_ready(session, job.run_id)
            state.finish_run_if_complete(session, job.run_id)
        self.send(released)


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


def _explained(error: Exception) -> bool:
    """Our own errors (a bad model, folder, layer or input) carry a sentence for the user; the
    job shows that sentence alone, as the CLI does, and no traceback."""
    return type(error).__module__.split(".")[0] in ("analysis", "server")


def _release_device_memory() -> None:
    """Hand cached GPU memory back after each job, so that one job's peak (or an out-of-memory
    failure) does not squeeze the next. Only when torch is loaded and CUDA is in use."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        torch.cuda.empty_cache()
