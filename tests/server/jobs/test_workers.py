"""Real worker processes: killed mid-sweep, cancelled mid-job, and two at once on PostgreSQL.

The model sleeps 0.5 s per batch (``tests.support.models:slow_red_detector``) so that a sweep
is still running when the test kills or cancels it.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from server.jobs.read import list_workers
from server.storage.db import Database
from tests.support.images import write_square_folder
from tests.support.jobs import (
    SLOW_MODEL_ARGS,
    assert_same_results,
    cli,
    environment,
    jobs,
    run_results,
    run_status,
    settings_for,
    start_worker,
    stop_workers,
    wait_for,
)
from tests.support.web import web_client

QUEUE = ("--workers", "0", "--batch-size", "4", "--json", "--queue")


@pytest.fixture(scope="module")
def slow_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_square_folder(tmp_path_factory.mktemp("slow") / "squares", per_class=16)


@pytest.fixture(scope="module")
def reference(slow_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The same analysis computed in one process, unsharded and uninterrupted."""
    data_dir = tmp_path_factory.mktemp("reference")
    env = environment(data_dir)
    done = cli(env, "analyze", *SLOW_MODEL_ARGS, "--data", str(slow_folder), *QUEUE[:-1])
    return run_results(settings_for(data_dir), json.loads(done)["run"])


def running_sweep(settings, worker: str):
    """A sweep job that ``worker`` is part-way through, if there is one."""
    for job in jobs(settings):
        if (job.kind, job.status, job.worker) == ("sweep", "running", worker) and job.progress > 0:
            return job
    return None


def test_a_killed_worker_s_job_is_finished_by_another_with_identical_results(
    slow_folder, reference, tmp_path
):
    env = environment(tmp_path / "data", timeout=2.0)
    settings = settings_for(tmp_path / "data")
    queued = json.loads(
        cli(env, "analyze", *SLOW_MODEL_ARGS, "--data", str(slow_folder), *QUEUE, "--shards", "2")
    )
    first = start_worker(env, "first", tmp_path / "first.log")
    second = None
    try:
        victim = wait_for(lambda: running_sweep(settings, "first"), "a sweep in progress")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        assert jobs(settings)[victim.id - 1].status == "running"  # orphaned, not done
        assert run_status(settings, queued["run"]) == "running"
        with web_client(settings) as web:  # the dashboard serves on regardless
            listed = web.get(f"/jobs.json?run={queued['run']}").json()["jobs"]
            assert {job["status"] for job in listed} >= {"running"}
            assert web.get(f"/runs/{queued['run']}").status_code == 200

        second = start_worker(env, "second", tmp_path / "second.log")
        wait_for(lambda: run_status(settings, queued["run"]) == "done", "the run to finish")
        with Database(settings.database_url).session() as session:
            states = {w["name"]: w["state"] for w in list_workers(session, timeout=2.0)}
        assert states == {"first": "silent", "second": "alive"}
    finally:
        stop_workers(first, *([second] if second else []))
    retried = jobs(settings)[victim.id - 1]
    assert retried.status == "done" and retried.attempts == 2 and retried.worker == "second"
    assert all(job.status == "done" for job in jobs(settings))
    assert_same_results(run_results(settings, queued["run"]), reference)


def test_cancelling_a_running_job_stops_it_and_the_worker_goes_on(slow_folder, tmp_path):
    env = environment(tmp_path / "data")
    settings = settings_for(tmp_path / "data")
    analyze = ("analyze", *SLOW_MODEL_ARGS, "--data", str(slow_folder), *QUEUE)
    queued = json.loads(cli(env, *analyze))
    worker = start_worker(env, "only", tmp_path / "worker.log")
    try:
        job = wait_for(lambda: running_sweep(settings, "only"), "a sweep in progress")
        assert "cancel" in cli(env, "cancel", str(job.id))
        wait_for(lambda: jobs(settings)[job.id - 1].status == "cancelled", "the cancel")
        assert run_status(settings, queued["run"]) == "cancelled"
        assert worker.poll() is None  # the worker is still up ...

        other = json.loads(cli(env, *analyze, "--top-k", "3"))  # ... and takes new work
        wait_for(lambda: run_status(settings, other["run"]) == "done", "the next run")
    finally:
        stop_workers(worker)
    assert not list((tmp_path / "data" / "artifacts").glob("*/.partial-*"))
    assert "Traceback" not in (tmp_path / "worker.log").read_text()


def test_two_workers_on_postgresql_share_a_sharded_run_exactly(
    slow_folder, reference, tmp_path, postgres_url
):
    env = environment(tmp_path / "shared", database_url=postgres_url)
    settings = settings_for(tmp_path / "shared", postgres_url)
    # No schema yet: the two workers race to create it (a migration lock serialises them).
    logs = {name: tmp_path / f"{name}.log" for name in ("alpha", "beta")}
    workers = [start_worker(env, name, log) for name, log in logs.items()]
    try:
        for log in logs.values():
            wait_for(lambda log=log: "ready" in log.read_text(), f"{log.stem} to start", 60)
        queued = json.loads(
            cli(
                env,
                "analyze",
                *SLOW_MODEL_ARGS,
                "--data",
                str(slow_folder),
                *QUEUE,
                "--shards",
                "6",
            )
        )
        wait_for(lambda: run_status(settings, queued["run"]) == "done", "the run to finish")
    finally:
        stop_workers(*workers)
    finished = jobs(settings)
    assert [job.kind for job in finished] == ["sweep"] * 6 + ["merge"]
    assert all(job.status == "done" and job.attempts == 1 for job in finished)
    assert {job.worker for job in finished if job.kind == "sweep"} == {"alpha", "beta"}
    started = [
        line.split(" job ", 1)[1].split()[0]
        for log in logs.values()
        for line in log.read_text().splitlines()
        if ": started (attempt" in line
    ]
    assert sorted(started, key=int) == [str(job.id) for job in finished]  # each ran once
    assert_same_results(run_results(settings, queued["run"]), reference)


def test_a_stopped_worker_puts_its_job_back_at_once(slow_folder, tmp_path):
    env = environment(tmp_path / "data", timeout=600.0)  # no help from the heartbeat timeout
    settings = settings_for(tmp_path / "data")
    cli(env, "analyze", *SLOW_MODEL_ARGS, "--data", str(slow_folder), *QUEUE)
    worker = start_worker(env, "leaving", tmp_path / "worker.log")
    try:
        job = wait_for(lambda: running_sweep(settings, "leaving"), "a sweep in progress")
        worker.terminate()  # SIGTERM, as docker stop and the demo send
        assert worker.wait(timeout=30) == 0
    finally:
        stop_workers(worker)
    requeued = jobs(settings)[job.id - 1]
    assert requeued.status == "queued" and "stopped; re-queued" in requeued.message
