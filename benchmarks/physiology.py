"""Physiology speed (docs/algorithms.md §5): the 1,320 hue and grating stimuli through a network
up to its deepest default layer, fed channels-last (what ``record_centre`` does) against the
same pass in the contiguous layout, in the same process on the same stimuli. It also prints how
far apart the two layouts' responses are (the order of the sums differs).

    python -m benchmarks.physiology --model torchvision:resnet18 --input-size 64
"""

from __future__ import annotations

import argparse
import time

import torch

from analysis.layers import default_layers, list_layers
from analysis.models import load_model
from analysis.physiology import Electrode, grating_stimuli, hue_stimuli, record_centre
from benchmarks.common import machine_description, median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="torchvision:resnet18")
    parser.add_argument("--input-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    loaded = load_model(args.model, input_size=args.input_size)
    deepest = default_layers(list_layers(loaded.module, loaded.input))[-1]
    size = loaded.input.size
    stimuli = torch.cat([hue_stimuli(size), grating_stimuli(size)])
    electrodes = [Electrode(deepest)]
    timings: dict[str, list[float]] = {"contiguous": [], "channels-last": []}
    responses = {}
    layouts = {"contiguous": torch.contiguous_format, "channels-last": torch.channels_last}
    for _ in range(args.repeats):
        for name, layout in layouts.items():
            started = time.perf_counter()
            responses[name] = record_centre(
                loaded.module, electrodes, stimuli, loaded.input, memory_format=layout
            )
            timings[name].append(time.perf_counter() - started)
    contiguous, channels_last = (
        torch.from_numpy(responses[name][electrodes[0]]) for name in layouts
    )
    gap = float((contiguous - channels_last).abs().max() / contiguous.abs().max())
    base, fast = median(timings["contiguous"]), median(timings["channels-last"])
    print(f"{machine_description(torch.device('cpu'))}")
    print(f"{args.model} at {args.input_size} px, {len(stimuli)} stimuli to {deepest}:")
    print(f"  contiguous {base:.2f} s, channels-last {fast:.2f} s (medians of {args.repeats})")
    print(f"  speed-up {base / fast:.2f}x; largest response gap {gap:.1e} of the largest response")


if __name__ == "__main__":
    main()
