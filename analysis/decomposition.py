"""Decompositions (SPEC §6): an image described by Neuron Features, and a neuron described by the
neurons of a shallower layer.

**Image decomposition** (Nefesi): forward the image once, to every layer asked for; divide each
channel by that neuron's dataset maximum a_1, so 1 means "as strongly as on its best image"; at
each map position keep the channel with the highest normalised value; accept positions greedily,
strongest first, while their receptive windows overlap the windows already accepted by at most a
set fraction of their area (default 0: no overlap).

**Hierarchical decomposition**, two modes for a neuron n of layer L and a shallower layer L′:

- *activation*: n's top patches, pasted on a canvas of their own mean colour at one common place,
  go through the network to L′; each L′ channel is divided by its dataset maximum and clipped at
  1, weighted by w_j = a_j / a_1 and averaged over j; positions are then chosen greedily as above,
  among those whose windows lie inside n's window.
- *ablation relevance*: R_i = Σ_j |a_j − â_j(i)| / Σ_j a_j, where â_j(i) is n's activation on its
  top image j (read at the stored position) with channel i of L′ set to zero. The ablated copies
  of L′'s output (image × channel on the batch axis) are fed from L′ on: the layers before L′ run
  once per image, not once per ablation.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from analysis.hooks import forward_until, layer_hooks, model_device, resolve_layers
from analysis.receptive_field import ReceptiveField

GREY = 0.5
Window = tuple[int, int, int, int]


@dataclass(frozen=True)
class Placement:
    """One accepted neuron: its channel, where (map row and column, input window), how strongly
    (raw and normalised by the neuron's dataset maximum)."""

    channel: int
    row: int
    col: int
    value: float
    normalised: float
    window: Window


@dataclass
class LayerDecomposition:
    """A layer's accepted neurons, strongest first, and per map position the ``top`` channels
    with their normalised values (for "which neurons fire here")."""

    placements: list[Placement]
    top_channels: np.ndarray  # (H, W, n) int
    top_values: np.ndarray  # (H, W, n) float, normalised
    normalised: np.ndarray  # (C, H, W) float32: every channel's map, for heat maps


def layer_outputs(
    model: nn.Module, inputs: torch.Tensor, layers: Sequence[str]
) -> dict[str, torch.Tensor]:
    """One forward of ``inputs`` (normalised, on the model's device), stopped after the deepest
    of ``layers``; their outputs as float32 (copied before any in-place op can change them)."""
    recorded: dict[str, torch.Tensor] = {}

    def keep(name: str, output: torch.Tensor) -> None:
        recorded[name] = output.detach().float().clone()

    with torch.no_grad(), layer_hooks(model, list(layers), keep, stop_early=True):
        forward_until(model, inputs)
    return recorded


def normalise(maps: torch.Tensor, maxima: torch.Tensor) -> torch.Tensor:
    """Divide each channel of (…, C, H, W) maps by its dataset maximum; a dead channel (maximum
    ≤ 0) is −inf everywhere, so it is never chosen."""
    maxima = maxima.to(maps.device, maps.dtype)
    live = maxima > 0
    scaled = maps / torch.where(live, maxima, torch.ones_like(maxima))[:, None, None]
    return torch.where(live[:, None, None], scaled, torch.full_like(scaled, float("-inf")))


def overlap(window: Window, other: Window) -> int:
    """The area two windows share."""
    rows = min(window[1], other[1]) - max(window[0], other[0])
    cols = min(window[3], other[3]) - max(window[2], other[2])
    return max(rows, 0) * max(cols, 0)


def greedy_placements(
    normalised: torch.Tensor,
    raw: torch.Tensor,
    field: ReceptiveField,
    max_overlap: float = 0.0,
    inside: Window | None = None,
) -> list[Placement]:
    """Per position the best channel, then positions accepted strongest first while each one's
    window overlaps the accepted windows by at most ``max_overlap`` of its area. Only positions
    whose window lies within ``inside`` are candidates, when it is given; positions where no
    channel fires (normalised ≤ 0) are never accepted."""
    best, channels = normalised.max(0)
    order = torch.argsort(best.flatten(), descending=True, stable=True).tolist()
    width = normalised.shape[2]
    flat_best = best.flatten().tolist()
    accepted: list[Placement] = []
    area = field.size[0] * field.size[1]
    for index in order:
        if flat_best[index] <= 0:
            break
        row, col = divmod(index, width)
        window = field.window(row, col)
        if inside is not None and not _contains(inside, window):
            continue
        if any(overlap(window, p.window) > max_overlap * area for p in accepted):
            continue
        channel = int(channels[row, col])
        accepted.append(
            Placement(channel, row, col, float(raw[channel, row, col]), flat_best[index], window)
        )
    return accepted


def _contains(outer: Window, inner: Window) -> bool:
    return (
        outer[0] <= inner[0]
        and inner[1] <= outer[1]
        and outer[2] <= inner[2]
        and inner[3] <= outer[3]
    )


def decompose(
    model: nn.Module,
    image: torch.Tensor,
    layers: dict[str, tuple[ReceptiveField, torch.Tensor]],
    max_overlap: float = 0.0,
    top_n: int = 5,
) -> dict[str, LayerDecomposition]:
    """Decompose one normalised image (1, 3, H, W) at every layer of ``layers`` (name → its
    receptive field and its neurons' dataset maxima), from a single forward pass."""
    outputs = layer_outputs(model, image.to(model_device(model)), list(layers))
    found = {}
    for name, (field_, maxima) in layers.items():
        raw = outputs[name][0]
        scaled = normalise(raw, maxima)
        count = min(top_n, scaled.shape[0])
        values, channels = scaled.topk(count, dim=0)
        found[name] = LayerDecomposition(
            placements=greedy_placements(scaled, raw, field_, max_overlap),
            top_channels=channels.permute(1, 2, 0).cpu().numpy(),
            top_values=values.permute(1, 2, 0).clamp(min=-1e9).cpu().numpy(),
            normalised=scaled.clamp(min=0).cpu().numpy(),
        )
    return found


def paste_features(
    image: np.ndarray, placements: Sequence[Placement], features: dict[int, np.ndarray]
) -> np.ndarray:
    """``image`` (H, W, 3) with each placement's NF pasted over its window, the strongest on top;
    the parts of a window outside the image are cut off."""
    canvas = image.copy()
    height, width = canvas.shape[:2]
    for placement in sorted(placements, key=lambda p: p.normalised):
        feature = features.get(placement.channel)
        if feature is None:
            continue
        r0, r1, c0, c1 = placement.window
        top, bottom, left, right = max(r0, 0), min(r1, height), max(c0, 0), min(c1, width)
        if top < bottom and left < right:
            canvas[top:bottom, left:right] = feature[top - r0 : bottom - r0, left - c0 : right - c0]
    return canvas


# ---- a neuron described by a shallower layer ---------------------------------------------------


@dataclass
class NeuronInputs:
    """What a neuron's hierarchical decomposition reads: its top images as the model saw them
    ((J, 3, H, W) in [0, 1]), the map positions and values of its top activations."""

    images: torch.Tensor
    rows: list[int]
    cols: list[int]
    values: list[float]

    @property
    def weights(self) -> torch.Tensor:
        values = torch.tensor(self.values, dtype=torch.float32)
        return (values / values[0]).clamp(min=0)


def activation_composition(
    model: nn.Module,
    normalise_input: Callable[[torch.Tensor], torch.Tensor],
    neuron: NeuronInputs,
    field: ReceptiveField,
    source: str,
    source_field: ReceptiveField,
    source_maxima: torch.Tensor,
    max_overlap: float = 0.0,
) -> tuple[list[Placement], torch.Tensor]:
    """Activation mode: the shallower neurons that n's top patches drive, placed inside n's
    window. Returns the placements (windows relative to n's window) and the weighted mean of the
    normalised, clipped L′ maps."""
    height, width = neuron.images.shape[-2:]
    centre = (_centre_position(field, height, 0), _centre_position(field, width, 1))
    target = field.window(*centre)
    canvases = []
    for image, row, col in zip(neuron.images, neuron.rows, neuron.cols, strict=True):
        patch = _cut(image, field.window(row, col))
        canvas = patch.mean((1, 2), keepdim=True).expand(3, height, width).clone()
        _paste(canvas, patch, target)
        canvases.append(canvas)
    batch = normalise_input(torch.stack(canvases).to(model_device(model)))
    maps = layer_outputs(model, batch, [source])[source]
    scaled = normalise(maps, source_maxima).clamp(max=1)
    weights = neuron.weights.to(scaled.device)
    mean = (scaled.clamp(min=0) * weights[:, None, None, None]).sum(0) / weights.sum()
    chosen = greedy_placements(mean, mean, source_field, max_overlap, inside=target)
    relative = [
        Placement(
            p.channel,
            p.row,
            p.col,
            p.value,
            p.normalised,
            (
                p.window[0] - target[0],
                p.window[1] - target[0],
                p.window[2] - target[2],
                p.window[3] - target[2],
            ),
        )
        for p in chosen
    ]
    return relative, mean.cpu()


def _centre_position(field: ReceptiveField, size: int, axis: int) -> int:
    """The map index whose window is most central on an input of ``size`` pixels."""
    offset, stride, extent = field.offset[axis], field.stride[axis], field.size[axis]
    return max(0, round((size / 2 - offset - extent / 2) / stride))


def _cut(image: torch.Tensor, window: Window) -> torch.Tensor:
    """The unclipped ``window`` of a (3, H, W) image, grey outside it."""
    r0, r1, c0, c1 = window
    patch = torch.full((3, r1 - r0, c1 - c0), GREY, dtype=image.dtype)
    _paste(patch, image, (-r0, -r0 + image.shape[1], -c0, -c0 + image.shape[2]))
    return patch


def _paste(canvas: torch.Tensor, patch: torch.Tensor, window: Window) -> None:
    """Write ``patch`` over ``window`` of ``canvas`` (both (3, ·, ·)), clipped to the canvas."""
    r0, r1, c0, c1 = window
    height, width = canvas.shape[1:]
    top, bottom, left, right = max(r0, 0), min(r1, height), max(c0, 0), min(c1, width)
    if top < bottom and left < right:
        canvas[:, top:bottom, left:right] = patch[:, top - r0 : bottom - r0, left - c0 : right - c0]


def ablation_relevance(
    model: nn.Module,
    normalise_input: Callable[[torch.Tensor], torch.Tensor],
    neuron: NeuronInputs,
    channel: int,
    target: str,
    source: str,
    chunk: int = 4096,
) -> torch.Tensor:
    """R_i for every channel i of ``source`` (SPEC §6). The batch that runs from ``source`` to
    ``target`` holds (image, ablated channel) pairs, ``chunk`` at a time."""
    device = model_device(model)
    images = normalise_input(neuron.images.to(device))
    base = layer_outputs(model, images, [source])[source]
    count, channels = base.shape[:2]
    rows = torch.tensor(neuron.rows, device=device)
    cols = torch.tensor(neuron.cols, device=device)
    original = torch.tensor(neuron.values, device=device, dtype=torch.float32)
    per_chunk = max(1, chunk // count)
    change = torch.zeros(channels, device=device)
    for start in range(0, channels, per_chunk):
        ablated_channels = torch.arange(start, min(start + per_chunk, channels), device=device)
        ablated = base[:, None].repeat(1, len(ablated_channels), 1, 1, 1)
        ablated[:, torch.arange(len(ablated_channels)), ablated_channels] = 0
        maps = _forward_from(model, images, source, target, ablated.flatten(0, 1))
        reads = maps[:, channel].reshape(count, len(ablated_channels), *maps.shape[2:])
        at = reads[torch.arange(count, device=device), :, rows, cols]  # (J, chunk)
        change[ablated_channels] = (original[:, None] - at).abs().sum(0)
    return (change / original.clamp(min=0).sum().clamp(min=1e-12)).cpu()


def _forward_from(
    model: nn.Module, images: torch.Tensor, source: str, target: str, replacement: torch.Tensor
) -> torch.Tensor:
    """``target``'s output when ``source`` outputs ``replacement`` (a batch of any size).

    The images go in once; the hook on ``source`` swaps in the larger batch, so only the part of
    the network after ``source`` runs per ablation. A graph where something before ``source``
    feeds something after it (a skip connection across it) cannot take a batch of another size:
    then the images are repeated to match and the whole network runs.
    """
    resolve_layers(model, [source, target])
    try:
        return _run_replacing(model, images, source, target, replacement)
    except RuntimeError:
        repeats = replacement.shape[0] // images.shape[0]
        return _run_replacing(
            model, images.repeat_interleave(repeats, 0), source, target, replacement
        )


def _run_replacing(
    model: nn.Module, images: torch.Tensor, source: str, target: str, replacement: torch.Tensor
) -> torch.Tensor:
    modules = resolve_layers(model, [source])
    recorded: dict[str, torch.Tensor] = {}

    def keep(_name: str, output: torch.Tensor) -> None:
        recorded["target"] = output.detach().float()

    handle = modules[source].register_forward_hook(lambda _m, _i, _o: replacement)
    try:
        with torch.no_grad(), layer_hooks(model, [target], keep, stop_early=True):
            forward_until(model, images)
    finally:
        handle.remove()
    return recorded["target"]


@dataclass
class RelevanceNode:
    """A neuron in a relevance tree, with the most relevant neurons of the next shallower layer."""

    layer: str
    channel: int
    relevance: float
    children: list[RelevanceNode] = field(default_factory=list)

    def as_json(self) -> dict[str, object]:
        return {
            "layer": self.layer,
            "channel": self.channel,
            "relevance": round(self.relevance, 6),
            "children": [child.as_json() for child in self.children],
        }


def relevance_tree(
    model: nn.Module,
    normalise_input: Callable[[torch.Tensor], torch.Tensor],
    layers: Sequence[str],
    channel: int,
    inputs_of: Callable[[str, int], NeuronInputs | None],
    max_children: int = 3,
    ratio: float = 0.2,
    progress: Callable[[int], None] | None = None,
) -> RelevanceNode:
    """The ablation-relevance tree of ``channel`` of ``layers[0]``, down ``layers[1:]`` (deepest
    first): each level keeps the ``max_children`` most relevant neurons whose relevance is at least
    ``ratio`` × the level's largest. ``inputs_of(layer, channel)`` gives a neuron's top images
    (None for a dead neuron, which has no children)."""
    root = RelevanceNode(layers[0], channel, 1.0)
    level = [root]
    done = 0
    for target, source in itertools.pairwise(layers):
        next_level = []
        for node in level:
            neuron = inputs_of(target, node.channel)
            done += 1
            if progress:
                progress(done)
            if neuron is None:
                continue
            relevance = ablation_relevance(
                model, normalise_input, neuron, node.channel, target, source
            )
            strongest = float(relevance.max())
            for index in relevance.argsort(descending=True)[:max_children].tolist():
                if strongest > 0 and relevance[index] >= ratio * strongest:
                    node.children.append(RelevanceNode(source, index, float(relevance[index])))
            next_level += node.children
        level = next_level
    return root
