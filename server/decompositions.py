"""Decompositions of images and neurons for a run, computed by workers and stored (SPEC §6).

An image is read as the sweep reads it (RGB, resized to the model's input by the run's policy),
decomposed at every analysed layer in one forward pass, and stored as: per layer the accepted
neurons (windows mapped back to the uploaded image's pixels), the image with their NFs pasted
over their windows, a heat map per accepted neuron, and per map position the strongest neurons
(for "which neurons fire here"). A neuron's composition reads its stored top images.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from analysis.data import ImageFolder, ResizePolicy, load_rgb
from analysis.decomposition import (
    LayerDecomposition,
    NeuronInputs,
    activation_composition,
    decompose,
    paste_features,
    relevance_tree,
)
from analysis.models import InputSpec, LoadedModel
from analysis.neuron_feature import full_window, to_uint8
from analysis.receptive_field import ReceptiveField
from server.artifacts import ArtifactStore
from server.models import Composition, Layer, Neuron, Run
from server.pipeline import DecodedImages, Progress, run_decoding
from server.results import load_layer_topk

HEATMAPS_PER_LAYER = 16
TOP_NEURONS_PER_PIXEL = 5
MODES = ("activation", "relevance")


class DecompositionError(ValueError):
    """A decomposition that cannot be computed; the message says why."""


def stored_field(layer: Layer) -> ReceptiveField:
    return ReceptiveField(tuple(layer.rf_size), tuple(layer.rf_stride), tuple(layer.rf_offset))


def stored_reach(layer: Layer) -> tuple[int, int, int, int] | None:
    """The part of the window ``layer``'s NF arrays hold; None: the whole window."""
    if not layer.nf_box:
        return None
    r0, r1, c0, c1 = layer.nf_box
    return r0, r1, c0, c1


def layer_neurons(session: Session, layer: Layer) -> list[Neuron]:
    return list(
        session.scalars(select(Neuron).where(Neuron.layer_id == layer.id).order_by(Neuron.channel))
    )


def to_original(
    window: tuple[int, int, int, int],
    size: tuple[int, int],
    width: int,
    height: int,
    policy: ResizePolicy,
) -> list[int]:
    """A window in model-input pixels (input ``size`` = (height, width)) as [r0, r1, c0, c1] in
    the original image's pixels."""
    r0, r1, c0, c1 = window
    input_h, input_w = size
    if policy is ResizePolicy.CENTER_CROP:
        scale = max(input_h / height, input_w / width)
        resized_w, resized_h = (
            max(round(width * scale), input_w),
            max(round(height * scale), input_h),
        )
        left, top = (resized_w - input_w) // 2, (resized_h - input_h) // 2
        return [round((r + top) / scale) for r in (r0, r1)] + [
            round((c + left) / scale) for c in (c0, c1)
        ]
    rows = [round(r * height / input_h) for r in (r0, r1)]
    return rows + [round(c * width / input_w) for c in (c0, c1)]


def decompose_image(
    session: Session,
    run: Run,
    loaded: LoadedModel,
    path: Path,
    store: ArtifactStore,
    device: str,
    max_overlap: float = 0.0,
) -> dict[str, Any]:
    """Decompose the image file at ``path`` at every stored layer of ``run``; the result object."""
    policy, draft = run_decoding(run)
    size = loaded.input.size
    pixels = load_rgb(path, size, policy, loaded.input.grey, draft)
    with Image.open(path) as original:
        width, height = original.size
    layers = {layer.name: layer for layer in run.layers}
    neurons = {name: layer_neurons(session, layer) for name, layer in layers.items()}
    request = {
        name: (
            stored_field(layer),
            torch.tensor([n.max_activation for n in neurons[name]], dtype=torch.float32),
        )
        for name, layer in layers.items()
    }
    model = loaded.module.to(device).eval()
    image = torch.from_numpy(pixels).permute(2, 0, 1)[None]
    found = decompose(model, loaded.input.normalise(image), request, max_overlap)
    result: dict[str, Any] = {
        "width": width,
        "height": height,
        "input_size": list(size),
        "image": store.put_png(to_uint8(pixels)),
        "layers": {},
    }
    for name, decomposition in found.items():
        result["layers"][name] = _store_layer(
            decomposition, layers[name], neurons[name], pixels, store, (size, width, height, policy)
        )
    return result


def _store_layer(
    found: LayerDecomposition,
    layer: Layer,
    neurons: list[Neuron],
    pixels: np.ndarray,
    store: ArtifactStore,
    geometry: tuple[int, int, int, ResizePolicy],
) -> dict[str, Any]:
    size, width, height, policy = geometry
    features = {
        p.channel: store.load_array(neurons[p.channel].nf_array_key)
        for p in found.placements
        if neurons[p.channel].nf_array_key
    }
    heatmaps: dict[int, str] = {}
    for placement in found.placements:
        if placement.channel not in heatmaps and len(heatmaps) < HEATMAPS_PER_LAYER:
            heatmaps[placement.channel] = store.put_png(
                heatmap(pixels, found.normalised[placement.channel])
            )
    return {
        "map_size": list(found.normalised.shape[1:]),
        "composite": store.put_png(
            to_uint8(paste_features(pixels, found.placements, features, stored_reach(layer)))
        ),
        "top_channels": store.put_array(found.top_channels.astype(np.int32)),
        "top_values": store.put_array(found.top_values.astype(np.float32)),
        "neurons": [
            {
                "channel": p.channel,
                "value": p.value,
                "normalised": p.normalised,
                "row": p.row,
                "col": p.col,
                "window": to_original(p.window, size, width, height, policy),
                "input_window": list(p.window),
                "nf": neurons[p.channel].nf_key,
                "heatmap": heatmaps.get(p.channel),
            }
            for p in found.placements
        ],
    }


def heatmap(pixels: np.ndarray, normalised: np.ndarray) -> np.ndarray:
    """Where a neuron fires: its normalised map (clipped to [0, 1]) in red over the dimmed image."""
    size = pixels.shape[:2]
    level = Image.fromarray(np.clip(normalised, 0, 1).astype(np.float32), mode="F")
    level = np.asarray(level.resize((size[1], size[0]), Image.BILINEAR))[..., None]
    red = np.array([1.0, 0.1, 0.1], dtype=np.float32)
    return to_uint8(0.45 * pixels * (1 - level) + level * red + 0.3 * level * pixels)


# ---- a neuron described by a shallower layer ---------------------------------------------------


class NeuronReader:
    """Top images, positions and values of a run's stored neurons, as the model saw them."""

    def __init__(
        self, session: Session, run: Run, folder: ImageFolder, input_spec: InputSpec
    ) -> None:
        self.session = session
        self.layers = {layer.name: layer for layer in run.layers}
        self.load = DecodedImages.of_run(folder, input_spec, run).image
        self._topk: dict[str, Any] = {}

    def inputs(self, layer: str, channel: int) -> NeuronInputs | None:
        """None for a dead neuron (it has no top images to explain)."""
        if layer not in self._topk:
            self._topk[layer] = load_layer_topk(self.session, self.layers[layer])
        topk = self._topk[layer]
        if bool(topk.dead[channel]):
            return None
        images = [int(i) for i in topk.images[channel]]
        pixels = np.stack([self.load(index) for index in images])
        return NeuronInputs(
            images=torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous(),
            rows=[int(r) for r in topk.rows[channel]],
            cols=[int(c) for c in topk.cols[channel]],
            values=[float(v) for v in topk.values[channel]],
        )


def shallower_layers(run: Run, layer: str) -> list[str]:
    """The run's layers before ``layer``, nearest first."""
    names = [stored.name for stored in run.layers]
    if layer not in names:
        raise DecompositionError(f"run {run.id} has no layer {layer!r}")
    return names[: names.index(layer)][::-1]


def compose_neuron(
    session: Session,
    run: Run,
    loaded: LoadedModel,
    folder: ImageFolder,
    request: dict[str, Any],
    store: ArtifactStore,
    device: str,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """A neuron described by a shallower layer: ``request`` names layer, channel, source, mode
    and (relevance mode) depth. Returns the result object that is stored."""
    layer, channel, source = request["layer"], request["channel"], request["source"]
    mode, depth = request["mode"], request.get("depth", 3)
    below = shallower_layers(run, layer)
    if source not in below:
        raise DecompositionError(
            f"{source!r} is not an analysed layer before {layer!r} "
            f"(choose one of: {', '.join(below) or 'none: this is the first layer'})"
        )
    if mode not in MODES:
        raise DecompositionError(f"mode is activation or relevance, not {mode!r}")
    stored = {stored.name: stored for stored in run.layers}
    if not 0 <= channel < stored[layer].channels:
        raise DecompositionError(f"{layer} has channels 0..{stored[layer].channels - 1}")
    model = loaded.module.to(device).eval()
    reader = NeuronReader(session, run, folder, loaded.input)
    neuron = reader.inputs(layer, channel)
    if neuron is None:
        raise DecompositionError(f"{layer} channel {channel} never fires: nothing to compose")
    nfs = {name: layer_neurons(session, stored[name]) for name in (layer, *below)}
    if mode == "activation":
        return _activation_result(loaded, model, neuron, stored, layer, channel, source, nfs, store)
    chain = [layer, *below[below.index(source) :]][: depth + 1]
    total = sum(3**level for level in range(len(chain) - 1))
    if progress is not None:
        progress.start(f"relevance tree of {layer} #{channel}", total, "nodes")
    tree = relevance_tree(
        model,
        loaded.input.normalise,
        chain,
        channel,
        reader.inputs,
        progress=progress.update if progress is not None else None,
        fields={name: stored_field(stored[name]) for name in chain},
    ).as_json()
    _annotate(tree, nfs)
    return {"mode": "relevance", "source": source, "depth": len(chain) - 1, "tree": tree}


def _activation_result(
    loaded: LoadedModel,
    model: torch.nn.Module,
    neuron: NeuronInputs,
    stored: dict[str, Layer],
    layer: str,
    channel: int,
    source: str,
    nfs: dict[str, list[Neuron]],
    store: ArtifactStore,
) -> dict[str, Any]:
    maxima = torch.tensor([n.max_activation for n in nfs[source]], dtype=torch.float32)
    placements, _mean = activation_composition(
        model,
        loaded.input.normalise,
        neuron,
        stored_field(stored[layer]),
        source,
        stored_field(stored[source]),
        maxima,
    )
    own = nfs[layer][channel]
    composite = None
    if own.nf_array_key:
        target = stored[layer]
        reach = stored_reach(target)
        base = store.load_array(own.nf_array_key)
        if reach:  # the canvas is the whole window: its source windows lie anywhere in it
            base = full_window(base, reach, (target.rf_size[0], target.rf_size[1]))
        features = {
            p.channel: store.load_array(nfs[source][p.channel].nf_array_key)
            for p in placements
            if nfs[source][p.channel].nf_array_key
        }
        pasted = paste_features(base, placements, features, stored_reach(stored[source]))
        composite = store.put_png(to_uint8(pasted))
    return {
        "mode": "activation",
        "source": source,
        "image": composite,
        "neurons": [
            {
                "layer": source,
                "channel": p.channel,
                "weight": p.normalised,
                "window": list(p.window),
                "nf": nfs[source][p.channel].nf_key,
            }
            for p in placements
        ],
    }


def _annotate(node: dict[str, Any], nfs: dict[str, list[Neuron]]) -> None:
    """Each tree node gets its NF's key, for thumbnails."""
    node["nf"] = nfs[node["layer"]][node["channel"]].nf_key
    for child in node["children"]:
        _annotate(child, nfs)


def request_depth(request: dict[str, Any]) -> int:
    """The depth a composition is filed under: relevance trees have one, activation mode none."""
    return int(request.get("depth") or 3) if request["mode"] == "relevance" else 0


def store_composition(
    session: Session, run_id: int, request: dict[str, Any], result: dict[str, Any]
) -> Composition:
    """Keep a computed composition (replacing an older one of the same request)."""
    key = {name: request[name] for name in ("layer", "channel", "source", "mode")}
    depth = request_depth(request)
    session.execute(
        delete(Composition).where(
            Composition.run_id == run_id,
            Composition.depth == depth,
            *[getattr(Composition, name) == value for name, value in key.items()],
        )
    )
    composition = Composition(run_id=run_id, depth=depth, result=result, **key)
    session.add(composition)
    session.flush()
    return composition
