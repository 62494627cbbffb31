"""Jobs in one process: queueing, de-duplication, sharded runs, failures, cancels, stale leases."""

from __future__ import annotations

import json
import pickle
import threading
import time
from datetime import timedelta

import pytest
from huey.registry import Message
from sqlalchemy import update

from server.cli.main import main
from server.jobs import state
from server.jobs.queue import JsonMessageSerializer
from server.storage.db import Database
from server.storage.schema import Job, Run, utcnow
from tests.support.jobs import (
    assert_same_results,
    drain,
    jobs,
    run_results,
    run_status,
    settings_for,
)
from tests.support.models import RED_DETECTOR_ARGS

ANALYSIS = (*RED_DETECTOR_ARGS, "--layers", "1,4", "--top-k", "5", "--workers", "0", "--json")


def queue_run(capsys, folder, *extra: str) -> dict:
    code = main(["analyze", *ANALYSIS, "--data", str(folder), "--queue", *extra])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def test_queue_messages_are_json_never_pickle():
    serializer = JsonMessageSerializer()
    message = Message("id-1", "server.jobs.queue.run_job", None, 0, 0, None, (7,), {})
    raw = serializer.serialize(message)
    assert json.loads(raw)["message"]["args"] == [7]
    assert serializer.deserialize(raw) == message
    with pytest.raises(ValueError):  # a pickle is not JSON, and is never unpickled
        serializer.deserialize(pickle.dumps(message))


def test_queueing_the_same_work_twice_returns_the_same_jobs(capsys, data_dir, square_folder):
    first = queue_run(capsys, square_folder, "--shards", "2", "--batch-size", "8")
    second = queue_run(capsys, square_folder, "--shards", "2", "--batch-size", "8")
    assert first["run"] == second["run"]
    assert [job["id"] for job in first["jobs"]] == [job["id"] for job in second["jobs"]]
    kinds = [job["kind"] for job in first["jobs"]]
    assert kinds == ["sweep", "sweep", "merge", "indexes", "indexes"]
    assert len(jobs(settings_for(data_dir))) == 5
    sweeps, merge = first["jobs"][:2], first["jobs"][2]
    assert merge["status"] == "waiting" and merge["depends_on"] == [job["id"] for job in sweeps]
    assert [job["params"]["start"] for job in sweeps] == [0, 16]  # 24 images, batches of 8


def test_a_sharded_queued_run_equals_the_in_process_run(
    capsys, tmp_path, monkeypatch, square_folder
):
    monkeypatch.setenv("NEURONSCOPE_DATA_DIR", str(tmp_path / "in-process"))
    assert main(["analyze", *ANALYSIS, "--data", str(square_folder)]) == 0
    expected = json.loads(capsys.readouterr().out)

    monkeypatch.setenv("NEURONSCOPE_DATA_DIR", str(tmp_path / "queued"))
    queued = queue_run(capsys, square_folder, "--shards", "3", "--batch-size", "8")
    settings = settings_for(tmp_path / "queued")
    assert run_status(settings, queued["run"]) == "queued"
    assert drain(settings) == 6
    assert [job.status for job in jobs(settings)] == ["done"] * 6
    assert run_status(settings, queued["run"]) == "done"

    reference = run_results(settings_for(tmp_path / "in-process"), expected["run"])
    actual = run_results(settings, queued["run"])
    assert_same_results(actual, reference)
    assert actual[("4", 0)]["indexes"]["color"] > 0.5  # the red detector, through the index jobs


def test_a_failed_job_shows_its_error_and_stops_its_run(capsys, data_dir, square_folder, tmp_path):
    queued = queue_run(capsys, square_folder)
    (square_folder / "red" / "extra.png").write_bytes(
        (square_folder / "red" / "000.png").read_bytes()
    )
    settings = settings_for(data_dir)
    drain(settings)
    sweep, merge, *indexes = jobs(settings)
    assert sweep.status == "failed" and "changed since it was registered" in sweep.error
    assert merge.status == "cancelled" and all(job.status == "cancelled" for job in indexes)
    assert run_status(settings, queued["run"]) == "failed"

    # The worker went on: other work still runs, and the failed run can be submitted again.
    (square_folder / "red" / "extra.png").unlink()
    again = queue_run(capsys, square_folder)
    assert again["run"] == queued["run"] and again["jobs"][0]["id"] == sweep.id
    drain(settings)
    assert run_status(settings, queued["run"]) == "done"
    assert jobs(settings)[0].attempts == 1  # revived: attempts start again


def test_cancelling_a_job_cancels_its_run(capsys, data_dir, square_folder):
    queued = queue_run(capsys, square_folder, "--shards", "2", "--batch-size", "8")
    merge = next(job for job in queued["jobs"] if job["kind"] == "merge")
    assert main(["cancel", str(merge["id"])]) == 0
    assert "cancelled" in capsys.readouterr().out
    settings = settings_for(data_dir)
    assert {job.status for job in jobs(settings)} == {"cancelled"}
    assert run_status(settings, queued["run"]) == "cancelled"
    drain(settings)  # the sweep messages are still queued: nobody may run a cancelled job
    assert all(job.attempts == 0 for job in jobs(settings))


def test_jobs_command_lists_id_kind_status_progress_and_run(capsys, data_dir, square_folder):
    queued = queue_run(capsys, square_folder)
    assert main(["jobs", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {job["id"] for job in listed} == {job["id"] for job in queued["jobs"]}
    for job in listed:
        assert {"id", "kind", "status", "progress", "run"} <= set(job)
        assert 0.0 <= job["progress"] <= 1.0 and job["run"] == queued["run"]
    assert main(["jobs"]) == 0
    assert "sweep" in capsys.readouterr().out


def test_a_job_whose_worker_stops_heartbeating_is_requeued_until_attempts_run_out(
    capsys, data_dir, square_folder
):
    queued = queue_run(capsys, square_folder)
    settings = settings_for(data_dir)
    database = Database(settings.database_url)
    sweep_id = queued["jobs"][0]["id"]
    for attempt in range(1, 4):
        with database.session() as session:
            assert state.claim(session, sweep_id, f"doomed-{attempt}")
            assert state.claim(session, sweep_id, "other") is None  # one holder at a time
        with database.session() as session:  # the worker dies: its heartbeat gets old
            session.execute(
                update(Job)
                .where(Job.id == sweep_id)
                .values(heartbeat=utcnow() - timedelta(minutes=5))
            )
        with database.session() as session:
            requeued = state.requeue_stale(session, timedelta(seconds=30))
        job = jobs(settings)[0]
        if attempt < 3:
            assert requeued == [sweep_id] and job.status == "queued" and job.attempts == attempt
            assert "stopped heart-beating" in job.message
    assert job.status == "failed" and "gave up after 3 attempts" in job.error
    with database.session() as session:
        assert session.get(Run, queued["run"]).status == "failed"


def test_a_lost_lease_cannot_write(capsys, data_dir, square_folder):
    queued = queue_run(capsys, square_folder)
    database = Database(settings_for(data_dir).database_url)
    sweep_id = queued["jobs"][0]["id"]
    with database.session() as session:
        lease = state.claim(session, sweep_id, "slow")
        session.execute(update(Job).where(Job.id == sweep_id).values(lease="someone-else"))
    with database.session() as session:
        assert state.heartbeat(session, sweep_id, lease, 0.5) is None
        assert state.close(session, sweep_id, lease, "done", result={}) is False


def test_analyze_queue_wait_shows_progress_until_workers_finish(capsys, data_dir, square_folder):
    settings = settings_for(data_dir)
    finished = threading.Event()

    def worker() -> None:  # a worker that keeps taking jobs until the run is done
        while not finished.is_set():
            drain(settings)
            time.sleep(0.1)

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        code = main(["analyze", *ANALYSIS[:-1], "--data", str(square_folder), "--queue", "--wait"])
    finally:
        finished.set()
        thread.join()
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "run 1: done" in captured.out
    assert "sweep (1/1 jobs)" in captured.err and "100%" in captured.err  # the terminal bars
    assert "indexes (2/2 jobs)" in captured.err


def test_computing_in_process_a_run_that_workers_hold_is_refused(capsys, data_dir, square_folder):
    queued = queue_run(capsys, square_folder)
    assert main(["analyze", *ANALYSIS, "--data", str(square_folder)]) == 1
    error = capsys.readouterr().err
    assert f"run {queued['run']} is being computed by queued jobs" in error
    assert run_status(settings_for(data_dir), queued["run"]) == "queued"  # untouched


def test_job_progress_says_its_pace_and_the_time_left():
    import time as clock

    from server.jobs.runner import JobProgress

    class Monitor:
        def __init__(self) -> None:
            import threading

            self.lost, self.cancelled = threading.Event(), threading.Event()
            self.progress, self.message = None, None

    monitor = Monitor()
    progress = JobProgress(monitor)
    progress.start("sweep", 100, "images")
    assert monitor.message == "sweep: 0 of 100 images"
    progress._started = clock.perf_counter() - 10  # ten seconds in
    progress.update(25)
    assert monitor.message.startswith("sweep: 25 of 100 images · 2.5 images/s · 0:3")  # 30 s
    progress.finish()
    assert monitor.message == "sweep: 100 of 100 images" and monitor.progress == 1.0
    progress.start("decomposing", 4)  # a stage without a unit counts bare steps
    progress._started = clock.perf_counter() - 2
    progress.update(1)
    assert monitor.message.startswith("decomposing: 1 of 4 · 0.5/s · 0:0")


def test_a_run_whose_features_cannot_fit_on_the_disk_fails_before_its_sweep(
    capsys, data_dir, square_folder, monkeypatch
):
    from server.storage.artifacts import ArtifactStore

    settings = settings_for(data_dir)
    with monkeypatch.context() as patched:
        patched.setattr(ArtifactStore, "free_bytes", lambda self: 10)
        queued = queue_run(capsys, square_folder)
        drain(settings)
    sweep, merge, *_ = jobs(settings)
    assert sweep.status == "failed"
    assert "Neuron Features of 2 layer(s) need" in sweep.error and "10 bytes free" in sweep.error
    assert merge.status == "cancelled" and run_status(settings, queued["run"]) == "failed"
    queue_run(capsys, square_folder)  # space was freed: the same run goes through
    drain(settings)
    assert run_status(settings, queued["run"]) == "done"
