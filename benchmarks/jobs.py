"""A run through the job queue and worker processes, against the same run computed in-process.

    python -m benchmarks.jobs                                   # demo CNN, 2,000 stimuli, CPU
    python -m benchmarks.jobs --device cuda --per-class 1000 --batch-size 256

Both sides register the model and the folder and compute the sweep and the Neuron Features of
every default layer (no indexes), each into a fresh data directory. The in-process side is
``neuronscope analyze``; the queued side is ``analyze --queue`` with the workers already started
(their start-up is not timed), from the submission to the run being done: Huey messages, claims,
heartbeats, shard results written and read back, the merge. Prints the median over repeats of
each configuration's seconds and its ratio to the in-process median (the cost of going through
jobs; below 1 when several workers share the work).

Unlike the other benchmarks this one needs the server stack (SQLAlchemy, Huey).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import redirect_stdout
from pathlib import Path

import torch

from analysis.demo.model import DEMO_SPEC
from analysis.demo.stimuli import generate, write_image_folder
from benchmarks.common import machine_description, median
from server.cli.main import main as neuronscope
from server.config import load_settings
from server.storage.db import Database
from server.storage.schema import Run

REPO = Path(__file__).resolve().parent.parent


def run_cli(data_dir: Path, *argv: str) -> dict:
    os.environ["NEURONSCOPE_DATA_DIR"] = str(data_dir)
    with redirect_stdout(io.StringIO()) as printed:
        code = neuronscope(list(argv))
    if code != 0:
        raise SystemExit(f"neuronscope {' '.join(argv)} failed")
    return json.loads(printed.getvalue())


def wait_until_done(data_dir: Path, run_id: int) -> None:
    database = Database(load_settings({"NEURONSCOPE_DATA_DIR": str(data_dir)}).database_url)
    while True:
        with database.session() as session:
            status = session.get(Run, run_id).status
        if status == "done":
            return
        if status in ("failed", "cancelled"):
            raise SystemExit(f"run {run_id} {status}")
        time.sleep(0.05)


def start_workers(data_dir: Path, count: int, device: str, log_dir: Path) -> list:
    env = {**os.environ, "NEURONSCOPE_DATA_DIR": str(data_dir), "PYTHONPATH": str(REPO)}
    workers = []
    for index in range(count):
        log = log_dir / f"worker-{index}.log"
        workers.append(
            (
                subprocess.Popen(
                    [sys.executable, "-m", "server.cli.main", "worker", "--device", device],
                    cwd=REPO,
                    env=env,
                    stdout=log.open("w"),
                    stderr=subprocess.STDOUT,
                ),
                log,
            )
        )
    for _process, log in workers:
        deadline = time.monotonic() + 120
        while "ready" not in log.read_text():
            if time.monotonic() > deadline:
                raise SystemExit(f"worker did not start: {log.read_text()[-2000:]}")
            time.sleep(0.1)
    return [process for process, _log in workers]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--per-class", type=int, default=200, help="stimuli per class (10)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--configs", default="1x1,1x4,2x4", help="workers x shards, comma-separated"
    )
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="neuronscope-bench-jobs-"))
    images, labels = generate(args.per_class, seed=0)
    folder = root / "stimuli"
    write_image_folder(images, labels, folder)
    common = [
        *("--model", DEMO_SPEC, "--input-size", "64", "--data", str(folder)),
        *("--batch-size", str(args.batch_size), "--device", args.device, "--no-indexes", "--json"),
    ]

    baseline = []
    for repeat in range(args.repeats):
        started = time.perf_counter()
        run_cli(root / f"in-process-{repeat}", "analyze", *common)
        baseline.append(time.perf_counter() - started)
    reference = median(baseline)
    print(f"machine: {machine_description(torch.device(args.device))}")
    print(f"{len(images):,} images, batch {args.batch_size}, demo CNN (random weights), no indexes")
    print(
        f"in-process analyze: median {reference:.2f} s ({', '.join(f'{t:.2f}' for t in baseline)})"
    )

    for config in args.configs.split(","):
        workers, shards = (int(part) for part in config.split("x"))
        times = []
        for repeat in range(args.repeats):
            data_dir = root / f"queued-{config}-{repeat}"
            data_dir.mkdir(parents=True)
            processes = start_workers(data_dir, workers, args.device, data_dir)
            try:
                started = time.perf_counter()
                queued = run_cli(data_dir, "analyze", *common, "--queue", "--shards", str(shards))
                wait_until_done(data_dir, queued["run"])
                times.append(time.perf_counter() - started)
            finally:
                for process in processes:
                    process.terminate()
                for process in processes:
                    process.wait(timeout=60)
        seconds = median(times)
        print(
            f"{workers} worker(s), {shards} shard(s): median {seconds:.2f} s, "
            f"ratio to in-process {seconds / reference:.3f} "
            f"({', '.join(f'{t:.2f}' for t in times)})"
        )


if __name__ == "__main__":
    main()
