"""All selectivity indexes of one layer's live neurons, in one batched pass of the engine."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from analysis.layers import LayerInfo
from analysis.models import InputSpec
from analysis.selectivity.engine import ProgressCallback, perturbation_responses
from analysis.selectivity.indexes import NeuronIndexes, neuron_indexes
from analysis.selectivity.perturbations import ALL
from analysis.sweep import LayerTopK


def layer_indexes(
    model: nn.Module,
    layer: LayerInfo,
    topk: LayerTopK,
    load_image: Callable[[int], np.ndarray],
    labels: Sequence[str | None],
    input_spec: InputSpec,
    device: torch.device | str = "cpu",
    batch_size: int = 256,
    progress: ProgressCallback | None = None,
) -> dict[int, NeuronIndexes]:
    """Colour, orientation, symmetry, shape and class indexes of every live channel.

    ``labels[i]`` is the class label of dataset image i. Dead channels get no entry.
    """
    live = [int(c) for c in np.flatnonzero(~topk.dead.numpy())]
    if not live or topk.k == 0:
        return {}
    images = topk.images.numpy()
    responses = perturbation_responses(
        model,
        layer.name,
        layer.receptive_field,
        live,
        topk.rows.numpy(),
        topk.cols.numpy(),
        images,
        load_image,
        input_spec,
        ALL,
        device=device,
        batch_size=batch_size,
        progress=progress,
    )
    values = topk.values.numpy()
    return {
        channel: neuron_indexes(
            {name: family[row] for name, family in responses.items()},
            values[channel],
            [labels[i] for i in images[channel]],
        )
        for row, channel in enumerate(live)
    }
