"""A run's neurons' responses to a probe set, computed by a worker and stored, so that neurons
of two runs can be matched by the correlation of their responses when their architectures (or
channels) do not correspond one to one.

A neuron's response to an image is its largest activation over its map (the quantity the sweep
ranks top images by), so two units that detect the same thing anywhere in the image respond
alike whatever their receptive fields. The probe set is ``count`` images spread evenly through
an image folder, decoded as the run itself decodes images (its input size, resize policy and
normalisation), so each run sees the probe images as it saw its own.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from sqlalchemy import delete
from sqlalchemy.orm import Session

from analysis.data import model_pixels, scan_image_folder
from analysis.hooks import forward_until, layer_hooks
from analysis.models import LoadedModel
from server.runs.decoded import DecodedImages, run_decoding
from server.runs.inputs import RunInputError
from server.storage.artifacts import ArtifactStore
from server.storage.schema import Dataset, ProbeResponse, Run

BATCH = 32


def probe_indices(total: int, count: int) -> list[int]:
    """``count`` image indices spread evenly over ``total`` images (all of them when fewer)."""
    if count >= total:
        return list(range(total))
    return sorted({round(float(i)) for i in np.linspace(0, total - 1, count)})


def probe_images(run: Run, dataset: Dataset, loaded: LoadedModel) -> DecodedImages:
    """``dataset``'s images as ``run`` decodes its own, refused if the folder changed."""
    folder = scan_image_folder(dataset.root)
    if folder.fingerprint() != dataset.fingerprint:
        raise RunInputError(
            f"the image folder {dataset.root} changed since it was registered, so it cannot "
            "serve as the probe set; register it again"
        )
    policy, draft = run_decoding(run)
    return DecodedImages(folder, loaded.input, policy, draft)


def compute_responses(
    loaded: LoadedModel,
    layers: list[str],
    pixels: Callable[[int], np.ndarray],
    indices: list[int],
    device: str = "cpu",
    advance: Callable[[int], None] | None = None,
) -> dict[str, np.ndarray]:
    """Per layer, the (images, channels) float32 maxima over each channel's map."""
    model = loaded.module.to(device).eval()
    found: dict[str, list[np.ndarray]] = {name: [] for name in layers}

    def record(name: str, output: torch.Tensor) -> None:
        values = output.detach().float()
        if values.ndim > 2:
            values = values.flatten(2).amax(dim=2)
        found[name].append(values.cpu().numpy())

    with torch.no_grad(), layer_hooks(model, layers, record, stop_early=True):
        for start in range(0, len(indices), BATCH):
            chunk = indices[start : start + BATCH]
            batch = torch.from_numpy(np.stack([pixels(index) for index in chunk]))
            forward_until(model, loaded.input.normalise(model_pixels(batch).to(device)))
            if advance:
                advance(start + len(chunk))
    return {name: np.concatenate(parts).astype(np.float32) for name, parts in found.items()}


def store_responses(
    session: Session,
    store: ArtifactStore,
    run: Run,
    dataset: Dataset,
    images: int,
    responses: dict[str, np.ndarray],
) -> ProbeResponse:
    """Keep the responses (replacing those of the same probe set) as one array."""
    columns, layers, offset = [], [], 0
    for layer in run.layers:
        values = responses[layer.name]
        columns.append(values)
        layers.append([layer.name, offset, values.shape[1]])
        offset += values.shape[1]
    key = store.put_array(np.concatenate(columns, axis=1))
    session.execute(
        delete(ProbeResponse).where(
            ProbeResponse.run_id == run.id,
            ProbeResponse.dataset_id == dataset.id,
            ProbeResponse.images == images,
        )
    )
    stored = ProbeResponse(
        run_id=run.id, dataset_id=dataset.id, images=images, array_key=key, layers=layers
    )
    session.add(stored)
    session.flush()
    return stored
