"""Every CNN a researcher brings: torchvision's families and unusual modules, end to end."""

from __future__ import annotations

import json

import pytest

from analysis.models import CNN_FAMILIES
from tests.test_cli import run_cli

SMALL = ("--top-k", "3", "--workers", "0", "--no-indexes", "--json")


def layer_names(capsys, spec: str, *extra: str) -> list[str]:
    code, out, err = run_cli(capsys, "layers", spec, *extra, "--json")
    assert code == 0, err
    return [layer["name"] for layer in json.loads(out)]


@pytest.mark.parametrize("family", CNN_FAMILIES)
def test_every_family_is_analysed_end_to_end(capsys, data_dir, square_folder, family):
    spec = f"torchvision:{family}"
    size = "96" if family == "inception_v3" else "64"  # Inception needs at least 75 px
    names = layer_names(capsys, spec, "--input-size", size)
    # A third of the way in: late layers' fields are many times the 64 px image, and their NFs
    # (thousands of channels of patches that size) would dominate the test's time.
    deeper = names[len(names) // 3]
    code, out, err = run_cli(
        capsys, "analyze", "--model", spec, "--data", str(square_folder),
        "--layers", f"{names[0]},{deeper}", "--input-size", size, *SMALL,
    )  # fmt: skip
    assert code == 0, err
    run = json.loads(out)["run"]
    code, out, err = run_cli(capsys, "neuron", str(run), deeper, "0", "--json")
    neuron = json.loads(out)
    assert code == 0 and len(neuron["top"]) == 3
    assert neuron["dead"] or neuron["nf"]


@pytest.mark.parametrize("factory", ["varied_tuple_net", "varied_dict_net"])
def test_unusual_activations_gates_norms_and_outputs(capsys, data_dir, square_folder, factory):
    spec = f"tests.tiny_models:{factory}"
    names = layer_names(capsys, spec, "--input-size", "32")
    # SE gates scale channels: the gated map keeps the 5-pixel window of the two 3×3 convs.
    fields = {layer["name"]: layer for layer in json.loads(run_cli(
        capsys, "layers", spec, "--input-size", "32", "--json")[1])}  # fmt: skip
    assert fields["features.4"]["rf_size"] == [5, 5]
    assert fields["features.1"]["activation"] is None and "features.1" in names
    code, out, err = run_cli(
        capsys, "analyze", "--model", spec, "--data", str(square_folder),
        "--layers", "features.1,features.[57],features.1?", "--input-size", "32",
        "--top-k", "4", "--workers", "0", "--json",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["layers"] == [
        "features.1", "features.5", "features.7", "features.10", "features.11", "features.12",
        "features.13",
    ]  # fmt: skip


def test_a_pattern_that_matches_nothing_and_a_model_that_cannot_run_say_so(
    capsys, data_dir, square_folder
):
    code, _, err = run_cli(
        capsys, "analyze", "--model", "tests.tiny_models:varied_tuple_net",
        "--data", str(square_folder), "--layers", "nothing.*", "--input-size", "32",
    )  # fmt: skip
    assert code == 1 and "no layer matches 'nothing.*'" in err
    code, _, err = run_cli(capsys, "layers", "tests.tiny_models:greyscale_only_net")
    assert code == 1 and "forward fails on a 224×224 RGB image" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
