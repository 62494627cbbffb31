"""The composition drawn as a picture: rows of NFs joined by edges as strong as their relevance."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from server.web.composition_picture import NODE, ROW_LIMIT, composition_picture

SVG = "{http://www.w3.org/2000/svg}"


def node(layer: int, channel: int, relevance: float, children=()) -> dict:
    return {
        "layer": f"layer{layer}",
        "channel": channel,
        "relevance": relevance,
        "nf": f"/artifacts/nf-{layer}-{channel}.png",
        "url": f"/runs/1/layers/layer{layer}/neurons/{channel}",
        "children": list(children),
    }


def full_tree(levels: int, children: int, channels: int = 64) -> dict:
    """A relevance tree of ``levels`` levels below the root, ``children`` per node, the children
    of node c being channels (c·children + i) mod ``channels`` with relevance falling with i."""

    def grown(depth: int, channel: int) -> dict:
        below = []
        if depth < levels:
            below = [grown(depth + 1, (channel * children + i) % channels) for i in range(children)]
            for i, child in enumerate(below):
                child["relevance"] = 1.0 / (i + 1)
        return node(depth, channel, 1.0, below)

    return grown(0, 3)


def drawn(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def test_six_levels_of_five_children_stay_legible():
    """3,125 leaves would not fit a screen: each row merges repeated neurons and keeps its
    strongest ten, every NF still 64 px, and the picture no wider than eleven nodes."""
    picture = drawn(str(composition_picture({"tree": full_tree(5, 5)}, {})))
    images = picture.findall(f".//{SVG}image")
    assert all(float(i.get("width")) >= NODE and float(i.get("height")) >= NODE for i in images)
    rows: dict[str, int] = {}
    for link in picture.findall(f"{SVG}a"):
        layer = re.search(r"layers/(layer\d)/", link.get("href")).group(1)
        rows[layer] = rows.get(layer, 0) + 1
    assert rows == {"layer0": 1, "layer1": 5, **{f"layer{i}": ROW_LIMIT for i in range(2, 6)}}
    assert float(picture.get("width")) <= 120 + 11 * (NODE + 22) + 90
    more = [t.text for t in picture.iter(f"{SVG}text") if t.text and t.text.startswith("+")]
    assert more == ["+15 more", "+54 more", "+54 more", "+54 more"]  # 25, 64, 64, 64 distinct


def test_edges_follow_the_relevance_and_repeated_neurons_are_drawn_once():
    tree = node(0, 7, 1.0, [node(1, 2, 0.9, [node(2, 5, 0.2)]), node(1, 4, 0.3, [node(2, 5, 0.4)])])
    picture = drawn(str(composition_picture({"tree": tree}, {})))
    links = [a.get("href") for a in picture.findall(f"{SVG}a")]
    assert links.count("/runs/1/layers/layer2/neurons/5") == 1  # one node, two edges into it
    edges = {
        path.find(f"{SVG}title").text: float(path.get("stroke-width"))
        for path in picture.iter(f"{SVG}path")
    }
    assert len(edges) == 4
    assert edges["layer0 #7 ← layer1 #2: relevance 0.900"] == 7.0  # the row's strongest
    assert edges["layer0 #7 ← layer1 #4: relevance 0.300"] < 7.0
    assert edges["layer1 #4 ← layer2 #5: relevance 0.400"] == 7.0
    assert edges["layer1 #2 ← layer2 #5: relevance 0.200"] == 4.0  # half the strongest


def test_the_activation_mode_is_drawn_under_the_neuron_itself():
    root = {"layer": "conv5", "channel": 1, "url": "/runs/1/layers/conv5/neurons/1", "nf": "/a/r"}
    neurons = [
        {"layer": "conv2", "channel": 9, "weight": 1.0, "url": "/u9", "nf": "/a/9"},
        {"layer": "conv2", "channel": 3, "weight": 0.5, "url": "/u3", "nf": "/a/3"},
        {"layer": "conv2", "channel": 9, "weight": 0.8, "url": "/u9", "nf": "/a/9"},
    ]
    picture = drawn(str(composition_picture({"neurons": neurons}, root)))
    assert [a.get("href") for a in picture.findall(f"{SVG}a")] == [
        "/runs/1/layers/conv5/neurons/1",
        "/u9",
        "/u3",
    ]  # fmt: skip  (a row's ties in position go strongest first)
    widths = sorted(float(p.get("stroke-width")) for p in picture.iter(f"{SVG}path"))
    assert widths == [4.0, 7.0]
