"""Float Neuron Features on demand: a run stores none, the CLI, a worker and the browser compute
one from the stored top-K as the definition says, and a folder that changed is refused."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from analysis.data import load_rgb
from analysis.neuron_feature import cut_patch, full_window
from server.config import load_settings
from tests.support.cli import run_cli
from tests.support.images import write_photo
from tests.support.jobs import drain, jobs, settings_for
from tests.support.models import RED_DETECTOR_ARGS
from tests.support.web import web_client

SIZE = 32  # RED_DETECTOR_ARGS' input size


@pytest.fixture
def photo_run(capsys, data_dir, tmp_path) -> tuple[Path, dict]:
    """The red detector's layers 1 and 4 over nine JPEG photographs, K = 4."""
    folder = tmp_path / "photos"
    for index in range(9):
        write_photo(folder / f"{index}.jpg", 60 + 7 * index, 45, seed=index)
    args = ("--data", str(folder), "--layers", "1,4", "--top-k", "4", "--workers", "0")
    code, out, err = run_cli(capsys, "analyze", *RED_DETECTOR_ARGS, *args, "--json")
    assert code == 0, err
    return folder, json.loads(out)


def by_definition(folder: Path, neuron: dict) -> np.ndarray:
    """docs/algorithms.md §3 computed the direct way: whole patches, grey outside the image."""
    top = neuron["top"]
    weights = np.clip([t["value"] / top[0]["value"] for t in top], 0, None)
    patches = [
        cut_patch(load_rgb(folder / t["image"], SIZE), tuple(t["window"])).astype(np.float64)
        for t in top
    ]
    return np.tensordot(weights / weights.sum(), np.stack(patches), axes=1)


def neuron_json(capsys, layer: str, channel: int, *extra: str) -> dict:
    code, out, err = run_cli(capsys, "neuron", "1", layer, str(channel), "--json", *extra)
    assert code == 0, err
    return json.loads(out)


def test_a_run_stores_no_float_arrays_and_computes_them_exactly_when_asked(
    capsys, photo_run, data_dir, tmp_path
):
    folder, _result = photo_run
    store = data_dir / "artifacts"
    assert list(store.rglob("*.pack")) and not list(store.rglob("*.npy"))  # pictures, packed
    for channel in (0, 1):
        before = neuron_json(capsys, "4", channel)
        assert before["nf_array"] is None and before["nf"]
        target = tmp_path / f"nf-{channel}.npy"
        after = neuron_json(capsys, "4", channel, "--nf-array", str(target))
        array = np.load(target, allow_pickle=False)
        assert after["nf_array"] and np.array_equal(np.load(after["nf_array"]), array)
        expected = by_definition(folder, after)
        whole = full_window(array, tuple(after["nf_box"]), expected.shape[:2])
        assert np.abs(whole - expected).max() <= 1e-6 * np.abs(expected).max()
    assert len(list(store.rglob("*.npy"))) == 2  # kept for the next time, and only those


def test_a_changed_folder_is_refused_never_answered_wrongly(capsys, photo_run, tmp_path):
    folder, _result = photo_run
    write_photo(folder / "added.jpg", 50, 40, seed=99)
    code, _out, err = run_cli(capsys, "neuron", "1", "4", "0", "--nf-array", str(tmp_path / "x"))
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "changed since the run" in err and not (tmp_path / "x").exists()


def test_the_browser_asks_a_worker_and_then_offers_the_download(photo_run, data_dir, capsys):
    folder, _result = photo_run
    settings = load_settings({"NEURONSCOPE_DATA_DIR": str(data_dir)})
    web = web_client(settings)
    page = web.get("/runs/1/layers/4/neurons/0").text
    assert "compute the float array" in page and ".npy" not in page
    api = "/api/runs/1/layers/4/neurons/0/nf_array"
    assert web.get(api).status_code == 404 and not jobs(settings)  # reading asks nothing
    asked = web.post("/runs/1/layers/4/neurons/0/nf_array", follow_redirects=False)
    assert asked.status_code == 303
    assert (
        web.get(api).status_code == 202
        and "float array: computing" in web.get("/runs/1/layers/4/neurons/0").text
    )
    drain(settings_for(data_dir))
    download = web.get(api)
    assert download.status_code == 200
    served = np.load(io.BytesIO(download.content), allow_pickle=False)
    detail = neuron_json(capsys, "4", 0)
    r0, r1, c0, c1 = detail["nf_box"]
    assert served.dtype == np.float32 and served.shape == (r1 - r0, c1 - c0, 3)
    assert np.array_equal(served, np.load(detail["nf_array"]))
    assert "float array</a>" in web.get("/runs/1/layers/4/neurons/0").text

    write_photo(folder / "added.jpg", 50, 40, seed=99)  # the folder changes under the run
    again = web.post("/api/runs/1/layers/4/neurons/1/nf_array")
    assert again.status_code == 202
    drain(settings_for(data_dir))
    refused = web.get("/api/runs/1/layers/4/neurons/1/nf_array")
    assert refused.status_code == 409 and "changed since the run" in refused.json()["detail"]
    assert "could not be computed" in web.get("/runs/1/layers/4/neurons/1").text
