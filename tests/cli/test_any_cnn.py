"""Every CNN a researcher brings: torchvision's families and unusual modules, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from analysis.models import CNN_FAMILIES
from tests.support.cli import run_cli

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


def test_a_window_thirty_times_the_image_stores_only_what_the_image_reaches(
    capsys, data_dir, square_folder, tmp_path
):
    """DenseNet-121's last layers see 2,071 px windows; on 64 px images a 2 × 2 map reaches
    96 px of them. The NF array, computed when asked for, holds that part (0.1 MB, not 51 MB);
    the rest is grey."""
    import numpy as np
    from PIL import Image

    from analysis.neuron_feature import GREY, full_window

    layer = "features.denseblock4.denselayer16.conv2"
    code, out, err = run_cli(
        capsys, "analyze", "--model", "torchvision:densenet121", "--data", str(square_folder),
        "--layers", f"features.conv0,{layer}", "--input-size", "64", *SMALL,
    )  # fmt: skip
    assert code == 0, err
    run = json.loads(out)["run"]
    code, out, err = run_cli(
        capsys, "neuron", str(run), layer, "0", "--json", "--nf-array", str(tmp_path / "nf.npy")
    )
    assert code == 0, err
    neuron = json.loads(out)
    assert neuron["top"][0]["window"][1] - neuron["top"][0]["window"][0] == 2071
    assert neuron["nf_box"] == [1021 - 32, 1021 + 64, 1021 - 32, 1021 + 64]
    nf = np.load(neuron["nf_array"])
    assert nf.shape == (96, 96, 3) and not np.all(nf == GREY)
    whole = full_window(nf, tuple(neuron["nf_box"]), (2071, 2071))
    assert whole.shape == (2071, 2071, 3) and whole[0, 0].tolist() == [GREY] * 3
    with Image.open(neuron["nf"]) as shown:  # the whole window, shrunk 9 times
        assert shown.size == (231, 231)
    code, out, err = run_cli(
        capsys, "neuron", str(run), "features.conv0", "0", "--json", "--nf-array", "/dev/null"
    )
    first = json.loads(out)  # a window inside the image keeps all of it
    assert first["nf_box"] == [0, 7, 0, 7] and np.load(first["nf_array"]).shape == (7, 7, 3)
    # Decompositions paste these parts where the whole NFs went (tested in test_decomposition).
    code, out, err = run_cli(capsys, "compose", str(run), layer, "0", "--source",
                             "features.conv0", "--mode", "activation", "--json")  # fmt: skip
    assert code == 0, err
    key = json.loads(out)["image"].rsplit("/", 1)[-1]  # /artifacts/KEY
    store = Path(neuron["nf"]).parent.parent
    with Image.open(store / key[:2] / key) as composite:  # the neuron's whole window
        assert composite.size == (2071, 2071)


@pytest.mark.parametrize("factory", ["varied_tuple_net", "varied_dict_net"])
def test_unusual_activations_gates_norms_and_outputs(capsys, data_dir, square_folder, factory):
    spec = f"tests.support.models:{factory}"
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
        capsys, "analyze", "--model", "tests.support.models:varied_tuple_net",
        "--data", str(square_folder), "--layers", "nothing.*", "--input-size", "32",
    )  # fmt: skip
    assert code == 1 and "no layer matches 'nothing.*'" in err
    code, _, err = run_cli(capsys, "layers", "tests.support.models:fixed_size_net")
    assert code == 1 and "forward fails on a 224×224 RGB image in module '3' (Linear)" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


RAW = ("--mean", "0", "--std", "1")


def analysed_neuron(capsys, folder, spec: str, layer: str, *extra: str) -> tuple[dict, dict]:
    """Analyse ``spec`` (with indexes) and read back channel 0 of ``layer``."""
    code, out, err = run_cli(
        capsys, "analyze", "--model", spec, "--data", str(folder), "--layers", f"1,{layer}",
        "--top-k", "5", "--workers", "0", "--json", *extra,
    )  # fmt: skip
    assert code == 0, err
    run = json.loads(out)["run"]
    code, out, err = run_cli(capsys, "neuron", str(run), layer, "0", "--json")
    assert code == 0, err
    code, summary, err = run_cli(capsys, "runs", "--json")
    assert code == 0, err
    return json.loads(out), next(r for r in json.loads(summary) if r["id"] == run)


def test_a_greyscale_model_reads_images_as_grey_and_is_shown_no_hues(
    capsys, data_dir, square_folder, tmp_path
):
    import numpy as np
    import torch

    from tests.support.models import darkness_detector

    spec = "tests.support.models:darkness_detector"
    weights = tmp_path / "darkness.pth"  # a user's module and its state-dict file
    torch.save(darkness_detector().state_dict(), weights)
    options = ("--weights", str(weights), "--input-size", "32", *RAW)
    code, out, err = run_cli(capsys, "layers", spec, *options, "--json")
    assert code == 0, err
    assert {layer["name"]: layer["rf_size"] for layer in json.loads(out)}["4"] == [8, 8]
    neuron, run = analysed_neuron(capsys, square_folder, spec, "4", *options)
    assert run["input_channels"] == 1
    # Luma, not the RGB mean: the blue squares are the darkest to a greyscale camera.
    assert all(top["image"].startswith("blue/") for top in neuron["top"])
    code, _out, err = run_cli(
        capsys, "neuron", str(run["id"]), "4", "0", "--nf-array",
        str(tmp_path / "nf.npy"),
    )  # fmt: skip
    assert code == 0, err
    nf = np.load(tmp_path / "nf.npy")  # computed from the grey images the model saw
    assert np.allclose(nf[..., 0], nf[..., 1]) and np.allclose(nf[..., 0], nf[..., 2])
    indexes = neuron["indexes"]
    assert indexes["color"] == pytest.approx(0.0, abs=1e-6)  # it cannot see colour
    details = indexes["details"]
    assert details["spectral_class"] == "achromatic" and details["hue_curve"] == []
    assert len(details["grating_orientation_tuning"]) == 10
    assert details["spatial_class"] in {"opponent", "non-opponent"}


def test_a_non_square_input_is_analysed_at_its_own_height_and_width(
    capsys, data_dir, square_folder
):
    from tests.support.models import RED_DETECTOR_ARGS

    spec = "tests.support.models:red_detector"
    code, out, err = run_cli(capsys, "layers", spec, "--input-size", "24,48", "--json")
    assert code == 0, err
    assert {layer["name"]: layer["map_size"] for layer in json.loads(out)}["4"] == [12, 24]
    args = (*RED_DETECTOR_ARGS[2:6], "--input-size", "24,48")  # raw pixels, 24 × 48
    neuron, run = analysed_neuron(capsys, square_folder, spec, "4", *args)
    assert run["input_shape"] == [24, 48] and run["input_channels"] == 3
    assert all(top["image"].startswith("red/") for top in neuron["top"])
    assert neuron["indexes"]["color"] > 0.5
    assert all(0 <= top["row"] < 12 and 0 <= top["col"] < 24 for top in neuron["top"])
    code, out, err = run_cli(
        capsys, "decompose", str(run["id"]), str(square_folder / "red/000.png"), "--json"
    )
    assert code == 0, err
    found = json.loads(out)["layers"]["4"]["neurons"]
    assert found[0]["channel"] == 0  # the red detector explains a red square
