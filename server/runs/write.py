"""Write a run's results into the database: layers, neurons, top activations, index rows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from analysis.layers import LayerInfo
from analysis.physiology import UnitPhysiology
from analysis.selectivity.indexes import NeuronIndexes
from analysis.sweep import SweepResult
from server.storage.schema import INDEX_NAMES, Layer, Neuron, NeuronIndex, Run, TopActivation


@dataclass
class StoredNeuron:
    """Artifact keys of one neuron's display NF and sprite (None for a dead neuron); its float
    NF is computed when first asked for (:mod:`server.runs.nf_arrays`)."""

    channel: int
    nf_key: str | None = None
    nf_array_key: str | None = None
    sprite_key: str | None = None


def clear_run_layers(session: Session, run: Run) -> None:
    """Delete what an earlier attempt stored for ``run`` (its neurons and rows cascade)."""
    session.execute(delete(Layer).where(Layer.run_id == run.id))
    session.expire(run, ["layers"])


def store_sweep_results(
    session: Session,
    run: Run,
    layers: list[LayerInfo],
    result: SweepResult,
    neurons: dict[str, dict[int, StoredNeuron]],
    nf_boxes: dict[str, tuple[int, int, int, int]],
) -> None:
    """Insert layers, neurons and top activations of ``run`` (the caller commits);
    ``nf_boxes``: the part of each layer's window its NF arrays hold."""
    for position, info in enumerate(layers):
        topk = result.layers[info.name]
        dead = topk.dead
        field = info.receptive_field
        layer = Layer(
            run_id=run.id,
            name=info.name,
            position=position,
            type=info.type,
            channels=info.channels,
            height=info.height,
            width=info.width,
            rf_size=list(field.size),
            rf_stride=list(field.stride),
            rf_offset=list(field.offset),
            nf_box=list(nf_boxes[info.name]),
            dead_count=int(dead.sum()),
        )
        session.add(layer)
        session.flush()
        means = topk.mean.tolist()
        best = topk.values[:, 0].tolist() if topk.k else [0.0] * topk.channels
        rows = [
            {
                "layer_id": layer.id,
                "channel": channel,
                "dead": bool(dead[channel]),
                "mean_activation": float(means[channel]),
                "max_activation": float(best[channel]),
                "nf_key": neurons[info.name][channel].nf_key,
                "nf_array_key": neurons[info.name][channel].nf_array_key,
                "sprite_key": neurons[info.name][channel].sprite_key,
            }
            for channel in range(topk.channels)
        ]
        returning = insert(Neuron).returning(Neuron.id, sort_by_parameter_order=True)
        neuron_ids = list(session.scalars(returning, rows))
        values, images = topk.values.tolist(), topk.images.tolist()
        map_rows, map_cols = topk.rows.tolist(), topk.cols.tolist()
        session.execute(
            insert(TopActivation),
            [
                {
                    "neuron_id": neuron_ids[channel],
                    "rank": rank,
                    "image_index": images[channel][rank],
                    "value": values[channel][rank],
                    "row": map_rows[channel][rank],
                    "col": map_cols[channel][rank],
                }
                for channel in range(topk.channels)
                for rank in range(topk.k)
            ],
        )


def store_layer_indexes(
    session: Session,
    layer: Layer,
    indexes: dict[int, NeuronIndexes],
    physiology: list[UnitPhysiology],
    summary: dict[str, Any],
) -> None:
    """Insert every neuron's index rows (nulls for dead neurons) and the layer's summary."""
    neuron_ids = dict(
        session.execute(select(Neuron.channel, Neuron.id).where(Neuron.layer_id == layer.id)).all()
    )
    session.execute(delete(NeuronIndex).where(NeuronIndex.neuron_id.in_(neuron_ids.values())))
    rows: list[dict[str, Any]] = []
    for channel, neuron_id in sorted(neuron_ids.items()):
        found = indexes.get(channel)
        values = found.values() if found else dict.fromkeys(INDEX_NAMES)
        details = found.details() if found else {}
        for name in INDEX_NAMES:
            rows.append(
                {
                    "neuron_id": neuron_id,
                    "name": name,
                    "value": _number(values[name]),
                    "details": {},
                }
            )
        rows.append(
            {
                "neuron_id": neuron_id,
                "name": "color_bounded",
                "value": _number(found.color_bounded) if found else None,
                "details": {},
            }
        )
        rows.append(
            {"neuron_id": neuron_id, "name": "selectivity", "value": None, "details": details}
        )
        unit = physiology[channel]
        rows.append(
            {
                "neuron_id": neuron_id,
                "name": "double_opponent",
                "value": float(unit.double_opponent),
                "details": unit.details(),
            }
        )
    session.execute(insert(NeuronIndex), rows)
    layer.summary = summary


def _number(value: float | None) -> float | None:
    """NaN (an index without a defined value) is stored as null."""
    return None if value is None or value != value else float(value)
