"""``neuronscope worker``, ``jobs``, ``cancel``: run and watch background work."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import Any

from server.cli.common import open_database
from server.cli.output import print_json, print_table

FINAL_RUN_STATES = ("done", "failed", "cancelled")


def add_commands(commands: Any) -> None:
    worker = commands.add_parser("worker", help="run queued jobs (one worker per GPU)")
    worker.add_argument("--device", help="torch device, e.g. cuda:0 (default $NEURONSCOPE_DEVICE)")
    worker.add_argument(
        "--loader-workers", type=int, help="image-loading processes (default: one per core)"
    )
    worker.add_argument("--name", help="how jobs name this worker (default host:pid:device)")
    worker.set_defaults(handler=run_worker_command)

    jobs = commands.add_parser("jobs", help="list background jobs, newest first")
    jobs.add_argument("--run", type=int, help="only the jobs of this run")
    jobs.add_argument("--active", action="store_true", help="only jobs not yet finished")
    jobs.add_argument("--limit", type=int, default=50)
    jobs.add_argument("--json", action="store_true", help="print a JSON list")
    jobs.set_defaults(handler=run_jobs)

    cancel = commands.add_parser("cancel", help="cancel a job (and the rest of its run)")
    cancel.add_argument("job", type=int)
    cancel.set_defaults(handler=run_cancel)


def run_worker_command(args: argparse.Namespace) -> int:
    from analysis.data import DatasetError
    from server.jobs.worker import WorkerOptions, run_worker

    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("huey").setLevel(logging.WARNING)  # one line per message is noise
    settings, _database, _store = open_database()
    if args.loader_workers is not None and args.loader_workers < 0:
        raise DatasetError("--loader-workers must be 0 or more")
    options = WorkerOptions(
        device=args.device or settings.device, loader_workers=args.loader_workers, name=args.name
    )
    run_worker(settings, options)
    return 0


def run_jobs(args: argparse.Namespace) -> int:
    from server.jobs.read import list_jobs, list_workers

    settings, database, _store = open_database()
    with database.session() as session:
        jobs = list_jobs(session, run_id=args.run, active=args.active, limit=args.limit)
        workers = list_workers(session, settings.heartbeat_timeout)
    if args.json:
        print_json(jobs)
        return 0
    print_table(
        ["id", "kind", "status", "progress", "run", "worker", "attempts", "message"],
        [
            [
                job["id"],
                job["kind"],
                job["status"],
                f"{job['progress']:.0%}",
                job["run"],
                job["worker"],
                job["attempts"],
                (job["error"] or job["message"] or "").split("\n", 1)[0][:70],
            ]
            for job in jobs
        ],
    )
    alive = [w for w in workers if w["state"] == "alive"]
    if alive:
        names = ", ".join(
            f"{w['name']}" + (f" (job {w['job']})" if w["job"] else " (idle)") for w in alive
        )
        print(f"\nworkers: {names}")
    elif any(job["status"] == "queued" for job in jobs):
        print("\nno worker is running; start one with: neuronscope worker")
    return 0


def run_cancel(args: argparse.Namespace) -> int:
    from server.jobs.read import get_job
    from server.jobs.state import request_cancel

    _settings, database, _store = open_database()
    with database.session() as session:
        job = get_job(session, args.job)
        request_cancel(session, job)
    with database.session() as session:
        job = get_job(session, args.job)
        print(f"job {job.id} ({job.kind}): {job.status}")
    return 0


def watch_run(database: Any, run_id: int, enabled: bool = True, poll: float = 0.5) -> str:
    """Terminal bars per stage of a queued run until it ends; returns its final status."""
    from tqdm import tqdm

    from server.jobs.read import run_stages
    from server.runs.read import get_run

    bars: dict[str, tqdm] = {}
    try:
        while True:
            with database.session() as session:
                status = get_run(session, run_id).status
                stages = run_stages(session, run_id)
            for stage in stages if enabled else []:
                label = f"{stage['kind']} ({stage['done']}/{stage['jobs']} jobs)"
                bar = bars.get(stage["kind"])
                if bar is None:
                    bar = bars[stage["kind"]] = tqdm(
                        total=100, desc=label, unit="%", file=sys.stderr, dynamic_ncols=True
                    )
                bar.set_description(label)
                bar.update(round(stage["progress"] * 100) - bar.n)
            if status in FINAL_RUN_STATES:
                return status
            time.sleep(poll)
    finally:
        for bar in bars.values():
            bar.close()


def watch_job(database: Any, job_id: int, enabled: bool = True, poll: float = 0.5) -> str:
    """A terminal bar for one queued job until it ends; returns its final status."""
    from tqdm import tqdm

    from server.jobs.read import get_job
    from server.storage.schema import JOB_FINAL

    bar = tqdm(total=100, desc=f"job {job_id}", unit="%", file=sys.stderr, disable=not enabled)
    try:
        while True:
            with database.session() as session:
                job = get_job(session, job_id)
                status, progress, message = job.status, job.progress, job.message
            bar.update(round(progress * 100) - bar.n)
            if message:
                bar.set_postfix_str(message[:60])
            if status in JOB_FINAL:
                return status
            time.sleep(poll)
    finally:
        bar.close()
