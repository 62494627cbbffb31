"""What each kind of job computes. Each handler is idempotent: a retried attempt overwrites what
an interrupted one stored (artifacts are content-addressed, rows are replaced in one commit).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from analysis.data import scan_image_folder
from analysis.featureviz.targets import Target
from analysis.layers import list_layers
from analysis.models import load_model
from analysis.physiology import electrodes
from analysis.safetensors_io import parse_safetensors, safetensors_bytes
from analysis.sweep import SweepResult, merge_sweeps
from server.compare.responses import (
    compute_responses,
    probe_images,
    probe_indices,
    store_responses,
)
from server.decompositions.composition import compose_neuron, store_composition
from server.decompositions.image import decompose_image
from server.featureviz.render import (
    check_units,
    dream_image,
    image_png,
    read_image,
    render_and_store,
    render_settings,
    unit_count,
)
from server.jobs.context import JobContext
from server.jobs.estimate import note_run_estimate, run_estimate
from server.runs.disk import check_room_for_features, readable_bytes
from server.runs.inputs import RunInputError, open_run_inputs
from server.runs.nf_arrays import FloatFeatures
from server.runs.register import register_dataset, register_model
from server.runs.stages import (
    AnalysisSettings,
    compute_indexes,
    store_features,
    sweep_images,
    sweep_stats,
)
from server.storage.artifacts import ArtifactStore
from server.storage.schema import Dataset, Decomposition, Job, Neuron, Run, Upload


def run_sweep_shard(context: JobContext) -> dict[str, Any]:
    params = context.job.params
    settings = AnalysisSettings(
        device=context.settings.device,
        batch_size=params["batch_size"],
        workers=context.settings.workers,
    )
    with context.database.session() as session:
        run = _run_of(session, context.job)
        inputs = open_run_inputs(run, context.models)
    check_room_for_features(
        context.store, inputs.layers, run.params["top_k"], inputs.loaded.input.size
    )
    estimate = None
    if params["start"] == 0 and context.job.attempts <= 1:
        estimate = note_run_estimate(context, run, inputs, params["batch_size"])
    # No transaction stays open through the sweep, which only reads images.
    started = time.perf_counter()
    result = sweep_images(
        inputs.loaded,
        inputs.folder,
        inputs.layers,
        run,
        settings,
        context.progress,
        indices=range(params["start"], params["end"]),
    )
    tensors, metadata = result.to_tensors()
    key = context.store.put_bytes(safetensors_bytes(tensors, metadata), "safetensors")
    return {
        "shard": key,
        "seconds": round(time.perf_counter() - started, 3),
        "device": settings.device,
        **({"estimate": estimate} if estimate else {}),
    }


def run_merge(context: JobContext) -> dict[str, Any]:
    """Merge the shards exactly, compute NFs, and store the layers (they appear in the UI)."""
    with context.database.session() as session:
        run = _run_of(session, context.job)
        shard_jobs = session.scalars(select(Job).where(Job.id.in_(context.job.depends_on))).all()
        shard_jobs = sorted(shard_jobs, key=lambda job: job.params["start"])
        shards = [_load_shard(context.store, job.result["shard"]) for job in shard_jobs]
        merged = merge_sweeps(shards)
        inputs = open_run_inputs(run, context.models)
        started = time.perf_counter()
        store_features(
            session,
            run,
            inputs.loaded,
            inputs.folder,
            inputs.layers,
            merged,
            context.store,
            context.progress,
            context.settings.device,
        )
        run.stats = {
            **sweep_stats(merged, inputs.folder, context.settings),
            "indexes": False,
            "shards": len(shard_jobs),
            "sweep_seconds": round(sum(job.result.get("seconds", 0) for job in shard_jobs), 3),
            "sweep_devices": sorted({job.result.get("device", "?") for job in shard_jobs}),
            "features_seconds": round(time.perf_counter() - started, 3),
        }
    return {"layers": len(inputs.layers), "images": merged.image_count}


def run_indexes(context: JobContext) -> dict[str, Any]:
    """Selectivity indexes and physiology of one stored layer."""
    name = context.job.params["layer"]
    with context.database.session() as session:
        run = _run_of(session, context.job)
        inputs = open_run_inputs(run, context.models)
        layer = next(layer for layer in inputs.layers if layer.name == name)
        by_name = {info.name: info for info in inputs.available}
        started = time.perf_counter()
        compute_indexes(
            session,
            run,
            inputs.loaded,
            inputs.folder,
            [layer],
            {name: electrodes(layer, by_name)},
            context.settings,
            context.progress,
        )
    return {"layer": name, "seconds": round(time.perf_counter() - started, 3)}


def run_featureviz(context: JobContext) -> dict[str, Any]:
    """Feature visualisations of one layer's channels (or the output's classes) of a run's model;
    units already stored with the same settings are kept, not rendered again."""
    params = context.job.params
    target = Target(layer=params.get("layer"), output=params.get("output"))
    settings = render_settings(params.get("settings", {}))
    with context.database.session() as session:
        run = _run_of(session, context.job)
        loaded, available = context.models.load(run.model)
        count = unit_count(loaded, target, available)
        units = params.get("units") or list(range(count))
        check_units(units, count, target)
        report = render_and_store(
            session,
            run,
            loaded,
            target,
            units,
            settings,
            context.store,
            context.settings.device,
            context.progress,
        )
    return report.as_json()


def run_dream(context: JobContext) -> dict[str, Any]:
    """DeepDream of a dataset image (or a stored upload) at one layer of a run's model."""
    params = context.job.params
    with context.database.session() as session:
        run = _run_of(session, context.job)
        loaded, available = context.models.load(run.model)
        if params.get("image_index") is not None:
            folder = open_run_inputs(run, context.models).folder
            source = folder.root / folder.images[params["image_index"]].path
        else:
            source = context.store.path(params["artifact"])
    image = read_image(source)
    dreamt = dream_image(
        loaded,
        image,
        params["layer"],
        available,
        context.settings.device,
        octaves=params.get("octaves", 4),
        steps=params.get("steps", 32),
        progress=context.progress,
    )
    return {
        "layer": params["layer"],
        "source": context.store.put_png(image_png(image)),
        "image": context.store.put_png(image_png(dreamt)),
    }


def run_decompose(context: JobContext) -> dict[str, Any]:
    """Decompose an uploaded image, or an image of the run's dataset, at every analysed layer."""
    with context.database.session() as session:
        decomposition = session.get(Decomposition, context.job.params["decomposition"])
        if decomposition is None:
            raise RunInputError("the decomposition was deleted")
        run = _run_of(session, context.job)
        loaded, _available = context.models.load(run.model)
        if decomposition.upload_id is not None:
            upload = session.get(Upload, decomposition.upload_id)
            path = context.store.path(upload.image_key)
        else:
            folder = open_run_inputs(run, context.models).folder
            path = folder.root / folder.images[decomposition.image_index].path
        context.progress.start("decomposing the image", 1)
        decomposition.result = decompose_image(
            session,
            run,
            loaded,
            path,
            context.store,
            context.settings.device,
            decomposition.params.get("max_overlap", 0.0),
        )
        context.progress.finish()
        return {"decomposition": decomposition.id, "layers": len(decomposition.result["layers"])}


def run_compose(context: JobContext) -> dict[str, Any]:
    """A neuron's composition by a shallower layer, in one mode; stored for the neuron page."""
    params = context.job.params
    with context.database.session() as session:
        run = _run_of(session, context.job)
        inputs = open_run_inputs(run, context.models)
        result = compose_neuron(
            session,
            run,
            inputs.loaded,
            inputs.folder,
            params,
            context.store,
            context.settings.device,
            context.progress,
        )
        store_composition(session, run.id, params, result)
    return {"layer": params["layer"], "channel": params["channel"], "mode": params["mode"]}


def run_nf_array(context: JobContext) -> dict[str, Any]:
    """One neuron's float NF, computed from its top-K and the run's images, and kept."""
    params = context.job.params
    with context.database.session() as session:
        run = _run_of(session, context.job)
        layer = next((found for found in run.layers if found.name == params["layer"]), None)
        neuron = layer and session.scalar(
            select(Neuron).where(Neuron.layer_id == layer.id, Neuron.channel == params["channel"])
        )
        if layer is None or neuron is None:
            raise RunInputError(
                f"run {run.id} has no neuron {params['layer']} #{params['channel']}"
            )
        context.progress.start("computing the float Neuron Feature", 1)
        key = FloatFeatures(session, context.store, run).key(layer, neuron)
        context.progress.finish()
        return {"layer": layer.name, "channel": neuron.channel, "nf_array": key}


def run_probe(context: JobContext) -> dict[str, Any]:
    """A run's responses to a probe set, stored for matching its neurons with another run's."""
    params = context.job.params
    with context.database.session() as session:
        run = _run_of(session, context.job)
        dataset = session.get(Dataset, params["dataset"])
        if dataset is None:
            raise RunInputError(f"the probe set's image folder {params['dataset']} was removed")
        loaded, _layers = context.models.load(run.model)
        decoded = probe_images(run, dataset, loaded)
        indices = probe_indices(len(decoded.folder.images), params["images"])
        context.progress.start("responses to the probe images", len(indices), "images")
        responses = compute_responses(
            loaded,
            [layer.name for layer in run.layers],
            decoded.pixels,
            indices,
            context.settings.device,
            context.progress.update,
        )
        stored = store_responses(session, context.store, run, dataset, params["images"], responses)
        context.progress.finish()
        return {"probe_response": stored.id, "images": len(indices)}


def run_register_model(context: JobContext) -> dict[str, Any]:
    params = context.job.params
    context.progress.start("loading the model", 1)
    loaded = load_model(
        params["spec"],
        weights=params.get("weights"),
        input_size=_size(params.get("input_size")),
        mean=tuple(params["mean"]) if params.get("mean") else None,
        std=tuple(params["std"]) if params.get("std") else None,
    )
    layers = list_layers(loaded.module, loaded.input)
    with context.database.session() as session:
        model = register_model(session, loaded, layers)
        return {"model": model.id, "layers": len(layers)}


def _size(value: int | list[int] | None) -> int | tuple[int, int] | None:
    """A job's input size: an int from jobs queued before non-square input, else [h, w]."""
    return tuple(value) if isinstance(value, list) else value  # type: ignore[return-value]


def run_register_dataset(context: JobContext) -> dict[str, Any]:
    context.progress.start("scanning the folder", 1)
    folder = scan_image_folder(context.job.params["root"])
    with context.database.session() as session:
        dataset = register_dataset(session, folder)
        return {"dataset": dataset.id, "images": dataset.image_count}


def run_zoo_scan(context: JobContext) -> dict[str, Any]:
    """The pretrained weights in this worker's torch hub and Hugging Face caches."""
    from analysis.zoo.caches import cached_weights

    context.progress.start("looking through the caches", 1)
    found = [
        {
            "spec": entry.spec,
            "weights": entry.weights or "",
            "file": str(entry.path),
            "size": readable_bytes(entry.bytes),
        }
        for entry in cached_weights()
    ]
    return {"weights": found, "count": len(found)}


HANDLERS: dict[str, Callable[[JobContext], dict[str, Any]]] = {
    "sweep": run_sweep_shard,
    "merge": run_merge,
    "indexes": run_indexes,
    "featureviz": run_featureviz,
    "dream": run_dream,
    "decompose": run_decompose,
    "compose": run_compose,
    "nf_array": run_nf_array,
    "probe": run_probe,
    "register_model": run_register_model,
    "register_dataset": run_register_dataset,
    "estimate": run_estimate,
    "zoo": run_zoo_scan,
}


def _run_of(session: Session, job: Job) -> Run:
    run = session.get(Run, job.run_id)
    if run is None:
        raise RunInputError(f"job {job.id} belongs to run {job.run_id}, which no longer exists")
    return run


def _load_shard(store: ArtifactStore, key: str) -> SweepResult:
    tensors, metadata = parse_safetensors(store.path(key).read_bytes(), key)
    return SweepResult.from_tensors(tensors, metadata)
