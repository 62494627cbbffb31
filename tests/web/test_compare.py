"""Runs compared side by side: a run against itself has no difference, two runs of one
architecture are compared neuron by neuron with the values each run's own table gives, and the
page, its twins and the CLI agree."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from server.config import load_settings
from tests.support.cli import environment, red_detector_analysis, run_cli
from tests.support.images import write_square_folder
from tests.support.web import web_client

INDEXES = ("color", "orientation", "symmetry", "class", "shape")


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Runs 1 and 2: the red detector over the same squares with top-6 and top-3."""
    from server.cli.main import main

    root = tmp_path_factory.mktemp("compare")
    folder = write_square_folder(root / "squares", per_class=8)
    with environment(NEURONSCOPE_DATA_DIR=str(root / "data")):
        assert main(red_detector_analysis(folder, 6)) == 0
        assert main(red_detector_analysis(folder, 3)) == 0
    return root / "data"


@pytest.fixture
def client(two_runs):
    with web_client(load_settings({"NEURONSCOPE_DATA_DIR": str(two_runs)})) as test_client:
        yield test_client


def test_a_run_compared_with_itself_differs_nowhere(client):
    found = client.get("/compare.json?runs=1,1").json()["comparison"]
    assert found["matching"] == "name" and found["same_architecture"]
    for layer in found["layers"]:
        for name in INDEXES:
            (test,) = layer["tests"][name]
            if test["ks"] is not None:
                assert test["ks"] == 0.0 and test["p"] == 1.0
    rows = client.get("/compare.json?runs=1,1&layer=4").json()["rows"]
    deltas = [row[f"delta_{name}"] for row in rows for name in INDEXES]
    assert deltas and all(delta in (0.0, None) for delta in deltas)
    assert any(delta == 0.0 for delta in deltas)


def test_two_runs_neuron_by_neuron_match_their_own_tables(client):
    first = {r["channel"]: r for r in client.get("/runs/1/layers/4.json").json()["rows"]}
    second = {r["channel"]: r for r in client.get("/runs/2/layers/4.json").json()["rows"]}
    answer = client.get("/compare.json?runs=1,2&layer=4&_sort_desc=delta_color").json()
    rows = answer["rows"]
    assert [row["channel"] for row in rows] == sorted(
        (row["channel"] for row in rows),
        key=lambda c: -(second[c]["color"] - first[c]["color"]),
    )
    for row in rows:
        for name in INDEXES:
            assert row[f"{name}_a"] == first[row["channel"]][name]
            assert row[f"delta_{name}"] == pytest.approx(
                second[row["channel"]][name] - first[row["channel"]][name]
            )
    page = client.get("/compare?runs=1,2&layer=4&_sort_desc=delta_color")
    assert page.status_code == 200 and page.text.count('<tr id="channel-') == len(rows)
    assert 'href="/runs/2/layers/4/neurons/0"' in page.text and "<svg" in page.text


def test_the_csv_twin_summarises_every_layer_index_and_run(client):
    rows = list(csv.DictReader(io.StringIO(client.get("/compare.csv?runs=1,2").text)))
    assert len(rows) == 2 * len(INDEXES) * 2  # layers × indexes × runs
    later = [row for row in rows if row["run"] == "2"]
    assert all(row["ks"] != "" and 0 <= float(row["p"]) <= 1 for row in later if row["median"])


def test_the_run_pages_form_names_both_runs(client):
    assert '<option value="2">2</option>' in client.get("/runs/1").text
    assert client.get("/compare.json?runs=1&runs=2").json()["comparison"]["runs"][1]["id"] == 2


def test_bad_comparisons_are_refused_readably(client):
    assert client.get("/compare?runs=1").status_code == 400
    assert client.get("/compare?runs=1,x").status_code == 400
    missing = client.get("/compare.json?runs=1,9")
    assert missing.status_code == 404 and "no run 9" in missing.json()["detail"]
    no_layer = client.get("/compare.json?runs=1,2&layer=nope")
    assert no_layer.status_code == 404 and "no layer 'nope'" in no_layer.json()["detail"]


def test_with_three_runs_any_later_one_is_set_against_the_first(client, two_runs, capsys):
    """Runs 1, 1 and 2: the neuron table compares the first with the second by default (no
    change anywhere) and with run 2 when asked, exactly as ``runs=1,2`` does; the page offers
    both pairs, keeps the choice in its links, and refuses a run outside the comparison."""
    same = client.get("/compare.json?runs=1,1,2&layer=4").json()
    assert same["pair"] == [1, 1] and same["against"] is None
    assert all(row["delta_color"] in (0.0, None) for row in same["rows"])
    chosen = client.get("/compare.json?runs=1,1,2&layer=4&against=2").json()
    assert chosen["pair"] == [1, 2]
    assert chosen["rows"] == client.get("/compare.json?runs=1,2&layer=4").json()["rows"]
    page = client.get("/compare?runs=1,1,2&layer=4&against=2").text
    assert "Δ = run 2 − run 1" in page and "<strong>run 2</strong>" in page
    assert 'href="/compare?runs=1,1,2&amp;against=1&amp;layer=4"' in page
    assert '<input type="hidden" name="against" value="2">' in page  # the nearest-neuron form
    outside = client.get("/compare.json?runs=1,1,2&layer=4&against=7")
    assert outside.status_code == 404 and "run 7 is not one of the runs" in outside.text
    assert client.get("/compare.json?runs=1,2&against=x").status_code == 400
    with environment(NEURONSCOPE_DATA_DIR=str(two_runs)):
        code, out, _ = run_cli(capsys, "compare", "1", "1", "2", "--layer", "4", "--against", "2")
        assert code == 0 and out.startswith("4: run 2 minus run 1")


def test_the_neuron_page_links_the_same_channel_to_the_comparison(client):
    page = client.get("/runs/2/layers/4/neurons/1").text
    assert 'href="/compare?runs=2,1&amp;layer=4&amp;channel__eq=1#neurons"' in page


def test_the_cli_prints_the_comparison(two_runs, capsys):
    with environment(NEURONSCOPE_DATA_DIR=str(two_runs)):
        code, out, _ = run_cli(capsys, "compare", "1", "2")
        assert code == 0 and "KS D" in out and "layer 4" in out
        code, out, _ = run_cli(capsys, "compare", "1", "2", "--layer", "4", "--json")
        assert code == 0 and len(json.loads(out)["rows"]) == 2
        code, _, err = run_cli(capsys, "compare", "1", "7")
        assert code == 1 and err.strip() == "neuronscope: error: no run 7"


def test_a_copied_channel_is_found_again_across_architectures(tmp_path):
    """Model B (8 channels) has model A's (6 channels) channel 2 as its channel 5: the
    correlation search over the probe images, recorded by a worker, ranks it first."""
    from server.cli.main import main
    from tests.support.jobs import drain, settings_for

    folder = write_square_folder(tmp_path / "squares", per_class=8)
    data_dir = tmp_path / "data"
    common = ["--mean", "0,0,0", "--std", "1,1,1", "--input-size", "32", "--layers", "1,3"]
    common += ["--data", str(folder), "--top-k", "3", "--no-indexes", "--workers", "0"]
    with environment(NEURONSCOPE_DATA_DIR=str(data_dir)):
        for name in ("probe_pair_a", "probe_pair_b"):
            assert main(["analyze", "--model", f"tests.support.models:{name}", *common]) == 0
    settings = load_settings({"NEURONSCOPE_DATA_DIR": str(data_dir)})
    with web_client(settings) as client:
        found = client.get("/compare.json?runs=1,2").json()["comparison"]
        assert found["matching"] == "name" and not found["same_architecture"]
        url = "/compare?runs=1,2&near_layer=3&near_channel=2"
        page = client.get(url)
        assert "Record both runs' responses" in page.text
        form = {"runs": "1,2", "near_layer": "3", "near_channel": "2"}
        asked = client.post("/compare/probe", data=form, follow_redirects=False)
        assert asked.status_code == 303 and asked.headers["location"].endswith("#nearest")
        assert "Recording the responses" in client.get(url).text
        drain(settings_for(data_dir))
        matches = client.get(url.replace("/compare?", "/compare.json?")).json()["nearest"]
        best = matches["matches"][0]
        assert (best["layer"], best["channel"]) == ("3", 5) and best["r"] > 0.99
        assert matches["matches"][1]["r"] < best["r"]
        assert 'href="/runs/2/layers/3/neurons/5"' in client.get(url).text
        missing = client.get("/compare.json?runs=1,2&near_layer=3&near_channel=9")
        assert missing.status_code == 404
