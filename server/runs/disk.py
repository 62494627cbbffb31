"""Whether a run's Neuron Features fit on the disk, asked before any time is spent on it."""

from __future__ import annotations

from analysis.layers import LayerInfo
from analysis.models import InputSpec
from server.runs.features import nf_box
from server.storage.artifacts import ArtifactStore

NPY_HEADER_BYTES = 128  # an NF array's NPY header (format 1.0 pads it to a multiple of 64)


class StorageError(OSError):
    """Not enough disk for what a run must store; the message says how much, and where."""


def nf_array_bytes(
    layers: list[LayerInfo], spec: InputSpec, live: dict[str, int] | None = None
) -> int:
    """Bytes of the float NF arrays of ``layers``: one per live neuron (``live`` counts per
    layer; every channel before the sweep has found the dead ones), over its layer's reach."""
    total = 0
    for layer in layers:
        r0, r1, c0, c1 = nf_box(layer, spec)
        count = layer.channels if live is None else live[layer.name]
        total += count * ((r1 - r0) * (c1 - c0) * 3 * 4 + NPY_HEADER_BYTES)
    return total


def check_room_for_features(
    store: ArtifactStore,
    layers: list[LayerInfo],
    spec: InputSpec,
    live: dict[str, int] | None = None,
) -> None:
    """Refuse, before any time is spent, a run whose float NFs alone cannot fit on the store's
    disk (a late layer's are megabytes a neuron, and a full disk would fail the run hours in)."""
    need, free = nf_array_bytes(layers, spec, live), store.free_bytes()
    if need > free:
        raise StorageError(
            f"the Neuron Features of {len(layers)} layer(s) need {_size(need)} and {store.root} "
            f"has {_size(free)} free: choose fewer or earlier layers (a late layer's are the "
            "largest), or free some space"
        )


def _size(count: int) -> str:
    """A byte count for people: 3.2 GB, 410.0 MB, 5.1 kB."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count / 1e3:.1f} kB"
