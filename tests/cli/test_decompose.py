"""``neuronscope decompose`` and ``compose``: computed in this process, stored as the
dashboard's are."""

from __future__ import annotations

import json

from tests.support.cli import run_cli
from tests.support.images import red_left_image


def test_cli_decompose_and_compose(capsys, analysed_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("NEURONSCOPE_DATA_DIR", str(analysed_dir))
    capsys.readouterr()  # what the fixture's analysis printed
    image = tmp_path / "red.jpg"
    red_left_image().save(image)
    code, out, err = run_cli(capsys, "decompose", "1", str(image), "--layer", "1", "--json")
    assert code == 0, err
    record = json.loads(out)
    assert record["status"] == "done" and list(record["layers"]) == ["1"]
    assert 0 in {n["channel"] for n in record["layers"]["1"]["neurons"]}
    code, out, err = run_cli(capsys, "compose", "1", "4", "0", "--mode", "relevance", "--json")
    assert code == 0, err
    assert json.loads(out)["tree"]["children"][0]["channel"] == 0
    code, _, err = run_cli(capsys, "compose", "1", "1", "0")
    assert code == 1 and "first layer" in err
    code, _, err = run_cli(capsys, "decompose", "1", str(tmp_path / "missing.png"))
    assert code == 1 and "not found" in err
