"""``neuronscope runs`` and ``neuronscope neuron``: read stored results back."""

from __future__ import annotations

import argparse
from typing import Any

from server.cli.common import open_database
from server.cli.output import print_json, print_table
from server.queries import get_run, layer_summary, list_runs, neuron_detail


def add_commands(commands: Any) -> None:
    runs = commands.add_parser("runs", help="list analysis runs")
    runs.add_argument("--json", action="store_true")
    runs.set_defaults(handler=run_runs)

    neuron = commands.add_parser("neuron", help="show one neuron: top images, NF, indexes")
    neuron.add_argument("run", type=int)
    neuron.add_argument("layer")
    neuron.add_argument("channel", type=int)
    neuron.add_argument("--json", action="store_true")
    neuron.set_defaults(handler=run_neuron)


def run_runs(args: argparse.Namespace) -> int:
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
    _, database, store = open_database()
    with database.session() as session:
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
