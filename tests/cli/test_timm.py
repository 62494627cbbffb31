"""timm's families end to end: ``analyze --no-indexes`` on every default layer of nine of them
(random weights, 64 px inputs, four JPEG photographs), each run storing exactly the layers
``layers`` marks as default, with the model's own normalisation and resize."""

from __future__ import annotations

import json

import pytest

from tests.support.cli import run_cli
from tests.support.images import write_photo

timm = pytest.importorskip("timm")

FAMILIES = (
    "resnet10t",  # ResNet-D stem
    "mobilenetv3_small_050",  # fused BatchNormAct, hard-swish, SE gates
    "regnetx_002",
    "ghostnet_050",
    "convnext_atto",  # channels-last blocks
    "nf_regnet_b0",  # normaliser-free: its own scaled activations
    "dla34",
    "hrnet_w18_small",  # parallel branches
    "repvgg_a0",
)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    for index in range(4):
        write_photo(folder / f"{index}.jpg", 80 + 9 * index, 60, seed=index)
    return folder


@pytest.mark.parametrize("name", FAMILIES)
def test_every_default_layer_of_a_timm_family(name, photos, capsys, data_dir):
    spec = f"timm:{name}"
    code, out, err = run_cli(capsys, "layers", spec, "--input-size", "64", "--json")
    assert code == 0, err
    defaults = [layer["name"] for layer in json.loads(out) if layer["default"]]
    assert defaults, f"{name} has no default layer"

    args = ("--data", str(photos), "--top-k", "2", "--no-indexes", "--workers", "0", "--json")
    code, out, err = run_cli(capsys, "analyze", "--model", spec, "--input-size", "64", *args)
    assert code == 0, err
    run = json.loads(out)
    assert run["layers"] == defaults and run["status"] == "done"
    config = timm.data.resolve_data_config({}, model=timm.create_model(name))
    assert run["mean"] == list(config["mean"]) and run["std"] == list(config["std"])
    assert run["resize"].startswith("center-crop") and run["input_shape"] == [64, 64]
