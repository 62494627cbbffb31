"""Two or more runs compared, as plain data for the page, the API and the CLI.

Layers are matched by name when the runs share layer names, else by relative depth among each
run's recorded layers (the first run's layers, each with the other run's nearest in depth). Per
matched layer and index: each run's median, its share of selective neurons (above the
threshold of the layer summaries, docs/algorithms.md §4), a histogram, and a two-sample
Kolmogorov–Smirnov test of each run against the first. Runs of the same architecture (the
same layer names and channel counts) are also compared neuron by neuron: each index's change.
Runs of any architectures are matched neuron to neuron by their stored responses to a probe set
(:mod:`server.compare.responses`): Pearson's r over the probe images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from analysis.metadata import META_SOURCE
from analysis.statistics import correlations, ks_two_sample
from server.runs.read import get_run
from server.storage.artifacts import ArtifactStore
from server.storage.errors import NotFoundError
from server.storage.schema import INDEX_NAMES, Layer, Neuron, NeuronIndex, ProbeResponse, Run

SELECTIVE_ABOVE = 0.5  # the layer summaries' threshold (analysis.selectivity.indexes)
BINS = 20  # histogram bins on [0, 1]; values below 0 (a colour index can be) are counted apart
MAX_RUNS = 6
PROBE_IMAGES = 256  # images of the probe set that neurons of two runs are matched over
NEAREST = 10  # matches shown for a neuron


@dataclass(frozen=True)
class LayerValues:
    """One run's layer: each index's values over its live neurons, by channel."""

    run: int
    layer: Layer
    values: dict[str, dict[int, float]]
    dead: set[int]


def get_runs(session: Session, run_ids: list[int]) -> list[Run]:
    if not 2 <= len(run_ids) <= MAX_RUNS:
        raise NotFoundError(f"compare 2 to {MAX_RUNS} runs, not {len(run_ids)}")
    return [get_run(session, run_id) for run_id in run_ids]


def same_architecture(runs: list[Run]) -> bool:
    """Whether every run recorded the same layers with the same channel counts."""
    shapes = [[(layer.name, layer.channels) for layer in run.layers] for run in runs]
    return all(shape == shapes[0] for shape in shapes[1:])


def matched_layers(runs: list[Run]) -> tuple[str, list[list[Layer]]]:
    """("name" or "depth", one list of layers per match, one layer per run)."""
    names = [{layer.name: layer for layer in run.layers} for run in runs]
    shared = [layer.name for layer in runs[0].layers if all(layer.name in n for n in names[1:])]
    if shared:
        return "name", [[n[name] for n in names] for name in shared]
    matches = []
    for layer in runs[0].layers:
        depth = relative_depth(layer, runs[0])
        matches.append(
            [layer]
            + [
                min(run.layers, key=lambda o, r=run: abs(relative_depth(o, r) - depth))
                for run in runs[1:]
            ]
        )
    return "depth", matches


def relative_depth(layer: Layer, run: Run) -> float:
    """0 for a run's first recorded layer, 1 for its last."""
    return layer.position / max(1, len(run.layers) - 1) if len(run.layers) > 1 else 0.0


def layer_values(session: Session, layer: Layer) -> LayerValues:
    values: dict[str, dict[int, float]] = {name: {} for name in INDEX_NAMES}
    dead: set[int] = set()
    rows = session.execute(
        select(Neuron.channel, Neuron.dead, NeuronIndex.name, NeuronIndex.value)
        .outerjoin(
            NeuronIndex,
            (NeuronIndex.neuron_id == Neuron.id) & NeuronIndex.name.in_(INDEX_NAMES),
        )
        .where(Neuron.layer_id == layer.id)
    )
    for channel, is_dead, name, value in rows:
        if is_dead:
            dead.add(channel)
        elif name is not None and value is not None and np.isfinite(value):
            values[name][channel] = float(value)
    return LayerValues(layer.run_id, layer, values, dead)


def index_statistics(values: np.ndarray) -> dict[str, Any]:
    clipped = np.clip(values, 0.0, 1.0)
    counts, _edges = np.histogram(clipped, bins=BINS, range=(0.0, 1.0))
    return {
        "neurons": int(values.size),
        "median": float(np.median(values)) if values.size else None,
        "selective": float(np.mean(values > SELECTIVE_ABOVE)) if values.size else None,
        "below_zero": int(np.sum(values < 0)),
        "counts": [int(c) for c in counts],
    }


def compare_runs(session: Session, run_ids: list[int]) -> dict[str, Any]:
    """The runs, how their layers were matched, and per matched layer each run's index
    statistics and each later run's Kolmogorov–Smirnov test against the first."""
    runs = get_runs(session, run_ids)
    matching, matches = matched_layers(runs)
    layers = []
    for match in matches:
        found = [layer_values(session, layer) for layer in match]
        per_run = []
        for run, entry in zip(runs, found, strict=True):
            per_run.append(
                {
                    "run": run.id,
                    "layer": entry.layer.name,
                    "depth": relative_depth(entry.layer, run),
                    "channels": entry.layer.channels,
                    "dead_fraction": len(entry.dead) / max(1, entry.layer.channels),
                    "indexes": {
                        name: index_statistics(np.array(list(entry.values[name].values())))
                        for name in INDEX_NAMES
                    },
                }
            )
        tests = {
            name: [_ks(found[0].values[name], other.values[name], other.run) for other in found[1:]]
            for name in INDEX_NAMES
        }
        layers.append({"name": match[0].name, "runs": per_run, "tests": tests})
    return {
        "runs": [_run_record(run) for run in runs],
        "matching": matching,
        "same_architecture": same_architecture(runs),
        "selective_above": SELECTIVE_ABOVE,
        "bins": [i / BINS for i in range(BINS + 1)],
        "indexes": list(INDEX_NAMES),
        "layers": layers,
    }


def _ks(first: dict[int, float], second: dict[int, float], run: int) -> dict[str, Any]:
    statistic, p = ks_two_sample(np.array(list(first.values())), np.array(list(second.values())))
    known = statistic == statistic  # not nan: both runs have values
    return {"run": run, "ks": statistic if known else None, "p": p if known else None}


def _run_record(run: Run) -> dict[str, Any]:
    return {
        "id": run.id,
        "model": run.model.spec,
        "weights": (run.model.meta or {}).get(META_SOURCE) or run.model.weights_path or "random",
        "dataset": run.dataset.root,
        "images": run.dataset.image_count,
        "layers": len(run.layers),
        "indexes": any(layer.summary for layer in run.layers),
    }


DELTA_COLUMNS: dict[str, type] = {
    "channel": int,
    "dead": bool,
    **{f"{name}_{side}": float for name in INDEX_NAMES for side in ("a", "b")},
    **{f"delta_{name}": float for name in INDEX_NAMES},
}


def compared_pair(run_ids: list[int], against: int | None = None) -> list[int]:
    """The two runs that a neuron-by-neuron table and the nearest-neuron search compare: the
    first (the reference) and ``against``, any later one of ``run_ids`` (the second when not
    given), so three runs (random, epoch 10, trained) give either pair against the first."""
    if against is None:
        return run_ids[:2]
    if against not in run_ids[1:]:
        later = ", ".join(map(str, run_ids[1:]))
        raise NotFoundError(f"run {against} is not one of the runs compared with run "
                            f"{run_ids[0]} (they are {later})")  # fmt: skip
    return [run_ids[0], against]


def neuron_changes(session: Session, run_ids: list[int], layer_name: str) -> list[dict[str, Any]]:
    """One row per channel of ``layer_name`` in the first two runs (same architecture): each
    index in run a (the first) and b (the second), and delta = b − a; NF keys of both
    (:func:`compared_pair` picks another pair)."""
    runs = get_runs(session, run_ids)
    if not same_architecture(runs):
        raise NotFoundError(
            "the runs' layers differ (names or channel counts): neurons can be compared one to "
            "one only between runs of the same architecture"
        )
    pair = [next((x for x in run.layers if x.name == layer_name), None) for run in runs[:2]]
    if pair[0] is None or pair[1] is None:
        names = ", ".join(layer.name for layer in runs[0].layers)
        raise NotFoundError(f"the runs have no layer {layer_name!r} (they have: {names})")
    a, b = (layer_values(session, layer) for layer in pair)
    nfs = [_nf_keys(session, layer) for layer in pair]
    rows = []
    for channel in range(pair[0].channels):
        row: dict[str, Any] = {
            "channel": channel,
            "dead": channel in a.dead or channel in b.dead,
            "nf_a": nfs[0].get(channel),
            "nf_b": nfs[1].get(channel),
        }
        for name in INDEX_NAMES:
            first, second = a.values[name].get(channel), b.values[name].get(channel)
            row[f"{name}_a"], row[f"{name}_b"] = first, second
            both = first is not None and second is not None
            row[f"delta_{name}"] = second - first if both else None
        rows.append(row)
    return rows


def _nf_keys(session: Session, layer: Layer) -> dict[int, str]:
    rows = session.execute(
        select(Neuron.channel, Neuron.nf_key).where(
            Neuron.layer_id == layer.id, Neuron.nf_key.is_not(None)
        )
    )
    return {int(channel): str(key) for channel, key in rows}


def probe_response(session: Session, run_id: int, dataset_id: int) -> ProbeResponse | None:
    """``run_id``'s stored responses to the probe set of PROBE_IMAGES images of the folder."""
    return session.scalar(
        select(ProbeResponse).where(
            ProbeResponse.run_id == run_id,
            ProbeResponse.dataset_id == dataset_id,
            ProbeResponse.images == PROBE_IMAGES,
        )
    )


def nearest_neurons(
    session: Session,
    store: ArtifactStore,
    reference: ProbeResponse,
    layer: str,
    channel: int,
    other: ProbeResponse,
    count: int = NEAREST,
) -> list[dict[str, Any]]:
    """The ``count`` neurons of ``other``'s run (any recorded layer) whose responses to the
    probe set correlate best with neuron (``layer``, ``channel``) of ``reference``'s run,
    best first, each with Pearson's r and its NF. Empty when that neuron's responses are
    constant over the probe set (a correlation is undefined then)."""
    column = _column(reference, layer, channel)
    values = store.load_array(reference.array_key)[:, column]
    found = correlations(values, store.load_array(other.array_key))
    ranked = [
        int(i) for i in np.argsort(-np.nan_to_num(found, nan=-np.inf)) if found[i] == found[i]
    ]
    names = {}
    for name, first, channels in other.layers:
        names.update({first + c: (name, c) for c in range(channels)})
    matches = [(*names[i], float(found[i])) for i in ranked[:count]]
    wanted = {(name, c) for name, c, _r in matches}
    rows = session.execute(
        select(Layer.name, Neuron.channel, Neuron.nf_key)
        .join(Neuron, Neuron.layer_id == Layer.id)
        .where(Layer.run_id == other.run_id, Layer.name.in_({name for name, _c in wanted}))
    )
    keys = {(name, c): key for name, c, key in rows if (name, c) in wanted}
    return [
        {"layer": name, "channel": c, "r": r, "nf": keys.get((name, c))} for name, c, r in matches
    ]


def _column(responses: ProbeResponse, layer: str, channel: int) -> int:
    for name, first, channels in responses.layers:
        if name == layer:
            if not 0 <= channel < channels:
                raise NotFoundError(f"layer {layer!r} has channels 0..{channels - 1}")
            return first + channel
    names = ", ".join(entry[0] for entry in responses.layers)
    raise NotFoundError(f"run {responses.run_id} has no layer {layer!r} (it has: {names})")
