"""kill -9 at the worst moment: a worker during each kind of job, the server during uploads.

Afterwards the database passes its integrity check, every artifact it names is a whole file,
no temporary file is left once the processes have started again, and every job has ended: done,
or failed with a reason. The model sleeps 0.5 s per forward (``slow_red_detector``), so each job
is still running when it is killed.
"""

from __future__ import annotations

import io
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from sqlalchemy import create_engine, inspect, text

from server.storage.artifacts import PARTIAL, ArtifactStore
from server.storage.db import Database
from server.storage.packs import artifact_bytes
from tests.support.images import write_square_folder
from tests.support.jobs import (
    REPO,
    cli,
    environment,
    jobs,
    run_status,
    settings_for,
    start_worker,
    stop_workers,
    wait_for,
)
from tests.support.models import RED_DETECTOR_ARGS
from tests.support.web import web_client

ARTIFACT_KEY = re.compile(r"\b[0-9a-f]{64}\.[a-z0-9]{1,16}\b")
SLOW_RUN = (
    *("--model", "tests.support.models:slow_red_detector", *RED_DETECTOR_ARGS[2:]),
    *("--layers", "2,5", "--top-k", "4", "--featureviz", "--fv-steps", "6", "--fv-size", "16"),
    *("--workers", "0", "--batch-size", "4", "--json", "--queue", "--shards", "2"),
)


def kill_during(kind: str, env: dict, settings, log_dir: Path) -> None:
    """Start a worker, kill -9 it while it runs a ``kind`` job, and wait until it is dead.

    The job table is polled every few milliseconds on one connection: a merge whose model is
    already loaded runs for a fraction of a second."""
    name = f"victim-{kind}"
    worker = start_worker(env, name, log_dir / f"{name}.log")
    engine = create_engine(settings.database_url)
    query = text("SELECT 1 FROM job WHERE kind = :kind AND status = 'running' AND worker = :name")
    try:
        deadline = time.monotonic() + 120
        with engine.connect() as connection:
            while connection.execute(query, {"kind": kind, "name": name}).first() is None:
                connection.rollback()  # see other processes' commits
                assert worker.poll() is None, (log_dir / f"{name}.log").read_text()
                assert time.monotonic() < deadline, f"no {kind} job ran on {name}"
                time.sleep(0.005)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
        engine.dispose()


def check_storage(settings) -> None:
    """The database is sound, every artifact it names exists whole (as a file of its own or in
    a pack), and no temporary file is left behind."""
    database = Database(settings.database_url)
    with database.engine.connect() as connection:
        assert connection.execute(text("PRAGMA integrity_check")).scalar() == "ok"
        named = set()
        for table in inspect(connection).get_table_names():
            for row in connection.execute(text(f'SELECT * FROM "{table}"')):
                named |= set(ARTIFACT_KEY.findall(" ".join(map(str, row))))
    store = ArtifactStore(settings.artifact_dir)
    with database.session() as session:
        found = {key: artifact_bytes(session, store, key) for key in named}
    database.engine.dispose()
    missing = [key for key, data in found.items() if data is None]
    assert named and not missing, f"named but missing: {missing}"
    assert any(key.endswith(".pack") for key in named)
    for key, data in found.items():
        if key.endswith(".png"):
            with Image.open(io.BytesIO(data)) as image:
                image.load()  # whole, not cut short
    assert not list(store.root.rglob(f"{PARTIAL}*"))


def test_workers_killed_during_each_kind_of_job_leave_everything_whole(tmp_path):
    data_dir = tmp_path / "data"
    env = environment(data_dir, timeout=2.0)
    settings = settings_for(data_dir)
    folder = write_square_folder(tmp_path / "squares", per_class=8)
    run = int(re.search(r'"run": (\d+)', cli(env, "analyze", *SLOW_RUN, "--data", str(folder)))[1])
    for kind in ("sweep", "merge", "indexes", "featureviz"):
        kill_during(kind, env, settings, tmp_path)
    finisher = start_worker(env, "finisher", tmp_path / "finisher.log")
    try:
        wait_for(lambda: run_status(settings, run) == "done", "the run to finish", 240)
    finally:
        stop_workers(finisher)

    web = web_client(settings)
    photo = io.BytesIO()
    Image.fromarray(np.full((40, 60, 3), (200, 30, 30), np.uint8)).save(photo, "PNG")
    upload = web.post("/api/runs/1/decompositions", files={"file": ("x.png", photo.getvalue())})
    assert upload.status_code == 202, upload.text
    kill_during("decompose", env, settings, tmp_path)
    composed = web.post("/api/runs/1/layers/5/neurons/0/composition?source=2&mode=relevance")
    assert composed.status_code == 202, composed.text
    kill_during("compose", env, settings, tmp_path)

    finisher = start_worker(env, "finisher-2", tmp_path / "finisher-2.log")
    try:
        wait_for(
            lambda: all(job.status in ("done", "failed") for job in jobs(settings)),
            "every job to end",
            240,
        )
    finally:
        stop_workers(finisher)
    ended = jobs(settings)
    assert {job.kind for job in ended} >= {"sweep", "merge", "indexes", "featureviz"}
    assert {job.kind for job in ended} >= {"decompose", "compose"}
    for job in ended:
        assert job.status == "done" or (job.status == "failed" and job.error), job.kind
    assert all(job.status == "done" for job in ended)  # each was taken over and finished
    assert web.get("/api/decompositions/1").json()["status"] == "done"
    assert web.get(composed.request.url.path + "?source=2&mode=relevance").status_code == 200
    check_storage(settings)


def _serve(env: dict, port: int, log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "server.cli.main", "serve", "--port", str(port)]
    return subprocess.Popen(
        command,
        cwd=REPO,
        env={**env, "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)},
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )


def _wait_until_up(url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    pytest.fail("the dashboard did not start")


@pytest.mark.parametrize("kills", [3])
def test_a_server_killed_during_uploads_leaves_everything_whole(analysed_dir, tmp_path, kills):
    env = {"NEURONSCOPE_DATA_DIR": str(analysed_dir)}
    settings = settings_for(analysed_dir)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    rng = np.random.default_rng(0)
    sent = []

    def upload_until_refused(stop: threading.Event) -> None:
        with httpx.Client(timeout=10) as http:
            while not stop.is_set():
                pixels = rng.integers(0, 256, (375, 500, 3), np.uint8)  # every one new bytes
                buffer = io.BytesIO()
                Image.fromarray(pixels).save(buffer, "PNG")
                try:
                    answer = http.post(
                        f"{url}/api/runs/1/decompositions",
                        files={"file": ("photo.png", buffer.getvalue())},
                    )
                    sent.append(answer.status_code)
                except httpx.TransportError:
                    return

    for attempt in range(kills):
        server = _serve(env, port, tmp_path / f"serve-{attempt}.log")
        try:
            _wait_until_up(url)
            stop = threading.Event()
            uploaders = [threading.Thread(target=upload_until_refused, args=(stop,)) for _ in "ab"]
            for thread in uploaders:
                thread.start()
            time.sleep(1.0 + 0.3 * attempt)
        finally:
            server.send_signal(signal.SIGKILL)
            server.wait(timeout=10)
            stop.set()
        for thread in uploaders:
            thread.join(timeout=20)
    assert sent and set(sent) <= {202}, sent
    server = _serve(env, port, tmp_path / "serve-last.log")  # sweeps temporary files at start
    try:
        _wait_until_up(url)
        assert httpx.get(f"{url}/runs/1").status_code == 200
        check_storage(settings)
    finally:
        server.terminate()
        server.wait(timeout=10)
