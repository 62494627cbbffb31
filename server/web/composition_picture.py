"""A neuron's composition drawn as a picture (docs/algorithms.md §6), as Nefesi's papers and the
circuits articles draw it: one row per layer, the composed neuron on top, each neuron its NF, and
an edge from a neuron to each neuron that composes it, as wide and as opaque as its relevance
(or, in activation mode, its weight) relative to the row's strongest.

A relevance tree repeats a neuron wherever several parents rely on it; drawn as a tree, six levels
of five children would put 3,125 nodes in the last row. The picture merges a row's copies of a
neuron into one node, as a circuit diagram does, and keeps the row's ``ROW_LIMIT`` strongest
nodes, saying how many more the list below it names, so every node stays ``NODE`` px at any
depth (a phone scrolls the picture inside its own box rather than shrinking it). Rows are ordered
by their parents' positions (the barycentre heuristic), so edges cross only where they must.

The SVG needs no script and renders in static copies (its links are plain ``href``s).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from typing import Any

from markupsafe import Markup

NODE = 64  # px: the side an NF is drawn at
GAP_X, GAP_Y, CAPTION = 22, 60, 16
LABEL_WIDTH, MORE_WIDTH, MARGIN = 120, 90, 8
ROW_LIMIT = 10
EDGE, FRAME, INK, MUTED = "#2563eb", "#9aa5b1", "#1f2933", "#616e7c"

Key = tuple[str, int]


@dataclass
class _Node:
    layer: str
    channel: int
    url: str
    nf: str | None
    strength: float  # its strongest edge relative to the row's strongest; the root's is 1
    parents: dict[Key, tuple[float, float]] = field(default_factory=dict)  # → (relative, value)
    slot: float = 0.0


@dataclass
class _Row:
    nodes: list[_Node]
    hidden: int  # nodes of this layer left out for space (the list below names them)


def composition_picture(result: Mapping[str, Any], root: Mapping[str, Any]) -> Markup:
    """The picture of a stored composition record: its relevance ``tree``, or its activation-
    mode ``neurons`` under ``root`` (the composed neuron: layer, channel, url, nf)."""
    if "tree" in result:
        measure, label = "relevance", "relevance"
        rows = [{_key(result["tree"]): _node(result["tree"])}]
        level = [result["tree"]]
        while edges := [(parent, child) for parent in level for child in parent["children"]]:
            rows.append(_merged(edges, measure))
            level = [child for _parent, child in edges]
    else:
        measure, label = "weight", "weight"
        edges = [(root, neuron) for neuron in result.get("neurons", [])]
        rows = [{_key(root): _node(root)}, *([_merged(edges, measure)] if edges else [])]
    placed = _placed(rows)
    return _draw(placed, label)


def _key(node: Mapping[str, Any]) -> Key:
    return (str(node["layer"]), int(node["channel"]))


def _node(node: Mapping[str, Any]) -> _Node:
    return _Node(str(node["layer"]), int(node["channel"]), node["url"], node.get("nf"), 1.0)


def _merged(edges: Sequence[tuple[Mapping, Mapping]], measure: str) -> dict[Key, _Node]:
    """One node per neuron of the row, keeping each parent's strongest edge into it."""
    strongest = max([float(child[measure]) for _parent, child in edges] + [1e-12])
    merged: dict[Key, _Node] = {}
    for parent, child in edges:
        value = float(child[measure])
        relative = max(value, 0.0) / strongest
        node = merged.setdefault(_key(child), _node(child))
        node.strength = relative if len(node.parents) == 0 else max(node.strength, relative)
        previous = node.parents.get(_key(parent))
        if previous is None or relative > previous[0]:
            node.parents[_key(parent)] = (relative, value)
    return merged


def _placed(rows: list[dict[Key, _Node]]) -> list[_Row]:
    """Each row cut to its strongest nodes among those whose parents are drawn, and ordered by
    the mean slot of their parents."""
    placed: list[_Row] = []
    shown: dict[Key, _Node] = {}
    for row in rows:
        drawable = [n for n in row.values() if not n.parents or set(n.parents) & set(shown)]
        kept = sorted(drawable, key=lambda n: -n.strength)[:ROW_LIMIT]
        for n in kept:
            above = [shown[p].slot for p in n.parents if p in shown]
            n.slot = sum(above) / len(above) if above else 0.0
        kept.sort(key=lambda n: (n.slot, -n.strength))
        for index, n in enumerate(kept):
            n.slot = index - (len(kept) - 1) / 2  # centred, so parents' means stay comparable
        placed.append(_Row(kept, len(row) - len(kept)))
        shown = {(n.layer, n.channel): n for n in kept}
    return placed


def _draw(rows: list[_Row], measure: str) -> Markup:
    widest = max(len(row.nodes) for row in rows)
    step_x, step_y = NODE + GAP_X, NODE + CAPTION + GAP_Y
    width = LABEL_WIDTH + widest * step_x + MORE_WIDTH
    height = MARGIN * 2 + len(rows) * step_y - GAP_Y
    middle = LABEL_WIDTH + widest * step_x / 2

    def centre(node: _Node) -> float:
        return middle + node.slot * step_x

    def top(depth: int) -> float:
        return MARGIN + depth * step_y

    edges, nodes = [], []
    for depth, row in enumerate(rows):
        y = top(depth)
        layer = row.nodes[0].layer if row.nodes else ""
        nodes.append(
            f'<text x="{MARGIN}" y="{y + NODE / 2 + 4:.0f}" class="row-label">'
            f"<title>{escape(layer)}</title>{escape(_shortened(layer))}</text>"
        )
        if row.hidden:
            right = middle + (len(row.nodes) / 2) * step_x
            nodes.append(
                f'<text x="{right:.0f}" y="{y + NODE / 2 + 4:.0f}" class="more">'
                f"+{row.hidden} more</text>"
            )
        above = {(n.layer, n.channel): n for n in rows[depth - 1].nodes} if depth else {}
        for node in row.nodes:
            x = centre(node)
            for parent_key, (relative, value) in node.parents.items():
                if parent_key not in above:
                    continue
                parent = above[parent_key]
                start, end = top(depth - 1) + NODE + CAPTION, y
                bend = (end - start) / 2
                edges.append(
                    f'<path d="M{centre(parent):.1f},{start:.0f} C{centre(parent):.1f},'
                    f'{start + bend:.0f} {x:.1f},{end - bend:.0f} {x:.1f},{end:.0f}" '
                    f'fill="none" stroke="{EDGE}" stroke-width="{1 + 6 * relative:.2f}" '
                    f'stroke-opacity="{0.15 + 0.85 * relative:.2f}"><title>'
                    f"{escape(parent.layer)} #{parent.channel} ← {escape(node.layer)} "
                    f"#{node.channel}: {measure} {value:.3f}</title></path>"
                )
            nodes.append(_drawn_node(node, x - NODE / 2, y, depth == 0, measure))
    return Markup(
        f'<svg class="composition-picture" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" role="img" xmlns="http://www.w3.org/2000/svg" '
        f'aria-label="the composition as a picture: {sum(len(r.nodes) for r in rows)} neurons '
        f'in {len(rows)} layers; the list below names each">'
        f"{''.join(edges)}{''.join(nodes)}</svg>"
    )


def _drawn_node(node: _Node, x: float, y: float, is_root: bool, measure: str) -> str:
    strength = (
        "the composed neuron" if is_root else f"{node.strength:.2f} × the row's strongest {measure}"
    )
    picture = (
        f'<image href="{escape(node.nf)}" x="{x:.1f}" y="{y:.0f}" width="{NODE}" height="{NODE}" '
        'preserveAspectRatio="xMidYMid meet" style="image-rendering: pixelated"/>'
        if node.nf
        else f'<text x="{x + NODE / 2:.1f}" y="{y + NODE / 2 + 4:.0f}" class="more" '
        'text-anchor="middle">dead</text>'
    )
    return (
        f'<a href="{escape(node.url)}" tabindex="-1"><title>{escape(node.layer)} · channel '
        f"{node.channel} ({strength})</title>{picture}"
        f'<rect x="{x:.1f}" y="{y:.0f}" width="{NODE}" height="{NODE}" fill="none" '
        f'stroke="{INK if is_root else FRAME}" stroke-width="{2 if is_root else 1}"/>'
        f'<text x="{x + NODE / 2:.1f}" y="{y + NODE + 13:.0f}" text-anchor="middle" '
        f'class="caption">#{node.channel}</text></a>'
    )


def _shortened(name: str, limit: int = 17) -> str:
    return name if len(name) <= limit else "…" + name[-(limit - 1) :]
