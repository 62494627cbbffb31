"""The demo: deterministic stimuli, a trainable CNN, and the whole command on a small dataset."""

from __future__ import annotations

import json
import re
from pathlib import Path

from sqlalchemy import select

from server.cli.main import main
from server.config import load_settings
from server.storage.db import Database
from server.storage.schema import Decomposition, FeatureViz, Run

DEMO_ARGS = ("demo", "--per-class", "6", "--top-k", "3", "--fv-steps", "2", "--no-serve")


def test_demo_command_end_to_end(data_dir, capsys):
    assert main(list(DEMO_ARGS)) == 0
    out = capsys.readouterr().out
    assert "validation accuracy" in out and "features.17" in out
    assert "feature visualisations of 360 neurons" in out
    assert "a stimulus decomposed at every layer: /decompositions/1" in out
    assert re.search(r"demo ready in \d+ s \(stimuli \d+ s, training \d+ s, analysis", out)
    mosaics = sorted((data_dir / "demo" / "mosaics").glob("nf-run*.png"))
    assert len(mosaics) == 5
    assert (data_dir / "demo" / "mosaics" / "featureviz-run1.png").is_file()
    assert main(["neuron", "1", "features.17", "0", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["feature_vis"][0]["steps"] == 2
    # A second run reuses the dataset, the model, the run and the visualisations.
    assert main(list(DEMO_ARGS)) == 0
    assert "reused finished" in capsys.readouterr().out
    with Database(load_settings().database_url).session() as session:
        stored = session.scalars(select(FeatureViz.target)).all()
        decomposed = session.scalars(select(Decomposition)).all()
    assert len(stored) == 360 + 10 and stored.count("@output") == 10
    assert len(decomposed) == 1 and set(decomposed[0].result["layers"]) == {
        "features.2", "features.6", "features.10", "features.13", "features.17"
    }  # fmt: skip
    check_deepest_composite_is_legible(data_dir, decomposed[0].result["layers"]["features.17"])
    check_static_copy(data_dir, capsys)
    check_trained_against_random(data_dir, capsys)


def check_deepest_composite_is_legible(data_dir, layer: dict) -> None:
    """At the deepest layer the NF pasted over the stimulus is a mean of many patches, faint
    when pasted as it is; the composite the page shows stretches it to the full range."""
    import numpy as np
    from PIL import Image

    from server.storage.artifacts import ArtifactStore

    store = ArtifactStore(load_settings().artifact_dir)
    r0, r1, c0, c1 = layer["neurons"][0]["input_window"]
    window = (slice(max(r0, 0), r1), slice(max(c0, 0), c1))

    def spread(key: str) -> int:
        pixels = np.asarray(Image.open(store.path(key)).convert("RGB"), dtype=np.int16)
        return int(np.ptp(pixels[window]))  # over all three channels, as the NF is stretched

    assert spread(layer["composite_stretched"]) >= 250
    assert spread(layer["composite"]) < spread(layer["composite_stretched"])


def check_trained_against_random(data_dir, capsys) -> None:
    """The demo CNN's last layer trained (run 1) and with random weights (a new run over the
    same stimuli, same input): their orientation, symmetry and class index distributions differ
    (two-sample Kolmogorov–Smirnov, p < 0.01), and the trained run with itself differs nowhere.

    Trained on this test's 60 stimuli for its 40 optimiser steps, the last layer's top-3 images
    are mostly of one class (class D = 0.40 against random weights, p = 2e-9); with the 8 steps
    it once took, they were not (p = 0.2)."""
    with Database(load_settings().database_url).session() as session:
        trained = session.get(Run, 1)
        folder, model = trained.dataset.root, trained.model
        size, mean, std = model.input_size, model.mean, model.std
    args = ["analyze", "--model", "analysis.demo.model:demo_cnn", "--data", folder]
    args += ["--input-size", str(size), "--mean", ",".join(map(str, mean))]
    args += ["--std", ",".join(map(str, std)), "--layers", "features.17", "--top-k", "3"]
    assert main([*args, "--workers", "0", "--json"]) == 0
    random_run = json.loads(capsys.readouterr().out)["run"]
    assert main(["compare", "1", str(random_run), "--json"]) == 0
    (last,) = [
        layer
        for layer in json.loads(capsys.readouterr().out)["layers"]
        if layer["name"] == "features.17"
    ]
    for index in ("orientation", "symmetry", "class"):
        (test,) = last["tests"][index]
        assert test["p"] < 0.01, (index, test)
    assert main(["compare", "1", "1", "--json"]) == 0
    itself = json.loads(capsys.readouterr().out)["layers"]
    assert all(t["p"] == 1.0 for layer in itself for ts in layer["tests"].values() for t in ts)


def check_static_copy(data_dir, capsys) -> None:
    """The demo's run exported as a static site: every neuron has its page, every link and
    image resolves on disk, and in a real browser (where one is installed) the pages show
    their images and sort their tables."""
    out = data_dir / "site"
    assert main(["export", "1", "--out", str(out)]) == 0
    assert "360 images" not in capsys.readouterr().err  # progress went to the terminal's bar
    neurons = list((out / "runs" / "1" / "layers").glob("*/neurons/*/index.html"))
    assert len(neurons) == 360
    for page in [out / "index.html", *neurons[:40], *(out / "runs" / "1").glob("*/*/index.html")]:
        for reference in re.findall(r'(?:href|src)="([^"]+)"', page.read_text()):
            assert (page.parent / reference.split("#")[0]).is_file(), (page, reference)
    if not Path("/usr/bin/chromium").exists():
        return
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_page()
        page.goto((out / "runs" / "1" / "layers" / "features.17" / "index.html").as_uri())
        page.click('table.neurons th:has-text("colour")')
        cells = page.locator("table.neurons tbody tr td:nth-child(5)").all_inner_texts()
        values = [float(cell) for cell in cells if cell.strip() not in ("", "—")]
        assert values == sorted(values, reverse=True) and len(values) > 10
        page.click("table.neurons tbody tr:first-child td:nth-child(2) a")
        page.wait_for_url("**/neurons/*/index.html")
        broken = page.evaluate(
            "Array.from(document.images).filter(i => !i.complete || !i.naturalWidth).length"
        )
        assert broken == 0
        browser.close()


def test_stopping_the_demo_with_sigterm_stops_its_worker(tmp_path):
    """``kill`` or ``docker stop`` used to leave the demo's background worker running."""
    import contextlib
    import os
    import signal
    import subprocess
    import sys

    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from server.cli.demo import background_worker\n"
        "with background_worker('cpu', Path(sys.argv[1])) as worker:\n"
        "    print(worker.pid, flush=True)\n"
        "    time.sleep(120)\n"
    )
    env = {**os.environ, "NEURONSCOPE_DATA_DIR": str(tmp_path / "data")}
    demo = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path / "worker.log")],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    worker = int(demo.stdout.readline())
    demo.send_signal(signal.SIGTERM)
    try:
        assert demo.wait(timeout=60) == 128 + signal.SIGTERM
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            return  # stopped and reaped with the demo
        raise AssertionError(f"the worker {worker} outlived the demo")
    finally:
        for pid in (demo.pid, worker):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
