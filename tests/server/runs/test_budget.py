"""The estimate printed before a run: within a factor of two of what the run then takes, and a
long run is not started without the user's word."""

from __future__ import annotations

import json

import pytest

import server.runs.budget
from analysis.data import scan_image_folder
from analysis.layers import list_layers
from analysis.models import load_model
from server.runs.budget import estimate_run
from server.runs.selection import select_layers
from tests.support.cli import run_cli
from tests.support.images import write_photo


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("budget") / "photos"
    for index in range(10):
        write_photo(folder / f"{index}.jpg", 160, 120, seed=index)
    return folder


@pytest.mark.parametrize(
    ("model", "size", "layers"),
    [
        ("torchvision:resnet18", 80, "layer1,layer2"),
        ("torchvision:vgg11", 64, "features.1,features.4,features.9"),
    ],
)
def test_the_estimate_is_within_a_factor_of_two_of_the_run(
    capsys, data_dir, photos, model, size, layers
):
    loaded = load_model(model, input_size=size)
    chosen = select_layers(list_layers(loaded.module, loaded.input), layers.split(","))
    budget = estimate_run(
        loaded, scan_image_folder(photos), chosen, top_k=2, batch_size=64, indexes=True
    )
    args = ("--input-size", str(size), "--layers", layers, "--top-k", "2", "--json")
    code, out, err = run_cli(capsys, "analyze", "--model", model, "--data", str(photos), *args)
    assert code == 0, err
    stats = json.loads(out)["stats"]
    measured = stats["sweep_seconds"] + stats["features_seconds"] + stats["indexes_seconds"]
    assert measured > 2  # long enough that the comparison means something
    print(f"{model}: estimated {budget.seconds:.1f} s, measured {measured:.1f} s")
    assert measured / 2 <= budget.seconds <= measured * 2, (budget.lines(), stats)
    assert {stage.name for stage in budget.stages} == {
        "sweep", "Neuron Features", "physiology", "indexes",
    }  # fmt: skip


def test_a_long_run_asks_first_and_says_what_shrinks_it(capsys, data_dir, photos, monkeypatch):
    monkeypatch.setattr(server.runs.budget, "LONG_SECONDS", 0.0)  # any run is "long" now
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda _prompt: "n")
    args = ("--model", "torchvision:resnet18", "--input-size", "64", "--layers", "layer1")
    code, _out, err = run_cli(capsys, "analyze", *args, "--data", str(photos), "--top-k", "3")
    assert code == 1 and "not started" in err
    assert "estimate for 1 layer(s), 64 neurons, 10 images" in err
    assert "--no-indexes" in err and "--top-k" in err and "--layers" in err
    code, out, _ = run_cli(capsys, "runs", "--json")
    assert json.loads(out) == []  # nothing was swept or stored
    code, _out, err = run_cli(
        capsys, "analyze", *args, "--data", str(photos), "--top-k", "3", "--no-indexes", "--yes"
    )
    assert code == 0 and "start it?" not in err
