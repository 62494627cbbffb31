"""What a run stores does not move: top-K, selectivity indexes and the float NF of a fixed
folder of JPEG photographs, pinned to the values of the code before the float NFs were computed
on demand (commit 04f9c79, whose runs still stored the arrays)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.support.cli import run_cli
from tests.support.images import write_photo
from tests.support.models import RED_DETECTOR_ARGS

PINNED = {
    "1/0": {
        "top": [
            [3, 0.851416, 14, 13],
            [1, 0.851198, 16, 22],
            [7, 0.848802, 16, 21],
            [2, 0.848802, 13, 13],
        ],
        "indexes": {
            "class": None,
            "color": 1.0,
            "color_bounded": 1.0,
            "double_opponent": 0,
            "orientation": 0.0,
            "shape": 0.0,
            "symmetry": 1.0,
        },
        "nf_sum": 11.6196,
        "nf_shape": [3, 3, 3],
        "nf_pixel": [0.998039, 0.098037, 0.195096],
    },
    "1/2": "dead",
    "4/0": {
        "top": [[1, 0.846042, 7, 11], [2, 0.845582, 6, 6], [0, 0.844541, 8, 6], [3, 0.84275, 5, 6]],
        "indexes": {
            "class": None,
            "color": 1.0,
            "color_bounded": 1.0,
            "double_opponent": 0,
            "orientation": 0.001438,
            "shape": 0.015224,
            "symmetry": 1.0,
        },
        "nf_sum": 82.9011,
        "nf_shape": [8, 8, 3],
        "nf_pixel": [0.992163, 0.099999, 0.202931],
    },
    "4/1": {
        "top": [
            [3, 0.769095, 14, 14],
            [7, 0.768999, 14, 14],
            [6, 0.76895, 14, 14],
            [5, 0.768902, 14, 14],
        ],
        "indexes": {
            "class": None,
            "color": 0.002773,
            "color_bounded": 0.004293,
            "double_opponent": 0,
            "orientation": 0.013437,
            "shape": 0.094889,
            "symmetry": 1.0,
        },
        "nf_sum": 133.5569,
        "nf_shape": [8, 8, 3],
        "nf_pixel": [0.910784, 0.912745, 0.49902],
    },
}


def test_top_k_indexes_and_float_nfs_keep_their_values(capsys, data_dir, tmp_path):
    folder = tmp_path / "photos"
    for index in range(9):
        write_photo(folder / f"{index}.jpg", 60 + 7 * index, 45, seed=index)
    args = ("--data", str(folder), "--layers", "1,4", "--top-k", "4", "--workers", "0")
    code, _out, err = run_cli(capsys, "analyze", *RED_DETECTOR_ARGS, *args, "--json")
    assert code == 0, err
    for name, pinned in PINNED.items():
        layer, channel = name.split("/")
        code, out, err = run_cli(capsys, "neuron", "1", layer, channel, "--json")
        assert code == 0, err
        neuron = json.loads(out)
        if pinned == "dead":
            assert neuron["dead"]
            continue
        top = [[t["image_index"], t["value"], t["row"], t["col"]] for t in neuron["top"]]
        assert [t[0::2] + t[3:] for t in top] == [t[0::2] + t[3:] for t in pinned["top"]]
        assert [t[1] for t in top] == pytest.approx([t[1] for t in pinned["top"]], abs=1e-6)
        indexes = {k: v for k, v in neuron["indexes"].items() if k != "details"}
        assert indexes == pytest.approx(pinned["indexes"], abs=1e-6)
        path = tmp_path / f"{layer}-{channel}.npy"
        code, _out, err = run_cli(capsys, "neuron", "1", layer, channel, "--nf-array", str(path))
        assert code == 0, err
        array = np.load(path)
        assert list(array.shape) == pinned["nf_shape"]
        assert float(array.astype(np.float64).sum()) == pytest.approx(pinned["nf_sum"], abs=2e-4)
        middle = array[array.shape[0] // 2, array.shape[1] // 2]
        assert middle.tolist() == pytest.approx(pinned["nf_pixel"], abs=2e-6)
