"""Seconds of ``neuronscope layers torchvision:NAME --json`` per CNN family, start-up included,
and where they go (importing torch and torchvision, building the model, hashing its weights,
listing the layers with their receptive fields), measured in a fresh process per family.

Goal on the 2-core CPU: every family under 15 s, the median under 8 s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

from analysis.models import CNN_FAMILIES

# Run in a fresh interpreter: the stages of `layers`, each timed.
STAGES = """
import json, sys, time
started = time.perf_counter()
import torch, torchvision
imported = time.perf_counter()
from analysis.models import build_architecture, weights_sha256
module = build_architecture(sys.argv[1]).eval()
built = time.perf_counter()
weights_sha256(module)
hashed = time.perf_counter()
from analysis.layers import list_layers
from analysis.models import InputSpec
layers = list_layers(module, InputSpec())
listed = time.perf_counter()
print(json.dumps({"import": imported - started, "build": built - imported,
                  "hash": hashed - built, "layers": listed - hashed, "count": len(layers)}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("families", nargs="*", default=list(CNN_FAMILIES))
    args = parser.parse_args()
    totals = []
    print(
        f"{'family':22s} {'total s':>8s} {'import':>7s} {'build':>6s} {'hash':>6s} "
        f"{'layers':>7s} {'count':>6s}"
    )
    for family in args.families:
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "server.cli.main", "layers", f"torchvision:{family}", "--json"],
            check=True,
            capture_output=True,
        )
        total = time.perf_counter() - started
        stages = json.loads(
            subprocess.run(
                [sys.executable, "-c", STAGES, f"torchvision:{family}"],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        )
        totals.append(total)
        print(
            f"{family:22s} {total:8.2f} {stages['import']:7.2f} {stages['build']:6.2f} "
            f"{stages['hash']:6.2f} {stages['layers']:7.2f} {stages['count']:6d}"
        )
    print(
        f"median {statistics.median(totals):.2f} s, slowest {max(totals):.2f} s "
        "(goal: each under 15 s, median under 8 s)"
    )


if __name__ == "__main__":
    main()
