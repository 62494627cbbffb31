"""Shards of a dataset for separate sweeps: boundaries on batch boundaries, every image once."""

from __future__ import annotations

import pytest

from analysis.shards import plan_shards
from tests.support.models import RED_DETECTOR_ARGS

ANALYSIS = (*RED_DETECTOR_ARGS, "--layers", "1,4", "--top-k", "5", "--workers", "0", "--json")


@pytest.mark.parametrize(("images", "shards", "batch"), [(100, 3, 8), (24, 3, 8), (10, 4, 64)])
def test_shard_boundaries_fall_on_batch_boundaries(images, shards, batch):
    planned = plan_shards(images, shards, batch)
    assert [i for shard in planned for i in shard] == list(range(images))
    assert all(shard.start % batch == 0 for shard in planned) and len(planned) <= shards
