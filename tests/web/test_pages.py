"""Every page and its twins through the ASGI app, with known contents."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import re
from pathlib import Path

from server.web.app import HTMX_FILE, WEB_DIR

LAYER = "/runs/1/layers/4"


def test_pages_render(client):
    home = client.get("/")
    assert home.status_code == 200 and "tests.support.models:red_detector" in home.text
    run = client.get("/runs/1")
    assert run.status_code == 200 and 'href="/runs/1/layers/4"' in run.text and "<svg" in run.text
    layer = client.get(LAYER)
    assert layer.status_code == 200 and layer.text.count('class="cell') == 2
    neuron = client.get(LAYER + "/neurons/0")
    assert neuron.status_code == 200
    assert "Neuron Feature" in neuron.text and "orientation tuning" in neuron.text
    assert 'id="next"' in neuron.text and 'id="previous"' not in neuron.text


def test_json_and_csv_twins_agree(client):
    runs = client.get("/runs.json").json()
    assert [r["id"] for r in runs["runs"]] == [1]
    rows = list(csv.DictReader(io.StringIO(client.get("/runs.csv").text)))
    assert rows[0]["id"] == "1" and rows[0]["status"] == "done"
    layer_json = client.get(LAYER + ".json?_sort_desc=color").json()
    layer_csv = list(csv.DictReader(io.StringIO(client.get(LAYER + ".csv?_sort_desc=color").text)))
    assert [r["channel"] for r in layer_json["rows"]] == [int(r["channel"]) for r in layer_csv]
    assert client.get("/runs/1.json").json()["layers"][1]["name"] == "4"


def test_sorting_filtering_and_paging(client):
    def channels(query: str) -> list[int]:
        return [
            r["channel"]
            for r in client.get(f"{LAYER.replace('/4', '/1')}.json?{query}").json()["rows"]
        ]

    assert channels("_sort_desc=color") == [0, 1, 2]  # red detector first, dead last
    assert channels("_sort=color") == [1, 0, 2]  # nulls stay last either way
    assert channels("color__gt=0.5") == [0]
    assert channels("_dead=0") == [0, 1]
    assert channels("_sort_desc=dead&_sort=channel") == [2, 0, 1]
    first = client.get(LAYER.replace("/4", "/1") + ".json?_size=2").json()
    assert [r["channel"] for r in first["rows"]] == [0, 1] and first["next"] == 1
    assert channels("_size=2&_next=1") == [2]


def test_htmx_requests_get_the_partial(client):
    full = client.get(LAYER + "?_sort_desc=color")
    partial = client.get(LAYER + "?_sort_desc=color", headers={"HX-Request": "true"})
    assert "<html" in full.text and "<html" not in partial.text
    assert 'class="data neurons"' in partial.text
    assert partial.headers["vary"] == "HX-Request" == full.headers["vary"]


def test_bad_requests_are_readable_4xx(client):
    missing = client.get("/runs/99")
    assert missing.status_code == 404 and "no run 99" in missing.text
    assert client.get("/runs/1/layers/nope.json").json()["detail"].startswith("run 1 has no layer")
    bad = client.get(LAYER + ".json?color__zz=1")
    assert bad.status_code == 400 and "unknown filter operator" in bad.json()["detail"]
    assert client.get(LAYER + ".json?_sort=nonsense").status_code == 400
    assert client.get(LAYER + "/neurons/9").status_code == 404
    assert client.get("/artifacts/../secret").status_code == 404


def test_images_are_served_with_long_lived_cache_headers(client):
    """A run's pictures lie in pack files: each is served by its own key, from its pack. The
    HTML pages copy none out; the neuron's JSON, which names files, copies its two out once."""
    store = client.app.state.store
    thumbnails = re.findall(r'src="/artifacts/([0-9a-f]{64}\.png)"', client.get(LAYER).text)
    page = client.get(LAYER + "/neurons/0").text
    keys = re.findall(r'src="/artifacts/([0-9a-f]{64}\.(?:png|jpg))"', page)
    assert thumbnails and {key.rpartition(".")[2] for key in keys} == {"png", "jpg"}
    for key in {*thumbnails, *keys}:
        store.path(key).unlink(missing_ok=True)  # a copy an earlier test's JSON made
    assert client.get(LAYER + "/neurons/0").status_code == 200
    for key in {*thumbnails, *keys}:
        assert not store.path(key).exists()
        image = client.get(f"/artifacts/{key}")
        assert image.status_code == 200 and "immutable" in image.headers["cache-control"]
        assert hashlib.sha256(image.content).hexdigest() == key.split(".")[0]
        kind = {"png": "image/png", "jpg": "image/jpeg"}[key.rpartition(".")[2]]
        assert image.headers["content-type"] == kind
    detail = client.get(LAYER + "/neurons/0.json").json()
    assert {Path(detail["nf"]).name, Path(detail["sprite"]).name} == set(keys)
    assert all(store.path(key).is_file() for key in keys)
    missing = client.get(f"/artifacts/{'0' * 64}.png")
    assert missing.status_code == 404 and "no artifact" in missing.json()["detail"]


def test_the_float_nf_is_offered_on_the_neuron_page_until_asked_for(client):
    """Not stored by the run: the page offers to compute it (the download itself, against the
    CLI's array and the definition, is tested in tests/server/runs/test_nf_arrays.py)."""
    page = client.get(LAYER + "/neurons/0").text
    assert 'action="/runs/1/layers/4/neurons/0/nf_array"' in page and ".npy" not in page
    assert client.get("/api/runs/1/layers/4/neurons/0").json()["nf_array"] is None
    assert client.get("/api/runs/1/layers/4/neurons/0/nf_array").status_code == 404


def test_vendored_htmx_matches_the_integrity_attribute(client):
    page = client.get("/").text
    integrity = re.search(r'integrity="(sha384-[^"]+)"', page).group(1)
    digest = hashlib.sha384((WEB_DIR / "static" / HTMX_FILE).read_bytes()).digest()
    assert integrity == "sha384-" + base64.b64encode(digest).decode()
    assert (WEB_DIR / "static" / "vendor" / "htmx-2.0.4.LICENSE").is_file()
    assert "https://" not in page and "http://" not in page  # no CDN, no external request
    assert client.get(f"/static/{HTMX_FILE}").status_code == 200


def test_api_neuron_is_the_cli_object(client, web_data_dir, capsys):
    import json

    from server.cli.main import main
    from tests.support.cli import environment

    with environment(NEURONSCOPE_DATA_DIR=str(web_data_dir)):
        assert main(["neuron", "1", "4", "0", "--json"]) == 0
    from_cli = json.loads(capsys.readouterr().out)
    from_api = client.get("/api/runs/1/layers/4/neurons/0").json()
    assert from_api == from_cli
    assert from_api["indexes"]["details"]["top_class"] == "red"
    schema = client.get("/openapi.json").json()
    assert "/api/runs/{run_id}/layers/{layer_name}/neurons" in schema["paths"]
    layer = client.get("/api/runs/1/layers/1/neurons?_sort_desc=color").json()
    assert [r["channel"] for r in layer["rows"]] == [0, 1, 2]


def test_out_of_range_ids_are_client_errors(client):
    huge = 2**63
    assert client.get(f"/api/runs/{huge}").status_code == 422
    assert client.get(f"/api/runs/1/layers/4/neurons/{huge}").status_code == 422
    assert client.get(f"/runs/{huge}").status_code == 404
    assert client.get(f"/runs/1/layers/4/neurons/{huge}").status_code == 404
    assert client.get("/runs/-1").status_code == 404


def test_every_page_has_a_json_twin_of_its_own_data(client):
    pages = [
        "/runs",
        "/runs/1",
        LAYER,
        LAYER + "/neurons/0",
        "/runs/1/classes",
        "/runs/new",
        "/jobs",
        "/models",
        "/datasets",
    ]
    for page in pages:
        html, twin = client.get(page), client.get(page + ".json")
        assert html.status_code == 200 and "<html" in html.text, page
        assert twin.status_code == 200 and twin.headers["content-type"] == "application/json"
    new_run = client.get("/runs/new.json").json()
    assert set(new_run) == {"models", "datasets", "chosen_model", "chosen_dataset"}
    assert new_run["chosen_model"]["spec"] == "tests.support.models:red_detector"
    assert [layer["name"] for layer in new_run["chosen_model"]["layers"] if layer["default"]] == [
        "1",
        "4",
    ]
    assert client.get("/runs.json").json() == client.get("/.json").json()
    run_keys = {"run", "layers", "stages", "decompositions", "labels", "notes", "other_runs"}
    assert set(client.get("/runs/1.json").json()) == run_keys
    no_table = client.get("/runs/new.csv")
    assert no_table.status_code == 404 and "no CSV form" in no_table.text


def test_run_page_histograms_say_their_axes_counts_and_dead_neurons(client):
    run = client.get("/runs/1").text
    first = run[run.index('<td class="spark">') :]
    svg = first[: first.index("</svg>")]
    assert '<text x="22.0" y="68" text-anchor="start" class="tick">0</text>' in svg
    assert ">0.5</text>" in svg and ">1</text>" in svg
    counts = [int(c) for c in re.findall(r"<title>[\d.]+–[\d.]+: (\d+) neurons?</title>", svg)]
    assert len(counts) == 10 and sum(counts) == 2  # layer 1: 3 channels, one never fires
    assert "2 neurons · 1 dead left out" in first[: first.index("</td>")]
