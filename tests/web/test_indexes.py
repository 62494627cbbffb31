"""Every number explained where it appears, from one text: docs/algorithms.md §10."""

from __future__ import annotations

import html
import re

import pytest

from server.web.glossary import FIELDS, GlossaryError, glossary
from server.web.layers import NEURON_COLUMNS

TIP = re.compile(r'<a class="explain" href="([^"]+)" data-tip="([^"]+)"')


def test_every_column_of_the_layer_table_is_defined_in_one_line():
    definitions = glossary()
    assert set(NEURON_COLUMNS) - {"channel", "label"} <= set(definitions)
    for key, definition in definitions.items():
        assert all(getattr(definition, name) for name in FIELDS.values()), key
        assert "\n" not in definition.summary and len(definition.summary) < 240, key


def test_a_malformed_entry_is_refused_by_name(tmp_path):
    document = tmp_path / "algorithms.md"
    document.write_text(
        "## 10. Every number on a page\n\n### color · colour index\n**In short.** Lost to grey.\n"
    )
    with pytest.raises(GlossaryError, match="'color' lacks Range, Formula"):
        glossary(document)
    other = tmp_path / "other.md"
    other.write_text("# Something else\n")
    with pytest.raises(GlossaryError, match="has no section"):
        glossary(other)


def test_headers_and_labels_carry_the_documents_definition(client):
    definitions = glossary()
    table = client.get("/runs/1/layers/1").text
    tips = {href.split("#")[1]: tip for href, tip in TIP.findall(table)}
    expected = set(NEURON_COLUMNS) - {
        "channel",
        "label",
        "dead",
        "color_bounded",
        "double_opponent",
    }
    assert expected <= set(tips)
    assert html.unescape(tips["color"]) == definitions["color"].summary
    neuron = client.get("/runs/1/layers/1/neurons/0").text
    found = {href for href, _tip in TIP.findall(neuron)}
    for key in ("max", "mean", "color", "orientation", "symmetry", "class", "shape", "top_class"):
        assert f"/indexes?run=1#{key}" in found, key
    assert TIP.search(client.get("/runs/1").text)  # the run page's histogram headers


def test_the_indexes_page_shows_each_definition_with_the_runs_extremes(client):
    data = client.get("/indexes.json?run=1").json()
    assert data["run"]["id"] == 1
    by_key = {entry["key"]: entry for entry in data["definitions"]}
    colour = by_key["color"]["examples"]
    # The red detector (layer 1, channel 0) loses everything to grey; luminance nothing.
    assert (colour["highest"][0]["layer"], colour["highest"][0]["channel"]) == ("1", 0)
    assert colour["highest"][0]["value"] == pytest.approx(1.0)
    assert (colour["lowest"][0]["layer"], colour["lowest"][0]["channel"]) in {("1", 1), ("4", 1)}
    assert colour["lowest"][0]["value"] < 0.1
    lowest_max = by_key["max"]["examples"]["lowest"]
    assert all(e["channel"] != 2 for e in lowest_max)  # the dead channel is no example
    assert "examples" not in by_key["spectral_class"]  # a class is not ranked
    page = client.get("/indexes?run=1").text
    section = page.split('id="color"')[1].split("</section>")[0]
    assert 'href="/runs/1/layers/1/neurons/0"' in section and "Rafegas &amp; Vanrell" in section
    newest = client.get("/indexes.json").json()["run"]["id"]  # no run named: the newest
    assert newest >= 1
    missing = client.get("/indexes?run=99")
    assert missing.status_code == 404 and "no run 99" in missing.text
