"""The Neuron Feature stage's files: a display PNG and a top-patch sprite for every live neuron
of a layer, written by a thread per core while the next NFs accumulate.

The float NF at full resolution is not stored here (it was 96 % of a whole network's disk and
most of this stage's time): :mod:`server.runs.nf_arrays` computes it from the top-K when it is
first asked for."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from analysis.layers import LayerInfo
from analysis.machine import usable_cores
from analysis.models import InputSpec
from analysis.neuron_feature import NeuronFeature, display_image, neuron_features, sprite
from analysis.sweep import LayerTopK
from server.runs.decoded import DecodedImages
from server.runs.write import StoredNeuron
from server.storage.artifacts import ArtifactStore

MAX_STORE_THREADS = 16  # threads encoding and writing a layer's NF files: one per core


def nf_box(layer: LayerInfo, spec: InputSpec) -> tuple[int, int, int, int]:
    """The part of ``layer``'s window that its NF arrays hold: its reach on the model's input
    (outside it an NF is grey by definition)."""
    return layer.receptive_field.reach(spec.size, (layer.height, layer.width))


def compute_neuron_features(
    layer: LayerInfo,
    topk: LayerTopK,
    decoded: DecodedImages,
    store: ArtifactStore,
    device: str = "cpu",
    advance: Callable[[int], None] | None = None,
) -> dict[int, StoredNeuron]:
    """The NF's stretched display PNG of the whole window (computed over the layer's
    :func:`nf_box`) and the top-patch sprite (JPEG) for every live channel of a layer;
    ``advance(n)`` is told how many are finished.

    Encoding, hashing and writing a neuron's files run on a thread per core (they release the
    GIL; a GPU's NFs come faster than two threads write them) while the next neurons are
    finished; every write is done when this returns."""
    stored = {channel: StoredNeuron(channel) for channel in range(topk.channels)}
    features = neuron_features(
        topk.values.numpy(),
        topk.images.numpy(),
        topk.rows.numpy(),
        topk.cols.numpy(),
        layer.receptive_field,
        decoded.pixels,
        topk.dead.numpy(),
        device=device,
        resident_images=decoded.capacity,
        reach=nf_box(layer, decoded.input_spec),
    )

    def save(entry: StoredNeuron, feature: NeuronFeature) -> None:
        entry.nf_key = store.put_png(display_image(feature.mean, feature.reach, feature.window))
        entry.sprite_key = store.put_jpeg(sprite(feature.tiles))

    threads = min(usable_cores(), MAX_STORE_THREADS)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        pending: deque[Future[None]] = deque()
        for finished, (channel, feature) in enumerate(features, start=1):
            pending.append(pool.submit(save, stored[channel], feature))
            if advance:
                advance(finished)
            if len(pending) > 4 * threads:  # bounded: a few NFs in flight, not a layer
                pending.popleft().result()
        for done in pending:
            done.result()  # re-raises a failed write here
    return stored
