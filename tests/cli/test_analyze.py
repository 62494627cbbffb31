"""The command line end to end: analyse, list runs, read a neuron back, and fail clearly."""

from __future__ import annotations

import json

import pytest

from tests.support.cli import analyze, run_cli
from tests.support.images import write_photo
from tests.support.models import RED_DETECTOR_ARGS
from tests.support.web import web_client


def test_analyze_then_read_back_a_neuron(capsys, data_dir, square_folder):
    result = analyze(capsys, square_folder)
    assert result["status"] == "done" and result["reused"] is False
    assert result["layers"] == ["1", "4"]

    code, out, _ = run_cli(capsys, "neuron", str(result["run"]), "4", "0", "--json")
    assert code == 0
    neuron = json.loads(out)
    assert neuron["layer"] == "4" and neuron["channel"] == 0 and neuron["dead"] is False
    indexes = neuron["indexes"]
    assert indexes["color"] > 0.5 and indexes["class"] == 1.0  # it only fires on red squares
    assert {"color", "orientation", "symmetry", "class", "shape"} <= set(indexes)
    details = indexes["details"]
    assert len(details["orientation_curve"]) == 23 and len(details["symmetry_axes"]) == 4
    assert details["top_class"] == "red" and details["class_distribution"] == {"red": 1.0}
    assert details["population_code"] == 1
    assert len(details["hue_curve"]) == 360
    assert details["spectral_class"] in {"opponent", "non-opponent", "unresponsive"}
    assert details["spatial_class"] in {"opponent", "non-opponent", "unresponsive"}
    assert isinstance(indexes["double_opponent"], bool)
    assert len(neuron["top"]) == 5
    assert all(top["image"].startswith("red/") for top in neuron["top"])
    values = [top["value"] for top in neuron["top"]]
    assert values == sorted(values, reverse=True)
    first = neuron["top"][0]
    # Layer "4" sees 8×8 input pixels with stride 2 and offset -3 (two 3×3 convs and a 2×2 pool).
    assert first["window"] == [
        -3 + 2 * first["row"],
        5 + 2 * first["row"],
        -3 + 2 * first["col"],
        5 + 2 * first["col"],
    ]
    assert neuron["nf"].endswith(".png")
    from pathlib import Path

    assert Path(neuron["nf"]).is_file()

    code, out, _ = run_cli(capsys, "neuron", str(result["run"]), "1", "2", "--json")
    assert code == 0
    dead = json.loads(out)
    assert dead["dead"] is True and dead["nf"] is None
    assert dead["indexes"]["color"] is None and dead["indexes"]["class"] is None


def test_indexes_can_be_skipped_and_added_later(capsys, data_dir, square_folder):
    first = analyze(capsys, square_folder, "--no-indexes")
    run = str(first["run"])
    code, out, _ = run_cli(capsys, "neuron", run, "4", "0", "--json")
    assert code == 0 and json.loads(out)["indexes"] == {}
    again = analyze(capsys, square_folder)
    assert again["run"] == first["run"] and again["reused"]
    code, out, _ = run_cli(capsys, "neuron", run, "4", "0", "--json")
    assert code == 0 and json.loads(out)["indexes"]["color"] > 0.5


def test_the_same_analysis_reuses_its_run(capsys, data_dir, square_folder):
    first = analyze(capsys, square_folder)
    second = analyze(capsys, square_folder)
    assert second["run"] == first["run"] and second["reused"] is True
    other = analyze(capsys, square_folder, "--resize", "center-crop")
    assert other["run"] != first["run"]
    drafted = analyze(capsys, square_folder, "--jpeg-draft")  # decodes other pixels: its own run
    assert drafted["run"] not in (first["run"], other["run"])

    code, out, _ = run_cli(capsys, "runs", "--json")
    assert code == 0
    runs = json.loads(out)
    assert [run["id"] for run in runs] == [first["run"], other["run"], drafted["run"]]
    assert {"id", "status", "model", "dataset", "layers", "created"} <= set(runs[0])
    assert [(run["resize"], run["jpeg_draft"]) for run in runs] == [
        ("whole", False),
        ("center-crop", False),
        ("whole", True),
    ]


def test_a_run_that_cannot_fit_on_the_disk_is_refused_before_it_starts(
    capsys, data_dir, square_folder, monkeypatch
):
    from server.storage.artifacts import ArtifactStore

    monkeypatch.setattr(ArtifactStore, "free_bytes", lambda self: 50_000_000)
    code, out, err = run_cli(
        capsys, "analyze", "--model", "torchvision:densenet121", "--data", str(square_folder),
        "--layers", "features.norm5", "--input-size", "224", "--workers", "0", "--no-indexes",
        "--top-k", "100",
    )  # fmt: skip
    # 1,024 neurons of a 2,071 px window that the 224 px image reaches over 416 px: a 231 px
    # display PNG whose 47 px reached blocks count at half their bytes and the grey rest at 2 %,
    # and 100 tiles of 95 px (27 kB each) of which the image fills 1.2 % (a quarter of that
    # stored) and grey the rest: 67.8 kB a neuron.
    assert code == 1 and out == ""
    assert "need 69.4 MB" in err and "50.0 MB free" in err and "smaller --top-k" in err
    assert not list(data_dir.rglob("*.png"))  # nothing computed, nothing written
    code, out, _ = run_cli(capsys, "runs", "--json")
    assert [run["status"] for run in json.loads(out)] == ["failed"]


def test_layers_command_lists_receptive_fields(capsys):
    code, out, _ = run_cli(capsys, "layers", "torchvision:vgg16", "--json")
    assert code == 0
    layers = {layer["name"]: layer for layer in json.loads(out)}
    assert layers["features.28"]["rf_size"] == [196, 196]
    assert layers["features.28"]["rf_stride"] == [16, 16]
    assert layers["features.28"]["type"] == "Conv2d" and layers["features.28"]["channels"] == 512
    assert layers["features.28"]["activation"] == "features.29"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["analyze", *RED_DETECTOR_ARGS, "--data", "/no/such/folder"], "image folder not found"),
        (
            ["analyze", *RED_DETECTOR_ARGS, "--data", "{folder}", "--layers", "nope"],
            "unknown layer 'nope'",
        ),
        (
            [
                "analyze",
                "--model",
                "torchvision:alexnet",
                "--weights",
                "/no/w.pth",
                "--data",
                "{folder}",
            ],
            "weights file not found",
        ),
        (
            [
                "analyze",
                "--model",
                "torchvision:alexnet",
                "--weights",
                "{junk}",
                "--data",
                "{folder}",
            ],
            "not a readable weights file",
        ),
        (
            ["analyze", *RED_DETECTOR_ARGS, "--data", "{folder}", "--workers", "-1"],
            "--workers must be 0 or more",
        ),
        (["neuron", "99", "4", "0"], "no run 99"),
        (["layers", "torchvision:nonsense"], "unknown torchvision model"),
    ],
)
def test_bad_input_exits_non_zero_with_one_readable_line(
    capsys, data_dir, square_folder, tmp_path, argv, message
):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"definitely not torch")
    argv = [a.format(folder=square_folder, junk=junk) for a in argv]
    code, _, err = run_cli(capsys, *argv)
    assert code == 1
    assert message in err
    assert err.startswith("neuronscope: error:") and err.count("\n") == 1


def test_the_same_schema_and_queries_work_on_postgresql(
    capsys, data_dir, square_folder, postgres_url, monkeypatch
):
    monkeypatch.setenv("NEURONSCOPE_DATABASE_URL", postgres_url)
    result = analyze(capsys, square_folder)
    code, out, _ = run_cli(capsys, "neuron", str(result["run"]), "4", "0", "--json")
    assert code == 0
    neuron = json.loads(out)
    assert neuron["indexes"]["class"] == 1.0 and len(neuron["top"]) == 5
    code, out, _ = run_cli(
        capsys, "rank", str(result["run"]), "1", "--by", "color", "--desc", "--json"
    )
    assert [r["channel"] for r in json.loads(out)] == [0, 1, 2]
    assert analyze(capsys, square_folder)["reused"] is True
    from server.config import load_settings

    settings = load_settings(
        {"NEURONSCOPE_DATA_DIR": str(data_dir), "NEURONSCOPE_DATABASE_URL": postgres_url}
    )
    with web_client(settings) as client:
        table = client.get(f"/runs/{result['run']}/layers/1.json?_sort_desc=color").json()
        assert [r["channel"] for r in table["rows"]] == [0, 1, 2]
        assert table["rows"][0]["spectral_class"] in {"opponent", "non-opponent", "unresponsive"}
        assert client.get(f"/runs/{result['run']}/layers/4/neurons/0").status_code == 200


def test_a_folder_of_camera_sized_jpegs_gets_the_draft_suggestion(
    capsys, data_dir, tmp_path, square_folder
):
    for i in range(3):
        write_photo(tmp_path / "photos" / f"{i}.jpg", 400, 300, seed=i)
    argv = [*RED_DETECTOR_ARGS, "--data", str(tmp_path / "photos"), "--layers", "4"]
    code, _out, err = run_cli(capsys, "analyze", *argv, "--top-k", "2", "--no-indexes")
    assert code == 0
    assert "3 of 3 sampled images are JPEGs" in err and "1/8 scale" in err
    code, _out, err = run_cli(capsys, "analyze", *argv, "--top-k", "2", "--jpeg-draft")
    assert code == 0 and "sampled" not in err
    code, _out, err = run_cli(capsys, "analyze", *RED_DETECTOR_ARGS, "--data", str(square_folder))
    assert code == 0 and "sampled" not in err  # PNG squares: nothing to suggest
