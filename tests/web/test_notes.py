"""A lab's notes: written on a neuron's page, kept with every version, a column of the layer
table and a facet of the run, searchable across runs, exported, escaped, and kept across a
restart of the server (which applies the migrations)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from server.config import load_settings
from tests.support.cli import analysed_data_dir, environment, run_cli
from tests.support.web import web_client

NEURON = "/runs/1/layers/4/neurons"
HOSTILE = '<script>alert("x")</script>'


@pytest.fixture(scope="module")
def notes_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return analysed_data_dir(tmp_path_factory.mktemp("notes"))


def client_for(data_dir: Path, **environ: str):
    return web_client(load_settings({"NEURONSCOPE_DATA_DIR": str(data_dir), **environ}))


def write(client, channel: int, label: str, text: str = "", author: str = "ada") -> None:
    answer = client.post(
        f"{NEURON}/{channel}/note",
        data={"label": label, "text": text, "author": author},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"].endswith(f"{NEURON}/{channel}#note")


def test_a_note_is_written_shown_versioned_and_escaped(notes_dir):
    with client_for(notes_dir) as client:
        write(client, 0, "red blob", "first guess")
        write(client, 0, "curve detector", f"fires on red arcs {HOSTILE}")
        page = client.get(f"{NEURON}/0")
        assert page.status_code == 200
        assert "curve detector" in page.text and "fires on red arcs" in page.text
        assert HOSTILE not in page.text and "&lt;script&gt;" in page.text
        assert "history: 2 versions" in page.text
        assert 'value="ada"' in page.text  # the name given is remembered for the next note
        neuron = client.get(f"{NEURON}/0.json").json()
        assert neuron["note"]["label"] == "curve detector" and neuron["note"]["author"] == "ada"
        assert [v["label"] for v in neuron["history"]] == ["curve detector", "red blob"]
        assert client.get(f"/api{NEURON}/0").json()["note"]["text"].endswith(HOSTILE)


def test_labels_filter_and_sort_the_layer_table_and_facet_the_run(notes_dir):
    with client_for(notes_dir) as client:
        write(client, 0, "Curve detector")
        write(client, 1, "colour blob")
        layer = client.get("/runs/1/layers/4.json?label__contains=CURVE").json()
        assert [row["channel"] for row in layer["rows"]] == [0]
        assert layer["rows"][0]["label"] == "Curve detector"
        ordered = client.get("/runs/1/layers/4.json?_sort=label").json()["rows"]
        assert [row["label"] for row in ordered[:2]] == ["Curve detector", "colour blob"]
        html = client.get("/runs/1/layers/4?label__contains=curve").text
        assert "1 neuron where label contains curve" in html
        run = client.get("/runs/1")
        assert "/notes?run=1&amp;label=Curve%20detector" in run.text
        assert {note["label"] for note in client.get("/runs/1.json").json()["notes"]} >= {
            "Curve detector",
            "colour blob",
        }
        refused = client.get("/runs/1/layers/4.json?color__contains=1")
        assert refused.status_code == 400 and "is a number" in refused.json()["detail"]


def test_search_finds_words_in_labels_and_texts_and_exports(notes_dir):
    with client_for(notes_dir) as client:
        write(client, 0, "edge", '=HYPERLINK("http://evil")  opposes green 100%_sure')
        write(client, 1, "")  # cleared: in the history, not in the search
        found = client.get("/notes.json?q=GREEN").json()["notes"]
        assert [(n["run"], n["layer"], n["channel"]) for n in found] == [(1, "4", 0)]
        assert client.get("/notes.json?q=100%25_").json()["notes"] == found  # literal % and _
        assert client.get("/notes.json?q=100%25x").json()["notes"] == []
        assert client.get("/notes.json?q=colour").json()["notes"] == []
        assert "opposes green" in client.get("/notes?q=green").text
        rows = list(csv.DictReader(io.StringIO(client.get("/runs/1/notes.csv").text)))
        assert rows[0]["text"].startswith("'=HYPERLINK")  # not a formula in a spreadsheet
        assert client.get("/notes.json?run=99").status_code == 404


def test_writes_need_the_token_and_take_its_name(notes_dir):
    lab = {"NEURONSCOPE_TOKEN": "s3cret", "NEURONSCOPE_TOKEN_NAME": "vision lab"}
    with client_for(notes_dir, **lab) as c:
        body = {"label": "texture", "text": "stripes"}
        assert c.put(f"/api{NEURON}/1/note", json=body).status_code == 403
        answer = c.put(
            f"/api{NEURON}/1/note", json=body, headers={"Authorization": "Bearer s3cret"}
        )
        assert answer.status_code == 200 and answer.json()["note"]["author"] == "vision lab"
        too_long = c.put(
            f"/api{NEURON}/1/note",
            json={"label": "two\nlines"},
            headers={"Authorization": "Bearer s3cret"},
        )
        assert too_long.status_code == 400 and "one line" in too_long.json()["detail"]


def test_notes_survive_a_restart(notes_dir):
    with client_for(notes_dir) as client:
        write(client, 1, "kept", "across restarts")
    with client_for(notes_dir) as client:  # a new server process: migrations run at start
        assert client.get(f"{NEURON}/1.json").json()["note"]["text"] == "across restarts"


def test_the_cli_shows_a_neurons_note(notes_dir, capsys):
    with client_for(notes_dir) as client:
        write(client, 0, "ring", "two lines:\nsecond")
    with environment(NEURONSCOPE_DATA_DIR=str(notes_dir)):
        code, out, _ = run_cli(capsys, "neuron", "1", "4", "0")
    assert code == 0 and "note: ring (ada, " in out and "  two lines:\n  second" in out
