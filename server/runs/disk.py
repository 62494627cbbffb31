"""Whether a run's Neuron Features fit on the disk, asked before any time is spent on it."""

from __future__ import annotations

from analysis.layers import LayerInfo
from analysis.neuron_feature import NF_DISPLAY_LIMIT, tile_step
from server.storage.artifacts import ArtifactStore

# What a stored picture takes against its raw pixels, on the safe side of what was measured on
# ResNet-50 over photographs (display PNGs about a third of their pixels' bytes, sprites at
# JPEG quality 90 about a sixth); the flat grey outside the image takes next to nothing.
PNG_SHARE, JPEG_SHARE, GREY_SHARE = 0.5, 0.25, 0.02


class StorageError(OSError):
    """Not enough disk for what a run must store; the message says how much, and where."""


def feature_bytes(
    layers: list[LayerInfo],
    top_k: int,
    input_size: tuple[int, int],
    live: dict[str, int] | None = None,
) -> int:
    """Bytes the Neuron Feature stage stores for ``layers``: per live neuron (``live`` counts
    per layer; every channel before the sweep has found the dead ones) its display PNG and its
    sprite of ``top_k`` tiles. A late layer's window can be many times the image: its pictures
    are mostly grey, and only the part of the window an image pixel can reach (the display) or
    a patch's image can fill (the tiles) is counted at the photographs' rate. The float NFs are
    computed when asked for, not stored here."""
    total = 0
    for layer in layers:
        rows, cols = field_size = layer.receptive_field.size
        factor = -(-max(rows, cols) // NF_DISPLAY_LIMIT)
        whole = -(-rows // factor) * -(-cols // factor) * 3
        r0, r1, c0, c1 = layer.receptive_field.reach(input_size, (layer.height, layer.width))
        reached = min(whole, -(-(r1 - r0) // factor) * -(-(c1 - c0) // factor) * 3)
        display = reached * PNG_SHARE + (whole - reached) * GREY_SHARE
        step = tile_step(layer.receptive_field)
        tiles = top_k * -(-rows // step) * -(-cols // step) * 3
        filled = min(1.0, input_size[0] / field_size[0]) * min(1.0, input_size[1] / field_size[1])
        sprite = tiles * (filled * JPEG_SHARE + (1 - filled) * GREY_SHARE)
        count = layer.channels if live is None else live[layer.name]
        total += count * int(display + sprite)
    return total


def check_room_for_features(
    store: ArtifactStore,
    layers: list[LayerInfo],
    top_k: int,
    input_size: tuple[int, int],
    live: dict[str, int] | None = None,
) -> None:
    """Refuse, before any time is spent, a run whose Neuron Features cannot fit on the store's
    disk (a full disk would fail the run hours in)."""
    need, free = feature_bytes(layers, top_k, input_size, live), store.free_bytes()
    if need > free:
        raise StorageError(
            f"the Neuron Features of {len(layers)} layer(s) need {readable_bytes(need)} and "
            f"{store.root} has {readable_bytes(free)} free: choose fewer layers or a smaller "
            "--top-k, or free some space"
        )


def readable_bytes(count: int) -> str:
    """A byte count for people: 3.2 GB, 410.0 MB, 5.1 kB, 40 bytes."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} bytes"
