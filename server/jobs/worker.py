"""The worker process: a Huey consumer with one job thread, a heartbeat per job, and a reaper.

One worker per GPU. The consumer runs jobs on a thread, never in forked children, so the process
that initialises CUDA never forks (the sweep's image loaders come from a forkserver on a GPU).
The reaper, which every worker runs, gives back the jobs of workers that stopped heart-beating
and re-sends messages the queue lost; its updates are conditional, so many reapers agree.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from server.config import Settings
from server.jobs import state
from server.jobs.queue import JobQueue, create_huey
from server.jobs.runner import JobRunner
from server.runs.stages import AnalysisSettings
from server.storage.artifacts import ArtifactStore
from server.storage.db import Database
from server.storage.schema import utcnow

log = logging.getLogger("neuronscope.worker")


@dataclass(frozen=True)
class WorkerOptions:
    device: str = "cpu"
    loader_workers: int | None = None  # None: one per core (analysis.sweep.loader_workers)
    name: str | None = None

    def worker_name(self) -> str:
        return self.name or f"{socket.gethostname()}:{os.getpid()}:{self.device}"


class Reaper:
    """Every few seconds: report this worker alive, re-queue jobs of dead workers, re-send lost
    messages, release jobs whose dependencies finished (if the worker that finished them died
    before doing so)."""

    def __init__(
        self,
        database: Database,
        queue: JobQueue,
        timeout: float,
        worker: tuple[str, str],
        current_job: Callable[[], int | None],
    ) -> None:
        self.database = database
        self.queue = queue
        self.timeout = timedelta(seconds=timeout)
        self.name, self.device = worker
        self.current_job = current_job
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="reaper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        interval = min(max(self.timeout.total_seconds() / 3, 0.5), 5.0)
        while not self._stop.wait(interval):
            try:
                self.sweep_once()
            except Exception:
                log.warning("reaper pass failed; trying again", exc_info=True)

    def sweep_once(self) -> list[int]:
        with self.database.session() as session:
            state.report_worker(session, self.name, self.device, self.current_job())
        with self.database.session() as session:
            requeued = state.requeue_stale(session, self.timeout)
        with self.database.session() as session:
            released = state.release_ready(session)
            state.finish_complete_runs(session)
            lost = state.queued_without_message(
                session, self.queue.pending_job_ids, utcnow() - self.timeout
            )
        for job_id in requeued:
            log.warning("job %s: its worker stopped heart-beating; re-queued", job_id)
        resend = requeued + released + lost
        self.queue.send(resend)
        return resend


def run_worker(settings: Settings, options: WorkerOptions) -> None:
    """Serve jobs until SIGINT (finish the current job first) or SIGTERM (put it back)."""
    name = options.worker_name()
    database = Database(settings.database_url)
    huey = create_huey(settings)
    store = ArtifactStore(settings.artifact_dir)
    swept = store.sweep_partials()
    if swept:
        log.info("removed %d temporary files of writers that died mid-write", swept)
    runner = JobRunner(
        database=database,
        store=store,
        settings=AnalysisSettings(device=options.device, workers=options.loader_workers),
        worker=name,
        # Often enough for live progress bars, and well inside the timeout.
        heartbeat_interval=min(max(settings.heartbeat_timeout / 6, 0.2), 1.0),
        send=lambda ids: None,
    )
    queue = JobQueue(huey, runner)
    runner.send = queue.send
    reaper = Reaper(
        database,
        queue,
        settings.heartbeat_timeout,
        (name, options.device),
        lambda: runner.current_job,
    )
    reaper.sweep_once()
    reaper.start()
    consumer = huey.create_consumer(
        workers=1, worker_type="thread", periodic=False, max_delay=1.0, check_worker_health=True
    )
    log.info("worker %s ready (device %s, queue %s)", name, options.device, type(huey).__name__)
    try:
        consumer.run()
    finally:
        reaper.stop()
        give_back_jobs(database, queue, name)
        with database.session() as session:
            state.report_worker_stopped(session, name)


def give_back_jobs(database: Database, queue: JobQueue, worker: str) -> None:
    """Put this worker's unfinished jobs back on the queue at once, rather than after the
    heartbeat timeout: a stopping worker should not delay anyone."""
    with database.session() as session:
        ids = state.give_back(session, worker)
    if ids:
        log.info("gave back job(s) %s", ", ".join(map(str, ids)))
        queue.send(ids)
