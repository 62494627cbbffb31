"""``neuronscope rank`` and ``neuron``: stored results read back, and unknown names refused."""

from __future__ import annotations

import json

from tests.support.cli import analyze, run_cli


def test_rank_sorts_a_layer_by_any_index(capsys, data_dir, square_folder):
    result = analyze(capsys, square_folder)
    code, out, _ = run_cli(
        capsys, "rank", str(result["run"]), "1", "--by", "color", "--desc", "--json"
    )
    assert code == 0
    ranked = json.loads(out)
    assert [r["channel"] for r in ranked] == [0, 1, 2]  # red detector, luminance, dead
    assert ranked[0]["color"] > ranked[1]["color"] and ranked[2]["color"] is None
    code, _, err = run_cli(capsys, "rank", str(result["run"]), "1", "--by", "nonsense")
    assert code == 1 and "no index 'nonsense'" in err


def test_unknown_layer_of_an_existing_run_is_named(capsys, data_dir, square_folder):
    result = analyze(capsys, square_folder)
    code, _, err = run_cli(capsys, "neuron", str(result["run"]), "9", "0")
    assert code == 1 and "has no layer '9'" in err
    code, _, err = run_cli(capsys, "neuron", str(result["run"]), "4", "7")
    assert code == 1 and "channels 0..1" in err
