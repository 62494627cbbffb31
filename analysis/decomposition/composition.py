"""A neuron n of layer L composed of the neurons of a shallower layer L′, in two modes.

- *activation*: n's top patches, pasted on a canvas of their own mean colour at one common place,
  go through the network to L′; each L′ channel is divided by its dataset maximum and clipped at
  1, weighted by w_j = a_j / a_1 and averaged over j; positions are then chosen greedily as in
  the image decomposition, among those whose windows lie inside n's window.
- *ablation relevance*: R_i = Σ_j |a_j − â_j(i)| / Σ_j a_j, where â_j(i) is n's activation on its
  top image j (read at the stored position) with channel i of L′ set to zero. The ablated copies
  of L′'s output (image × channel on the batch axis) are fed from L′ on: the layers before L′ run
  once per image, not once per ablation. Applied level by level it gives a relevance tree.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from analysis.decomposition.placement import (
    Placement,
    Window,
    greedy_placements,
    layer_outputs,
    normalise,
)
from analysis.hooks import forward_until, layer_hooks, model_device, resolve_layers
from analysis.neuron_feature import cut_patch
from analysis.receptive_field import ReceptiveField


@dataclass
class NeuronInputs:
    """What a neuron's composition reads: its top images as the model saw them
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
    """The unclipped ``window`` of a (3, H, W) image, grey outside it (as an NF's patches)."""
    patch = cut_patch(image.permute(1, 2, 0).numpy(), window)
    return torch.from_numpy(patch).permute(2, 0, 1).to(image.dtype)


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
    fields: tuple[ReceptiveField, ReceptiveField] | None = None,
    chunk: int = 4096,
) -> torch.Tensor:
    """R_i for every channel i of ``source`` (docs/algorithms.md §6).

    With the two layers' receptive ``fields`` (target, source), each top image's ablations run
    only on the part of the source map that can reach the position a_j is read at (its
    receptive cone, aligned to the stride between the layers): the result is the same, for a
    fraction of the work. Each image's unablated value is computed alongside and must reproduce
    a_j; where it does not (a layer between them that sees the whole map, such as a squeeze-and-
    excitation gate), the whole maps are used. Without ``fields``, or then, the batch that runs
    from ``source`` to ``target`` holds (image, ablated channel) pairs, ``chunk`` at a time.
    """
    device = model_device(model)
    images = normalise_input(neuron.images.to(device))
    base = layer_outputs(model, images, [source])[source]
    original = torch.tensor(neuron.values, device=device, dtype=torch.float32)
    if fields is not None:
        cropped = _cone_relevance(model, images, base, neuron, channel, target, source, fields)
        if cropped is not None:
            return (cropped / original.clamp(min=0).sum().clamp(min=1e-12)).cpu()
    count, channels = base.shape[:2]
    rows = torch.tensor(neuron.rows, device=device)
    cols = torch.tensor(neuron.cols, device=device)
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


def _cone_relevance(
    model: nn.Module,
    images: torch.Tensor,
    base: torch.Tensor,
    neuron: NeuronInputs,
    channel: int,
    target: str,
    source: str,
    fields: tuple[ReceptiveField, ReceptiveField],
) -> torch.Tensor | None:
    """Σ_j |a_j − â_j(i)| per source channel i from cropped source maps, or None if cropping
    does not reproduce the unablated a_j (or the strides do not nest). Images whose cones have
    the same shape and read position (all but those near a border) share one forward."""
    channels = base.shape[1]
    groups: dict[tuple[int, int, int, int], list[tuple[int, Window]]] = {}
    for j, (row, col) in enumerate(zip(neuron.rows, neuron.cols, strict=True)):
        cone = receptive_cone(*fields, row, col, tuple(base.shape[2:]))
        if cone is None:
            return None
        (r0, r1, c0, c1), read = cone
        groups.setdefault((r1 - r0, c1 - c0, *read), []).append((j, (r0, r1, c0, c1)))
    copies = torch.arange(channels, device=base.device)
    change = torch.zeros(channels, device=base.device)
    for (_h, _w, read_row, read_col), members in groups.items():
        regions = torch.stack([base[j, :, r0:r1, c0:c1] for j, (r0, r1, c0, c1) in members])
        ablated = regions[:, None].repeat(1, channels + 1, 1, 1, 1)
        ablated[:, copies, copies] = 0  # copy i has channel i off; the last copy is untouched
        chosen = torch.tensor([j for j, _ in members], device=base.device)
        try:
            maps = _run_replacing(model, images[chosen], source, target, ablated.flatten(0, 1))
            reads = maps[:, channel, read_row, read_col].reshape(len(members), channels + 1)
        except (RuntimeError, IndexError):
            return None
        values = torch.tensor([neuron.values[j] for j, _ in members], device=base.device)
        if ((reads[:, -1] - values).abs() > 1e-3 * values.abs().clamp(min=1.0)).any():
            return None
        change += (values[:, None] - reads[:, :-1]).abs().sum(0)
    return change


def receptive_cone(
    target: ReceptiveField,
    source: ReceptiveField,
    row: int,
    col: int,
    shape: tuple[int, int],
) -> tuple[Window, tuple[int, int]] | None:
    """The region of the source map (rows and columns, with a margin of one position) whose
    windows lie within the target window at (row, col), its start aligned to the stride ratio so
    that strided layers see the same grid; and where (row, col) lands in a forward of just that
    region. None when the target's stride is not a multiple of the source's."""
    bounds, reads = [], []
    for axis, position in ((0, row), (1, col)):
        ratio, remainder = divmod(target.stride[axis], source.stride[axis])
        if remainder:
            return None
        start = target.offset[axis] + position * target.stride[axis]
        end = start + target.size[axis]
        first = -(-(start - source.offset[axis]) // source.stride[axis]) - 1
        last = (end - source.size[axis] - source.offset[axis]) // source.stride[axis] + 1
        first = max(first, 0) // ratio * ratio
        last = min(last, shape[axis] - 1)
        bounds += [first, last + 1]
        reads.append(position - first // ratio)
    return (bounds[0], bounds[1], bounds[2], bounds[3]), (reads[0], reads[1])


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
    fields: dict[str, ReceptiveField] | None = None,
) -> RelevanceNode:
    """The ablation-relevance tree of ``channel`` of ``layers[0]``, down ``layers[1:]`` (deepest
    first): each level keeps the ``max_children`` most relevant neurons whose relevance is at least
    ``ratio`` × the level's largest. ``inputs_of(layer, channel)`` gives a neuron's top images
    (None for a dead neuron, which has no children); with every layer's receptive ``fields``,
    ablations run on receptive cones only (see :func:`ablation_relevance`)."""
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
            pair = (fields[target], fields[source]) if fields else None
            relevance = ablation_relevance(
                model, normalise_input, neuron, node.channel, target, source, pair
            )
            strongest = float(relevance.max())
            for index in relevance.argsort(descending=True)[:max_children].tolist():
                if strongest > 0 and relevance[index] >= ratio * strongest:
                    node.children.append(RelevanceNode(source, index, float(relevance[index])))
            next_level += node.children
        level = next_level
    return root
