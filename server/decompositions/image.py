"""An image decomposed into the Neuron Features of a run's neurons (docs/algorithms.md §6).

The image is read as the sweep reads it (RGB, resized to the model's input by the run's policy),
decomposed at every analysed layer in one forward pass, and stored as: per layer the accepted
neurons (windows mapped back to the image's own pixels), the image with their NFs pasted over
their windows (each NF as it is, and contrast-stretched as the NF grid shows it), a heat map per
accepted neuron, and per map position the strongest neurons (for "which neurons fire here").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from sqlalchemy.orm import Session

from analysis.data import load_rgb
from analysis.decomposition.image import LayerDecomposition, decompose, paste_features
from analysis.models import LoadedModel
from analysis.neuron_feature import to_uint8
from analysis.resize import InputMap
from server.runs.decoded import run_decoding
from server.runs.nf_arrays import FloatFeatures
from server.runs.stored import layer_neurons, stored_field, stored_reach
from server.storage.artifacts import ArtifactStore
from server.storage.schema import Layer, Neuron, Run

HEATMAPS_PER_LAYER = 16
TOP_NEURONS_PER_PIXEL = 5


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
    found = decompose(
        model, loaded.input.normalise(image), request, max_overlap, TOP_NEURONS_PER_PIXEL
    )
    result: dict[str, Any] = {
        "width": width,
        "height": height,
        "input_size": list(size),
        "image": store.put_png(to_uint8(pixels)),
        "layers": {},
    }
    placed = InputMap.of((width, height), size, policy)
    features = FloatFeatures(session, store, run)
    for name, decomposition in found.items():
        result["layers"][name] = _store_layer(
            decomposition, layers[name], neurons[name], pixels, store, placed, features
        )
    return result


def _store_layer(
    found: LayerDecomposition,
    layer: Layer,
    neurons: list[Neuron],
    pixels: np.ndarray,
    store: ArtifactStore,
    placed: InputMap,
    float_features: FloatFeatures,
) -> dict[str, Any]:
    features = {
        p.channel: float_features.array(layer, neurons[p.channel]) for p in found.placements
    }
    pasted = (found.placements, features, stored_reach(layer))
    heatmaps: dict[int, str] = {}
    for placement in found.placements:
        if placement.channel not in heatmaps and len(heatmaps) < HEATMAPS_PER_LAYER:
            heatmaps[placement.channel] = store.put_png(
                heatmap(pixels, found.normalised[placement.channel])
            )
    return {
        "map_size": list(found.normalised.shape[1:]),
        "composite": store.put_png(to_uint8(paste_features(pixels, *pasted))),
        "composite_stretched": store.put_png(
            to_uint8(paste_features(pixels, *pasted, stretched=True))
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
                "window": placed.window_to_original(p.window),
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
