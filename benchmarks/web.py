"""Dashboard latency under a bounded load on loopback.

    python -m benchmarks.web

Builds a throw-away database with one run whose layer has 4,096 neurons (K = 100 top images
each, every index and physiology curve filled with seeded random values), serves it with uvicorn
on 127.0.0.1, and sends a fixed number of requests from 16 concurrent keep-alive clients to two
views: the layer table sorted by an index (the HTML page, 100 rows and NF thumbnails) and a
neuron page. Prints requests/s and the median and 95th-percentile latency seen by the clients
and the server's own time per request (its ``Server-Timing`` header: from the request reaching
the app to the response), whose p95 has the goal < 50 ms. Needs the web stack
(fastapi, uvicorn, httpx), unlike the other benchmarks.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
from sqlalchemy import insert

from server.config import load_settings
from server.storage.artifacts import ArtifactStore
from server.storage.db import Database
from server.storage.schema import (
    Dataset,
    DatasetImage,
    Layer,
    Model,
    Neuron,
    NeuronIndex,
    Run,
    TopActivation,
)

CHANNELS, TOP_K, IMAGES = 4096, 100, 20_000


def build_database(data_dir: Path, channels: int = CHANNELS) -> None:
    settings = load_settings({"NEURONSCOPE_DATA_DIR": str(data_dir)})
    database = Database(settings.database_url)
    nf_key = ArtifactStore(settings.artifact_dir).put_png(np.full((8, 8, 3), 128, np.uint8))
    rng = random.Random(0)
    with database.session() as session:
        model = Model(
            identity="b" * 64,
            spec="bench",
            weights_sha256="0" * 64,
            input_size=224,
            mean=[0, 0, 0],
            std=[1, 1, 1],
            meta={},
        )
        dataset = Dataset(root="/bench", fingerprint="f" * 64, image_count=IMAGES, class_count=10)
        session.add_all([model, dataset])
        session.flush()
        session.execute(
            insert(DatasetImage),
            [
                {
                    "dataset_id": dataset.id,
                    "index": i,
                    "path": f"c{i % 10}/{i:06d}.jpg",
                    "label": f"c{i % 10}",
                }
                for i in range(IMAGES)
            ],
        )
        run = Run(
            key="k" * 64,
            model_id=model.id,
            dataset_id=dataset.id,
            status="done",
            params={"layers": ["big"], "top_k": TOP_K, "resize": "whole"},
            stats={},
        )
        session.add(run)
        session.flush()
        layer = Layer(
            run_id=run.id,
            name="big",
            position=0,
            type="ReLU",
            channels=channels,
            height=14,
            width=14,
            rf_size=[196, 196],
            rf_stride=[16, 16],
            rf_offset=[-90, -90],
            dead_count=0,
        )
        session.add(layer)
        session.flush()
        ids = list(
            session.scalars(
                insert(Neuron).returning(Neuron.id, sort_by_parameter_order=True),
                [
                    {
                        "layer_id": layer.id,
                        "channel": c,
                        "dead": False,
                        "mean_activation": rng.random(),
                        "max_activation": 1 + rng.random(),
                        "nf_key": nf_key,
                        "nf_array_key": None,
                        "sprite_key": nf_key,
                    }
                    for c in range(channels)
                ],
            )
        )
        session.execute(
            insert(TopActivation),
            [
                {
                    "neuron_id": n,
                    "rank": r,
                    "image_index": rng.randrange(IMAGES),
                    "value": 1 - r / TOP_K,
                    "row": 3,
                    "col": 4,
                }
                for n in ids
                for r in range(TOP_K)
            ],
        )
        rows = []
        for n in ids:
            for name in ("color", "orientation", "symmetry", "class", "shape", "color_bounded"):
                rows.append({"neuron_id": n, "name": name, "value": rng.random(), "details": {}})
            rows.append(
                {
                    "neuron_id": n,
                    "name": "selectivity",
                    "value": None,
                    "details": {
                        "orientation_curve": [rng.random() for _ in range(23)],
                        "orientation_angles": list(range(15, 360, 15)),
                        "symmetry_axes": {"0": 0.5, "45": 0.4, "90": 0.6, "135": 0.3},
                        "class_distribution": {"c1": 0.6, "c2": 0.4},
                        "top_class": "c1",
                        "population_code": 2,
                        "color_bounded": 0.5,
                    },
                }
            )
            rows.append(
                {
                    "neuron_id": n,
                    "name": "double_opponent",
                    "value": 0.0,
                    "details": {
                        "hue_curve": [rng.random() for _ in range(360)],
                        "hue_baseline": 0.1,
                        "spectral_class": "opponent",
                        "hue_max": 10,
                        "hue_min": 200,
                        "spatial_class": "opponent",
                        "grating_baseline": 0.1,
                        "grating_orientations": list(range(0, 181, 20)),
                        "grating_orientation_tuning": [rng.random() for _ in range(10)],
                        "preferred_frequency": 4,
                        "preferred_orientation": 40,
                        "double_opponent": False,
                    },
                }
            )
        session.execute(insert(NeuronIndex), rows)


def load(url: str, requests: int, clients: int) -> tuple[float, list[float], list[float]]:
    """``requests`` GETs of ``url`` from ``clients`` threads.

    Returns (seconds, client latencies in ms, server times in ms from ``Server-Timing``).
    """

    def worker(count: int) -> list[tuple[float, float]]:
        timings = []
        with httpx.Client(timeout=30) as client:
            for _ in range(count):
                start = time.perf_counter()
                response = client.get(url)
                latency = (time.perf_counter() - start) * 1000
                response.raise_for_status()
                server = float(response.headers["server-timing"].split("dur=")[1])
                timings.append((latency, server))
        return timings

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        parts = list(pool.map(worker, [requests // clients] * clients))
    pairs = [pair for part in parts for pair in part]
    return time.perf_counter() - start, [p[0] for p in pairs], [p[1] for p in pairs]


def _p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


@contextmanager
def serving(data_dir: Path, port: int, options: list[str]) -> Iterator[str]:
    """``neuronscope serve`` on ``port`` over ``data_dir``, as an operator starts it; yields its
    base URL once it answers, and stops it afterwards."""
    server = subprocess.Popen(
        [sys.executable, "-m", "server.cli.main", "serve", "--port", str(port), *options],
        env={
            "NEURONSCOPE_DATA_DIR": str(data_dir),
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        },
        stdout=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                httpx.get(base + "/", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=640, help="per view")
    parser.add_argument("--workers", type=int, default=2, help="server processes")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        build_database(Path(tmp))
        with serving(Path(tmp), port, ["--workers", str(args.workers)]) as base:
            views = {
                "layer table, 4,096 neurons by colour (HTML, 100 rows)": (
                    f"{base}/runs/1/layers/big?_sort_desc=color"
                ),
                "neuron page (HTML)": f"{base}/runs/1/layers/big/neurons/1234",
            }
            print(f"{args.clients} concurrent clients, {args.requests} requests per view, loopback")
            for label, url in views.items():
                load(url, args.clients * 2, args.clients)  # warm-up (and the table cache)
                seconds, latencies, server_ms = load(url, args.requests, args.clients)
                print(
                    f"{label}: {len(latencies) / seconds:,.0f} req/s; server time median "
                    f"{statistics.median(server_ms):.1f} ms, p95 {_p95(server_ms):.1f} ms; "
                    f"client latency median {statistics.median(latencies):.1f} ms, "
                    f"p95 {_p95(latencies):.1f} ms"
                )


if __name__ == "__main__":
    main()
