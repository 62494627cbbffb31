"""A neuron composed of a shallower layer's neurons (docs/algorithms.md §6), computed from its
stored top images and stored for its page: in activation mode the shallower NFs pasted where its
top patches drive them, in relevance mode the ablation-relevance tree.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sqlalchemy import delete
from sqlalchemy.orm import Session

from analysis.data import ImageFolder
from analysis.decomposition.composition import (
    NeuronInputs,
    activation_composition,
    relevance_tree,
)
from analysis.decomposition.image import paste_features, stretched_contrast
from analysis.models import InputSpec, LoadedModel
from analysis.neuron_feature import full_window, to_uint8
from server.decompositions.read import COMPOSITION_MODES
from server.progress import Progress
from server.runs.decoded import DecodedImages
from server.runs.nf_arrays import FloatFeatures
from server.runs.stored import layer_neurons, load_layer_topk, stored_field, stored_reach
from server.storage.artifacts import ArtifactStore
from server.storage.schema import Composition, Layer, Neuron, Run


class DecompositionError(ValueError):
    """A decomposition that cannot be computed; the message says why."""


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
    if mode not in COMPOSITION_MODES:
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
        features = FloatFeatures(session, store, run)
        return _activation_result(
            loaded, model, neuron, stored, layer, channel, source, nfs, store, features
        )
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
    float_features: FloatFeatures,
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
    target = stored[layer]
    base = float_features.array(target, nfs[layer][channel])
    composite = raw = None
    if base is not None:
        reach = stored_reach(target)
        if reach:  # the canvas is the whole window: its source windows lie anywhere in it
            base = full_window(base, reach, (target.rf_size[0], target.rf_size[1]))
        features = {
            p.channel: float_features.array(stored[source], nfs[source][p.channel])
            for p in placements
        }
        source_reach = stored_reach(stored[source])
        raw = store.put_png(to_uint8(paste_features(base, placements, features, source_reach)))
        # As the NF grid shows NFs: each stretched, the composed neuron's own too.
        stretched = paste_features(
            stretched_contrast(base), placements, features, source_reach, stretched=True
        )
        composite = store.put_png(to_uint8(stretched))
    return {
        "mode": "activation",
        "source": source,
        "image": composite,
        "image_raw": raw,
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
