"""Helpers for the job tests: queue runs, drain the queue in-process or with real worker
processes, and read results back in a form that compares across data directories."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from server.cli.main import main
from server.config import Settings, load_settings
from server.jobs.queue import JobQueue, create_huey
from server.jobs.runner import JobRunner
from server.runs.read import neuron_detail
from server.runs.stages import AnalysisSettings
from server.storage.artifacts import ArtifactStore
from server.storage.db import Database
from server.storage.schema import Job, Layer, Run
from tests.support.images import write_square_folder
from tests.support.models import RED_DETECTOR_ARGS

REPO = Path(__file__).resolve().parents[2]
SLOW_MODEL_ARGS = (
    *("--model", "tests.support.models:slow_red_detector", *RED_DETECTOR_ARGS[2:]),
    *("--layers", "2,5", "--top-k", "5", "--no-indexes"),
)


def environment(data_dir: Path, database_url: str | None = None, timeout: float = 2.0) -> dict:
    """The neuronscope settings of one test installation, as environment variables."""
    env = {"NEURONSCOPE_DATA_DIR": str(data_dir), "NEURONSCOPE_HEARTBEAT_TIMEOUT": str(timeout)}
    if database_url:
        env["NEURONSCOPE_DATABASE_URL"] = database_url
    return env


def cli(env: dict, *argv: str) -> str:
    """``neuronscope ARGV`` with the settings ``env``, in this process (torch is loaded already);
    returns what it printed."""
    with pytest.MonkeyPatch.context() as patch, redirect_stdout(io.StringIO()) as printed:
        for name in ("NEURONSCOPE_DATABASE_URL", "NEURONSCOPE_HEARTBEAT_TIMEOUT"):
            patch.delenv(name, raising=False)
        for name, value in env.items():
            patch.setenv(name, value)
        code = main(list(argv))
    assert code == 0, f"neuronscope {' '.join(argv)} exited with {code}"
    return printed.getvalue()


def start_worker(env: dict, name: str, log: Path) -> subprocess.Popen:
    """``neuronscope worker`` in its own process, as a lab machine runs it."""
    handle = log.open("w")
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "server.cli.main",
            "worker",
            "--loader-workers",
            "0",
            "--name",
            name,
        ],
        cwd=REPO,
        env={**os.environ, **env, "PYTHONPATH": str(REPO)},
        stdout=handle,
        stderr=subprocess.STDOUT,
    )


def stop_workers(*workers: subprocess.Popen) -> None:
    for worker in workers:
        if worker.poll() is None:
            worker.terminate()
    for worker in workers:
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def settings_for(data_dir: Path, database_url: str | None = None) -> Settings:
    env = {"NEURONSCOPE_DATA_DIR": str(data_dir)}
    if database_url:
        env["NEURONSCOPE_DATABASE_URL"] = database_url
    return load_settings(env)


def drain(settings: Settings, worker: str = "test-worker") -> int:
    """Run every queued job in this process, as a worker would; returns how many ran."""
    database = Database(settings.database_url)
    huey = create_huey(settings)
    runner = JobRunner(
        database=database,
        store=ArtifactStore(settings.artifact_dir),
        settings=AnalysisSettings(workers=0),
        worker=worker,
        heartbeat_interval=0.2,
        send=lambda ids: None,
    )
    queue = JobQueue(huey, runner)
    runner.send = queue.send
    ran = 0
    while (task := huey.dequeue()) is not None:
        huey.execute(task)
        ran += 1
    return ran


def jobs(settings: Settings) -> list[Job]:
    with Database(settings.database_url, migrate=False).session() as session:
        found = session.scalars(select(Job).order_by(Job.id)).all()
        session.expunge_all()
        return list(found)


def run_status(settings: Settings, run_id: int) -> str:
    with Database(settings.database_url, migrate=False).session() as session:
        return session.get(Run, run_id).status


def run_results(settings: Settings, run_id: int) -> dict[tuple[str, int], dict]:
    """Every neuron of a run, with artifact paths reduced to their content-hash names."""
    database = Database(settings.database_url, migrate=False)
    store = ArtifactStore(settings.artifact_dir)
    results = {}
    with database.session() as session:
        layers = session.scalars(select(Layer).where(Layer.run_id == run_id)).all()
        for layer in layers:
            for channel in range(layer.channels):
                detail = neuron_detail(session, store, run_id, layer.name, channel)
                for key in ("nf", "nf_array", "sprite"):
                    detail[key] = detail[key] and Path(detail[key]).name
                detail.pop("run")
                results[(layer.name, channel)] = detail
    return results


def assert_same_results(actual: dict, expected: dict) -> None:
    """Top-K lists, positions, NFs and sprites bit for bit; the mean of per-image maxima up to
    float64 rounding (shards add their partial sums in a different order)."""
    assert actual.keys() == expected.keys() and actual
    for key, neuron in expected.items():
        other = dict(actual[key])
        assert other.pop("mean_activation") == pytest.approx(neuron["mean_activation"], rel=1e-12)
        expected_rest = {k: v for k, v in neuron.items() if k != "mean_activation"}
        assert json.dumps(other, sort_keys=True) == json.dumps(expected_rest, sort_keys=True), key


def operator_lab(root: Path) -> Path:
    """``root/data`` with the red detector registered (and analysed) by an operator from the
    command line, and ``root/images/squares`` to analyse, under the root a browser may use."""
    folder = write_square_folder(root / "images" / "squares", per_class=4)
    cli(
        environment(root / "data"),
        "analyze",
        *RED_DETECTOR_ARGS,
        "--data",
        str(folder),
        "--layers",
        "1",
        "--top-k",
        "2",
        "--workers",
        "0",
        "--no-indexes",
        "--json",
    )
    return root
