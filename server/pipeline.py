"""Analyse a model over an image folder and store the results: sweep, then Neuron Features.

This is where ``analysis/`` (pure compute) meets the database and the artifact store. Results of
a run are written in one transaction at the end and the run is marked ``done`` in it, so a run
is never seen half-written; artifacts written before a failure are harmless orphans.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from sqlalchemy import insert
from sqlalchemy.orm import Session

from analysis.data import ImageFolder, ResizePolicy, load_rgb
from analysis.layers import LayerInfo, default_layers, list_layers
from analysis.models import LoadedModel
from analysis.neuron_feature import contrast_stretched, neuron_features, sprite
from analysis.sweep import LayerTopK, SweepResult, sweep
from server.artifacts import ArtifactStore
from server.models import Layer, Neuron, Run, TopActivation, utcnow
from server.registry import RunParams, find_or_create_run, register_dataset, register_model

SPRITE_TILE_LIMIT = 96


class Progress(Protocol):
    """Reports long work: ``start`` a stage of ``total`` steps, then ``update`` done counts."""

    def start(self, stage: str, total: int) -> None: ...
    def update(self, done: int) -> None: ...
    def finish(self) -> None: ...


class SilentProgress:
    def start(self, stage: str, total: int) -> None:
        pass

    def update(self, done: int) -> None:
        pass

    def finish(self) -> None:
        pass


@dataclass
class StoredNeuron:
    channel: int
    nf_key: str | None = None
    nf_array_key: str | None = None
    sprite_key: str | None = None


@dataclass
class AnalysisTimings:
    sweep_s: float = 0.0
    features_s: float = 0.0
    store_s: float = 0.0
    per_layer: dict[str, float] = field(default_factory=dict)


def compute_neuron_features(
    layer: LayerInfo,
    topk: LayerTopK,
    load_image: Callable[[int], np.ndarray],
    store: ArtifactStore,
) -> dict[int, StoredNeuron]:
    """NF (float NPY + stretched PNG) and top-patch sprite for every live channel of a layer."""
    stored = {channel: StoredNeuron(channel) for channel in range(topk.channels)}
    dead = topk.dead.numpy()
    features = neuron_features(
        topk.values.numpy(),
        topk.images.numpy(),
        topk.rows.numpy(),
        topk.cols.numpy(),
        layer.receptive_field,
        load_image,
        dead,
    )
    for channel, feature in features:
        entry = stored[channel]
        entry.nf_array_key = store.put_array(feature.mean)
        entry.nf_key = store.put_png(contrast_stretched(feature.mean))
        entry.sprite_key = store.put_png(sprite([_tile(p) for p in feature.patches]))
    return stored


def _tile(patch: np.ndarray) -> np.ndarray:
    """Shrink big patches for the sprite by striding (cheap; the NF keeps full resolution)."""
    step = max(1, -(-max(patch.shape[:2]) // SPRITE_TILE_LIMIT))
    return patch[::step, ::step]


def store_results(
    session: Session,
    run: Run,
    layers: list[LayerInfo],
    result: SweepResult,
    neurons: dict[str, dict[int, StoredNeuron]],
) -> None:
    """Insert layers, neurons and top activations of ``run`` (caller commits)."""
    for position, info in enumerate(layers):
        topk = result.layers[info.name]
        dead = topk.dead
        field_ = info.receptive_field
        layer = Layer(
            run_id=run.id,
            name=info.name,
            position=position,
            type=info.type,
            channels=info.channels,
            height=info.height,
            width=info.width,
            rf_size=list(field_.size),
            rf_stride=list(field_.stride),
            rf_offset=list(field_.offset),
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
        ids = session.scalars(
            insert(Neuron).returning(Neuron.id, sort_by_parameter_order=True), rows
        )
        neuron_ids = list(ids)
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


def analyze_run(
    session: Session,
    run: Run,
    loaded: LoadedModel,
    folder: ImageFolder,
    layers: list[LayerInfo],
    store: ArtifactStore,
    device: str = "cpu",
    batch_size: int = 64,
    workers: int = 2,
    progress: Progress | None = None,
) -> AnalysisTimings:
    """Sweep, compute NFs, store everything and mark ``run`` done, in one final commit."""
    progress = progress or SilentProgress()
    timings = AnalysisTimings()
    policy = ResizePolicy(run.params["resize"])
    run.status = "running"
    session.commit()

    started = time.perf_counter()
    progress.start("sweep", len(folder.images))
    result = sweep(
        loaded.module,
        folder,
        [layer.name for layer in layers],
        loaded.input,
        k=run.params["top_k"],
        batch_size=batch_size,
        device=device,
        policy=policy,
        workers=workers,
        progress=lambda done, _total: progress.update(done),
    )
    progress.finish()
    timings.sweep_s = time.perf_counter() - started
    result = SweepResult(
        {name: topk.trimmed() for name, topk in result.layers.items()},
        result.image_count,
        result.unreadable,
    )

    started = time.perf_counter()
    cache: dict[int, np.ndarray] = {}

    def load_image(index: int) -> np.ndarray:
        if index not in cache:
            if len(cache) > 2048:
                cache.clear()
            cache[index] = load_rgb(
                folder.root / folder.images[index].path, loaded.input.size, policy
            )
        return cache[index]

    neurons: dict[str, dict[int, StoredNeuron]] = {}
    progress.start("neuron features", sum(layer.channels for layer in layers))
    done = 0
    for layer in layers:
        layer_start = time.perf_counter()
        neurons[layer.name] = compute_neuron_features(
            layer, result.layers[layer.name], load_image, store
        )
        timings.per_layer[layer.name] = time.perf_counter() - layer_start
        done += layer.channels
        progress.update(done)
    progress.finish()
    timings.features_s = time.perf_counter() - started

    started = time.perf_counter()
    store_results(session, run, layers, result, neurons)
    timings.store_s = time.perf_counter() - started
    run.stats = {
        "images": result.image_count,
        "unreadable": [folder.images[i].path for i in result.unreadable[:1000]],
        "unreadable_count": len(result.unreadable),
        "skipped_count": len(folder.skipped),
        "sweep_seconds": round(timings.sweep_s, 3),
        "features_seconds": round(timings.features_s, 3),
        "store_seconds": round(timings.store_s, 3),
        "device": device,
    }
    run.status = "done"
    run.finished = utcnow()
    session.commit()
    return timings


class LayerSelectionError(ValueError):
    """A requested layer that does not exist or cannot be recorded."""


def select_layers(available: list[LayerInfo], requested: list[str] | None) -> list[LayerInfo]:
    """The requested layers in execution order, or the default post-activation set (SPEC §1)."""
    by_name = {layer.name: layer for layer in available}
    names = requested or default_layers(available)
    chosen = []
    for name in names:
        layer = by_name.get(name)
        if layer is None:
            near = [n for n in by_name if n.startswith(name.rsplit(".", 1)[0])][:8]
            hint = f"; similar: {', '.join(near)}" if near else "; see `neuronscope layers`"
            raise LayerSelectionError(f"unknown layer {name!r} (no module with a 4-D output){hint}")
        if not layer.hookable:
            raise LayerSelectionError(
                f"layer {name!r} runs {layer.calls} times per forward pass, so it has no single "
                "output; choose the block that contains it instead"
            )
        chosen.append(layer)
    order = {layer.name: i for i, layer in enumerate(available)}
    return sorted(chosen, key=lambda layer: order[layer.name])


@dataclass
class AnalysisOutcome:
    run_id: int
    reused: bool
    layers: list[LayerInfo]
    timings: AnalysisTimings | None


def analyze_folder(
    session: Session,
    store: ArtifactStore,
    loaded: LoadedModel,
    folder: ImageFolder,
    layer_names: list[str] | None,
    top_k: int = 100,
    resize: ResizePolicy = ResizePolicy.WHOLE,
    device: str = "cpu",
    batch_size: int = 64,
    workers: int = 2,
    progress: Progress | None = None,
) -> AnalysisOutcome:
    """Register the model, dataset and run; compute unless an identical run is already done."""
    layers = select_layers(list_layers(loaded.module, loaded.input.size), layer_names)
    model = register_model(session, loaded)
    dataset = register_dataset(session, folder)
    params = RunParams(
        layers=tuple(layer.name for layer in layers), top_k=top_k, resize=resize.value
    )
    run, finished = find_or_create_run(session, model, dataset, params)
    session.commit()
    if finished:
        return AnalysisOutcome(run.id, True, layers, None)
    try:
        timings = analyze_run(
            session,
            run,
            loaded,
            folder,
            layers,
            store,
            device=device,
            batch_size=batch_size,
            workers=workers,
            progress=progress,
        )
    except BaseException as error:
        session.rollback()
        run.status = "failed"
        run.error = f"{type(error).__name__}: {error}"[:2000]
        session.commit()
        raise
    return AnalysisOutcome(run.id, False, layers, timings)
