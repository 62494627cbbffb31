"""Decomposition speed (docs/algorithms.md §6), against baselines measured in the same process.

(a) **Image decomposition**: one 224 px image decomposed at every default layer of a network
(VGG16's 13 ReLUs by default; random, seeded weights; dataset maxima from a few random images)
against one plain forward of the same image through the whole network. The NF pasting is timed
apart. Goal: decomposition ≤ 2 × the plain forward (plus the pasting).

(b) **Relevance tree**: the ablation-relevance tree of one neuron of the demo CNN's last layer,
three layers deep, each level keeping the three most relevant neurons, with top-50 images from
generated stimuli. Goal on the 2-core CPU: under 10 s. Also timed without receptive cones (the
ablations run on whole maps) as the baseline.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from analysis.decomposition.composition import NeuronInputs, relevance_tree
from analysis.decomposition.image import decompose, paste_features
from analysis.decomposition.placement import layer_outputs
from analysis.layers import default_layers, list_layers
from analysis.models import load_model
from benchmarks.common import machine_description, median


def image_decomposition(spec: str, size: int, repeats: int) -> None:
    loaded = load_model(spec, input_size=size)
    model = loaded.module.eval()
    layers = list_layers(model, loaded.input)
    names = default_layers(layers)
    by_name = {layer.name: layer for layer in layers}
    generator = torch.Generator().manual_seed(0)
    calibration = loaded.input.normalise(torch.rand(4, 3, size, size, generator=generator))
    outputs = layer_outputs(model, calibration, names)
    request = {
        name: (by_name[name].receptive_field, outputs[name].amax((0, 2, 3))) for name in names
    }
    image = loaded.input.normalise(torch.rand(1, 3, size, size, generator=generator))
    pixels = np.random.default_rng(0).random((size, size, 3), dtype=np.float32)
    with torch.no_grad():
        model(image)  # warm-up
    forward, decomposing, pasting = [], [], []
    for _ in range(repeats):
        started = time.perf_counter()
        with torch.no_grad():
            model(image)
        forward.append(time.perf_counter() - started)
        started = time.perf_counter()
        found = decompose(model, image, request)
        decomposing.append(time.perf_counter() - started)
        started = time.perf_counter()
        for name, layer in found.items():
            rf = by_name[name].receptive_field.size
            features = {p.channel: np.full((*rf, 3), 0.5, np.float32) for p in layer.placements}
            paste_features(pixels, layer.placements, features)
        pasting.append(time.perf_counter() - started)
    accepted = sum(len(layer.placements) for layer in found.values())
    print(f"(a) {spec} at {size} px, {len(names)} layers, {accepted} neurons accepted")
    print(
        f"    plain forward {median(forward) * 1000:.1f} ms, decomposition "
        f"{median(decomposing) * 1000:.1f} ms, pasting {median(pasting) * 1000:.1f} ms "
        f"(medians of {repeats})"
    )
    print(f"    decomposition / forward: {median(decomposing) / median(forward):.2f} (goal ≤ 2)")


def demo_neurons(weights: str | None, per_class: int, k: int):
    """The demo CNN and, per layer, every channel's top-k images, positions and values."""
    from analysis.demo.model import DEMO_SPEC
    from analysis.demo.stimuli import generate

    loaded = load_model(DEMO_SPEC, weights=weights, input_size=64)
    model = loaded.module.eval()
    names = default_layers(list_layers(model, loaded.input))
    images, _labels = generate(per_class, seed=1)
    pixels = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    outputs = layer_outputs(model, loaded.input.normalise(pixels), names)
    tops = {}
    for name, output in outputs.items():
        flat = output.flatten(2)
        best, where = flat.max(2)  # (N, C)
        values, order = best.topk(k, dim=0)  # (k, C)
        tops[name] = (values, order, where.gather(0, order), output.shape[3])

    def inputs_of(layer: str, channel: int) -> NeuronInputs | None:
        values, order, where, width = tops[layer]
        if values[0, channel] <= 0:
            return None
        return NeuronInputs(
            images=pixels[order[:, channel]],
            rows=[int(w) // width for w in where[:, channel]],
            cols=[int(w) % width for w in where[:, channel]],
            values=[float(v) for v in values[:, channel]],
        )

    fields = {layer.name: layer.receptive_field for layer in list_layers(model, loaded.input)}
    return loaded, names, inputs_of, fields, tops


def tree_timing(weights: str | None, repeats: int) -> None:
    loaded, names, inputs_of, fields, tops = demo_neurons(weights, per_class=20, k=50)
    chain = names[::-1][:4]  # the last layer and three below it
    channel = int(tops[chain[0]][0][0].argmax())
    timings = {}
    for label, with_fields in (("whole maps", None), ("receptive cones", fields)):
        seconds = []
        for _ in range(repeats):
            started = time.perf_counter()
            tree = relevance_tree(
                loaded.module, loaded.input.normalise, chain, channel, inputs_of,
                max_children=3, fields=with_fields,
            )  # fmt: skip
            seconds.append(time.perf_counter() - started)
        timings[label] = median(seconds)
        nodes = _count(tree.as_json())
        print(
            f"(b) relevance tree of {chain[0]} #{channel}, {len(chain) - 1} levels, {nodes} "
            f"nodes, {label}: {timings[label]:.2f} s (median of {repeats})"
        )
    ratio = timings["receptive cones"] / timings["whole maps"]
    print(f"    receptive cones / whole maps: {ratio:.2f} (goal: under 10 s)")


def _count(node: dict) -> int:
    return 1 + sum(_count(child) for child in node["children"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="torchvision:vgg16")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--demo-weights", help="the trained demo CNN (default: random weights)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    print(f"machine: {machine_description(torch.device('cpu'))}")
    image_decomposition(args.model, args.size, args.repeats)
    tree_timing(args.demo_weights, max(1, args.repeats // 2))


if __name__ == "__main__":
    main()
