"""``neuronscope zoo``: the pretrained weights already in this machine's caches, as model specs
that ``layers`` and ``analyze`` take (nothing is downloaded)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from server.cli.output import print_json, print_table


def add_commands(commands: Any) -> None:
    zoo = commands.add_parser(
        "zoo", help="list pretrained weights in the local torch hub and Hugging Face caches"
    )
    zoo.add_argument("--json", action="store_true")
    zoo.set_defaults(handler=run_zoo)


def run_zoo(args: argparse.Namespace) -> int:
    from analysis.zoo.caches import cached_weights, hf_hub_cache, torch_hub_checkpoints
    from server.runs.disk import readable_bytes

    found = cached_weights()
    records = [
        {
            "architecture": entry.spec.split(":", 1)[1].partition(".")[0],
            "tag": entry.weights or entry.spec.partition(".")[2],
            "model": entry.spec,
            "weights": entry.weights,
            "file": str(entry.path),
            "bytes": entry.bytes,
            "use": f"--model {entry.spec}"
            + (f" --weights {entry.weights}" if entry.weights else ""),
        }
        for entry in found
    ]
    if args.json:
        print_json(records)
        return 0
    if not records:
        print(
            f"no pretrained weights in {torch_hub_checkpoints()} or {hf_hub_cache()} "
            "(TORCH_HOME, HF_HOME and HF_HUB_CACHE move them)",
            file=sys.stderr,
        )
        return 0
    print_table(
        ["architecture", "tag", "size", "file", "use"],
        [
            [r["architecture"], r["tag"], readable_bytes(r["bytes"]), r["file"], r["use"]]
            for r in records
        ],
    )
    return 0
