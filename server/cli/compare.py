"""``neuronscope compare``: two or more runs side by side, per matched layer and index (the
``/compare`` page in the terminal), or one layer neuron by neuron."""

from __future__ import annotations

import argparse
from typing import Any

from server.cli.common import open_database
from server.cli.output import print_json, print_table


def add_commands(commands: Any) -> None:
    compare = commands.add_parser(
        "compare",
        help="compare runs: index medians, selective shares and Kolmogorov-Smirnov tests per "
        "layer, or one layer's neurons by the change of each index",
    )
    compare.add_argument("runs", type=int, nargs="+", help="two or more run ids (the first is "
                         "the reference)")  # fmt: skip
    compare.add_argument(
        "--layer", help="this layer neuron by neuron (runs of the same architecture)"
    )
    compare.add_argument("--against", type=int, help="with --layer and more than two runs: the "
                         "run set against the first (default: the second)")  # fmt: skip
    compare.add_argument("--sort", default="color", help="with --layer: the index whose change "
                         "orders the neurons, largest first (default color)")  # fmt: skip
    compare.add_argument("--json", action="store_true")
    compare.set_defaults(handler=run_compare)


def run_compare(args: argparse.Namespace) -> int:
    from server.compare.read import compare_runs, compared_pair, neuron_changes
    from server.storage.errors import NotFoundError

    _, database, _ = open_database()
    with database.session() as session:
        found = compare_runs(session, args.runs)  # refuses too few or too many runs first
        pair = compared_pair(args.runs, args.against)
        if args.layer:
            rows = neuron_changes(session, pair, args.layer)
    if args.layer:
        if args.sort not in found["indexes"]:
            raise NotFoundError(f"--sort takes one of {', '.join(found['indexes'])}")
        key = f"delta_{args.sort}"
        rows.sort(key=lambda row: (row[key] is None, -(row[key] or 0.0)))
        if args.json:
            print_json({"comparison": found, "rows": rows})
            return 0
        a, b = pair
        print(f"{args.layer}: run {b} minus run {a}, by the change of {args.sort}")
        print_table(
            ["channel", *(f"Δ {name}" for name in found["indexes"])],
            [[row["channel"], *(row[f"delta_{n}"] for n in found["indexes"])] for row in rows],
        )
        return 0
    if args.json:
        print_json(found)
        return 0
    how = "by name" if found["matching"] == "name" else "by relative depth (architectures differ)"
    print(f"runs {', '.join(map(str, args.runs))}: layers matched {how}; selective: index > "
          f"{found['selective_above']}; KS against run {args.runs[0]}")  # fmt: skip
    for layer in found["layers"]:
        names = " · ".join(f"{entry['layer']}" for entry in layer["runs"])
        print(f"\nlayer {names}")
        table = []
        for name in found["indexes"]:
            tests = {test["run"]: test for test in layer["tests"][name]}
            for entry in layer["runs"]:
                stats, test = entry["indexes"][name], tests.get(entry["run"], {})
                table.append([name, entry["run"], stats["median"], stats["selective"],
                              test.get("ks"), test.get("p")])  # fmt: skip
        print_table(["index", "run", "median", "selective", "KS D", "p"], table)
    return 0
