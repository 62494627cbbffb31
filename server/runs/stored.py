"""A stored layer read back as the analysis objects later stages compute with: its top-K as the
sweep's tensors, its receptive field, the part of its windows its NF arrays hold, its neurons.
The same objects whether the sweep ran in this process or in shards elsewhere."""

from __future__ import annotations

import torch
from sqlalchemy import select
from sqlalchemy.orm import Session

from analysis.receptive_field import ReceptiveField
from analysis.sweep import LayerTopK
from server.storage.schema import Layer, Neuron, TopActivation


def load_layer_topk(session: Session, layer: Layer) -> LayerTopK:
    """A stored layer's top-K as the sweep produced it (values, images, rows, cols)."""
    neurons = session.execute(
        select(Neuron.id, Neuron.channel, Neuron.mean_activation)
        .where(Neuron.layer_id == layer.id)
        .order_by(Neuron.channel)
    ).all()
    rows = session.execute(
        select(
            TopActivation.neuron_id,
            TopActivation.rank,
            TopActivation.image_index,
            TopActivation.value,
            TopActivation.row,
            TopActivation.col,
        )
        .join(Neuron, Neuron.id == TopActivation.neuron_id)
        .where(Neuron.layer_id == layer.id)
    ).all()
    k = 1 + max((r.rank for r in rows), default=-1)
    state = LayerTopK.empty(len(neurons), k)
    channel_of = {n.id: n.channel for n in neurons}
    for r in rows:
        channel = channel_of[r.neuron_id]
        state.values[channel, r.rank] = r.value
        state.images[channel, r.rank] = r.image_index
        state.rows[channel, r.rank] = r.row
        state.cols[channel, r.rank] = r.col
    state.maxima_sum = torch.tensor([n.mean_activation for n in neurons], dtype=torch.float64)
    state.count = 1
    return state


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
