"""``neuronscope runs`` and ``neuronscope neuron``: read stored results back.

The queries (and SQLAlchemy) load inside the commands, so the CLI starts quickly for the others.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from server.cli.common import open_database
from server.cli.output import print_json, print_table


def add_commands(commands: Any) -> None:
    runs = commands.add_parser("runs", help="list analysis runs")
    runs.add_argument("--json", action="store_true")
    runs.set_defaults(handler=run_runs)

    neuron = commands.add_parser("neuron", help="show one neuron: top images, NF, indexes")
    neuron.add_argument("run", type=int)
    neuron.add_argument("layer")
    neuron.add_argument("channel", type=int)
    neuron.add_argument("--json", action="store_true")
    neuron.add_argument(
        "--nf-array",
        metavar="PATH",
        help="write the float NF (float32 .npy over nf_box) there, computing it from the top "
        "images if no one has yet (it is then kept)",
    )
    neuron.set_defaults(handler=run_neuron)

    summary = commands.add_parser("summary", help="per-layer index histograms of a run")
    summary.add_argument("run", type=int)
    summary.add_argument("--json", action="store_true")
    summary.set_defaults(handler=run_summary_command)

    rank = commands.add_parser("rank", help="list a layer's neurons sorted by an index")
    rank.add_argument("run", type=int)
    rank.add_argument("layer")
    rank.add_argument("--by", default="color", help="color, orientation, symmetry, class, shape…")
    rank.add_argument("--desc", action="store_true", help="highest first")
    rank.add_argument("--limit", type=int, help="show only the first N")
    rank.add_argument("--json", action="store_true")
    rank.set_defaults(handler=run_rank)


def run_runs(args: argparse.Namespace) -> int:
    from server.runs.read import list_runs

    _, database, _ = open_database()
    with database.session() as session:
        runs = list_runs(session)
    if args.json:
        print_json(runs)
        return 0
    if not runs:
        print("no runs yet: try `neuronscope analyze --model ... --data ...` or `make demo`")
        return 0
    print_table(
        ["id", "status", "model", "dataset", "layers", "neurons", "dead", "created"],
        [
            [
                r["id"],
                r["status"],
                r["model"],
                r["dataset"],
                len(r["layers"]),
                r["neurons"],
                r["dead"],
                r["created"][:19],
            ]
            for r in runs
        ],
    )
    return 0


def print_layers_of_run(run_id: int) -> None:
    from server.runs.read import get_run, layer_summary

    _, database, _ = open_database()
    with database.session() as session:
        layers = [layer_summary(layer) for layer in get_run(session, run_id).layers]
    print_table(
        ["layer", "type", "channels", "map", "rf size", "stride", "dead"],
        [
            [
                x["name"],
                x["type"],
                x["channels"],
                x["map_size"],
                x["rf_size"],
                x["rf_stride"],
                x["dead"],
            ]
            for x in layers
        ],
    )


def run_neuron(args: argparse.Namespace) -> int:
    from server.runs.read import neuron_detail

    _, database, store = open_database()
    with database.session() as session:
        if args.nf_array:
            write_nf_array(session, store, args.run, args.layer, args.channel, args.nf_array)
        detail = neuron_detail(session, store, args.run, args.layer, args.channel)
    if args.json:
        print_json(detail)
        return 0
    state = "dead (never fires)" if detail["dead"] else f"max {detail['max_activation']:.4g}"
    print(
        f"run {detail['run']}  {detail['layer']}  channel {detail['channel']}: {state}, "
        f"mean {detail['mean_activation']:.4g}"
    )
    if detail["nf"]:
        print(f"NF: {detail['nf']}\ntop patches: {detail['sprite']}")
    if note := detail["note"]:
        print(f"note: {note['label'] or '(no label)'} ({note['author']}, {note['created'][:16]})")
        if note["text"]:
            print("  " + note["text"].replace("\n", "\n  "))
    indexes = detail["indexes"]
    if indexes:
        shown = ["color", "orientation", "symmetry", "class", "shape"]
        print("indexes: " + "  ".join(f"{n} {_fmt(indexes.get(n))}" for n in shown))
        details = indexes["details"]
        print(
            f"top class: {details.get('top_class')}  hue: {details.get('spectral_class')}  "
            f"gratings: {details.get('spatial_class')}  "
            f"double opponent: {indexes.get('double_opponent')}"
        )
    print_table(
        ["rank", "value", "image", "label", "row", "col", "window"],
        [
            [
                t["rank"],
                t["value"],
                t["image"],
                t["label"],
                t["row"],
                t["col"],
                ",".join(map(str, t["window"])),
            ]
            for t in detail["top"][:20]
        ],
    )
    if len(detail["top"]) > 20:
        print(f"... {len(detail['top']) - 20} more (use --json)")
    return 0


def write_nf_array(session, store, run_id: int, layer_name: str, channel: int, path: str) -> None:
    """The neuron's float NF into ``path`` (stored, or computed now and stored)."""
    import shutil

    from sqlalchemy import select

    from server.runs.nf_arrays import FloatFeatures
    from server.runs.read import get_layer
    from server.storage.errors import NotFoundError
    from server.storage.schema import Neuron

    layer = get_layer(session, run_id, layer_name)
    neuron = session.scalar(
        select(Neuron).where(Neuron.layer_id == layer.id, Neuron.channel == channel)
    )
    if neuron is None or neuron.dead:
        raise NotFoundError(f"{layer_name} channel {channel} has no NF (no such live neuron)")
    key = FloatFeatures(session, store, layer.run).key(layer, neuron)
    shutil.copyfile(store.path(key), path)
    session.commit()
    print(f"float NF of {layer_name} #{channel}: {path}", file=sys.stderr)


def run_rank(args: argparse.Namespace) -> int:
    from server.runs.read import rank_neurons

    _, database, _ = open_database()
    with database.session() as session:
        ranked = rank_neurons(session, args.run, args.layer, args.by, args.desc)
    if args.limit is not None:
        ranked = ranked[: args.limit]
    if args.json:
        print_json(ranked)
        return 0
    columns = ["color", "orientation", "symmetry", "class", "shape", "double_opponent"]
    print_table(
        ["channel", *columns, "max"],
        [[r["channel"], *[r.get(c) for c in columns], r["max"]] for r in ranked],
    )
    return 0


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


BARS = " ▁▂▃▄▅▆▇█"


def run_summary_command(args: argparse.Namespace) -> int:
    from server.runs.read import get_run

    """Each layer's 10-bin histogram of every index on [0, 1], its mean, and physiology."""
    _, database, _ = open_database()
    with database.session() as session:
        layers = [(layer.name, layer.summary or {}) for layer in get_run(session, args.run).layers]
    if args.json:
        print_json(dict(layers))
        return 0
    if not any(summary for _, summary in layers):
        print(f"run {args.run} has no indexes yet: run `neuronscope analyze` without --no-indexes")
        return 0
    for name, summary in layers:
        print(f"\n{name}")
        rows = []
        for index in ("color", "orientation", "symmetry", "class", "shape"):
            h = summary.get(index)
            if not h:
                continue
            peak = max(h["counts"]) or 1
            bars = "".join(BARS[round(c / peak * (len(BARS) - 1))] for c in h["counts"])
            rows.append([index, f"[{bars}]", h["mean"], h["fraction_above"], h["below_zero"]])
        print_table(["index", "histogram 0…1", "mean", "> 0.5", "< 0"], rows)
        physiology = summary.get("physiology", {})
        if physiology:
            print(
                "physiology: spectral opponent {:.0%}, spatial opponent {:.0%}, "
                "double opponent {:.0%}".format(
                    physiology["spectral_opponent"],
                    physiology["spatial_opponent"],
                    physiology["double_opponent"],
                )
            )
    return 0
