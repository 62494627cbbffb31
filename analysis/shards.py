"""Split a dataset into shards for separate sweeps (plain Python: the web process plans them)."""

from __future__ import annotations


def plan_shards(image_count: int, shards: int, batch_size: int) -> list[range]:
    """Split ``image_count`` images into at most ``shards`` contiguous ranges for separate sweeps.

    Every boundary is a multiple of ``batch_size``, so each shard's batches hold exactly the
    images the unsharded sweep's batches hold, and the merged top-K is bit-identical to it.
    """
    if shards < 1 or batch_size < 1:
        raise ValueError("shards and batch size must be at least 1")
    batches = max(1, -(-image_count // batch_size))
    per_shard = -(-batches // min(shards, batches)) * batch_size
    return [
        range(start, min(start + per_shard, image_count))
        for start in range(0, max(image_count, 1), per_shard)
    ]
