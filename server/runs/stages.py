"""Analyse a model over an image folder and store the results.

Stages: sweep → Neuron Features → (stored) → selectivity indexes and physiology → done. This is
where ``analysis/`` (pure compute) meets the database and the artifact store. A run is marked
``done`` only in the last commit, so it is never shown half-written; artifacts written before a
failure are harmless orphans, and a failed run is cleared and recomputed next time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy.orm import Session

from analysis.data import ImageFolder
from analysis.layers import LayerInfo, list_layers
from analysis.models import LoadedModel
from analysis.physiology import (
    Electrode,
    electrodes,
    fractions,
    layer_physiology,
    stimulus_count,
)
from analysis.resize import ResizePolicy
from analysis.selectivity.indexes import population_summary
from analysis.selectivity.layer import layer_indexes
from analysis.sweep import SweepResult, sweep
from server.progress import Progress, SilentProgress
from server.runs.decoded import DecodedImages, run_decoding
from server.runs.disk import check_room_for_features
from server.runs.features import compute_neuron_features, nf_box
from server.runs.register import RunParams, find_or_create_run, register_dataset, register_model
from server.runs.selection import select_layers
from server.runs.stored import load_layer_topk
from server.runs.write import (
    clear_run_layers,
    store_layer_indexes,
    store_sweep_results,
)
from server.storage.artifacts import ArtifactStore
from server.storage.packs import record_packed
from server.storage.schema import INDEX_NAMES, Run, utcnow


@dataclass
class AnalysisTimings:
    sweep_s: float = 0.0
    features_s: float = 0.0
    indexes_s: float = 0.0


@dataclass(frozen=True)
class AnalysisSettings:
    """How (not what) to compute: none of these change a run's numbers."""

    device: str = "cpu"
    batch_size: int = 64
    workers: int | None = None  # image-loading processes; None: one per core (loader_workers)
    indexes: bool = True


def index_batch_size(settings: AnalysisSettings) -> int:
    """Full-size images per perturbed forward: at least 256 on a GPU, which wants large
    batches; the run's batch size on a CPU, whose caches do not (on the demo CNN's last layer
    256 took 9.1 s where 64 took 6.0 s)."""
    on_cpu = str(settings.device).startswith("cpu")
    return settings.batch_size if on_cpu else max(settings.batch_size, 256)


def compute_indexes(
    session: Session,
    run: Run,
    loaded: LoadedModel,
    folder: ImageFolder,
    layers: list[LayerInfo],
    recording: dict[str, tuple[Electrode, Electrode]],
    settings: AnalysisSettings,
    progress: Progress,
    decoded: DecodedImages | None = None,
) -> None:
    """Selectivity indexes, physiology and per-layer summaries of every stored layer
    (``decoded``: images already held by an earlier stage of the same run)."""
    decoded = decoded or DecodedImages.of_run(folder, loaded.input, run)
    stored = {layer.name: layer for layer in run.layers}
    topks = {layer.name: load_layer_topk(session, stored[layer.name]) for layer in layers}
    total = sum(int((~t.dead).sum()) * t.k for t in topks.values())
    model = loaded.module.to(settings.device).eval()
    progress.start("physiology", stimulus_count(loaded.input), "stimuli")
    physiology = layer_physiology(
        model,
        recording,
        loaded.input,
        settings.device,
        advance=progress.update,
        batch_size=index_batch_size(settings),
    )
    progress.finish()
    progress.start("selectivity indexes", total, "patches")
    done = 0
    for layer in layers:
        topk = topks[layer.name]

        entries = int((~topk.dead).sum()) * topk.k

        def advance(count: int, total: int, base: int = done, entries: int = entries) -> None:
            progress.update(base + entries * count // max(total, 1))

        indexes = layer_indexes(
            model,
            layer,
            topk,
            decoded.image,
            folder.labels,
            loaded.input,
            device=settings.device,
            batch_size=index_batch_size(settings),
            progress=advance,
        )
        done += entries
        summary = population_summary(
            {name: [i.values()[name] for i in indexes.values()] for name in INDEX_NAMES}
        )
        summary["physiology"] = fractions(physiology[layer.name])
        store_layer_indexes(session, stored[layer.name], indexes, physiology[layer.name], summary)
    progress.finish()


def sweep_images(
    loaded: LoadedModel,
    folder: ImageFolder,
    layers: list[LayerInfo],
    run: Run,
    settings: AnalysisSettings,
    progress: Progress,
    indices: range | None = None,
    decoded: DecodedImages | None = None,
) -> SweepResult:
    """The sweep of a run over its whole dataset, or over the shard ``indices`` of it; its
    decoded images are handed to ``decoded`` for the next stages."""
    images = indices if indices is not None else range(len(folder.images))
    policy, draft = run_decoding(run)
    progress.start("sweep", len(images), "images")
    result = sweep(
        loaded.module,
        folder,
        [layer.name for layer in layers],
        loaded.input,
        k=run.params["top_k"],
        batch_size=settings.batch_size,
        device=settings.device,
        policy=policy,
        indices=indices,
        workers=settings.workers,
        draft=draft,
        progress=lambda done, _total: progress.update(done),
        keep=decoded.keep if decoded else None,
    )
    progress.finish()
    return result


def store_features(
    session: Session,
    run: Run,
    loaded: LoadedModel,
    folder: ImageFolder,
    layers: list[LayerInfo],
    result: SweepResult,
    store: ArtifactStore,
    progress: Progress,
    device: str = "cpu",
    decoded: DecodedImages | None = None,
) -> None:
    """NFs and sprites of every layer, then the run's layers, neurons and top activations.

    Layers stored by an earlier, interrupted attempt are replaced (the caller commits once), so
    repeating this is harmless.
    """
    trimmed = {name: topk.trimmed() for name, topk in result.layers.items()}
    live = {name: int((~topk.dead).sum()) for name, topk in trimmed.items()}
    check_room_for_features(store, layers, run.params["top_k"], loaded.input.size, live)
    decoded = decoded or DecodedImages.of_run(folder, loaded.input, run)
    live_total = sum(live[layer.name] for layer in layers)
    progress.start("neuron features", live_total, "neurons")
    files = compute_neuron_features(
        [(layer, trimmed[layer.name]) for layer in layers],
        decoded,
        store,
        device,
        progress.update,
    )
    progress.update(live_total)
    progress.finish()
    clear_run_layers(session, run)
    record_packed(session, files.packed)
    store_sweep_results(
        session,
        run,
        layers,
        SweepResult(trimmed, result.image_count, result.unreadable),
        files.neurons,
        {layer.name: nf_box(layer, loaded.input) for layer in layers},
    )
    session.flush()
    session.refresh(run)


def sweep_stats(result: SweepResult, folder: ImageFolder, settings: AnalysisSettings) -> dict:
    """What a run's page says about its data: images read, unreadable and skipped files."""
    return {
        "images": result.image_count,
        "unreadable": [folder.images[i].path for i in result.unreadable[:1000]],
        "unreadable_count": len(result.unreadable),
        "skipped_count": len(folder.skipped),
        "indexes": settings.indexes,
        "device": settings.device,
    }


def analyze_run(
    session: Session,
    run: Run,
    loaded: LoadedModel,
    folder: ImageFolder,
    layers: list[LayerInfo],
    recording: dict[str, tuple[Electrode, Electrode]],
    store: ArtifactStore,
    settings: AnalysisSettings,
    progress: Progress,
) -> AnalysisTimings:
    """Sweep, NFs, indexes; store everything and mark ``run`` done in the last commit."""
    timings = AnalysisTimings()
    check_room_for_features(store, layers, run.params["top_k"], loaded.input.size)
    run.status = "running"
    session.commit()

    decoded = DecodedImages.of_run(folder, loaded.input, run)
    started = time.perf_counter()
    result = sweep_images(loaded, folder, layers, run, settings, progress, decoded=decoded)
    timings.sweep_s = time.perf_counter() - started

    started = time.perf_counter()
    store_features(
        session, run, loaded, folder, layers, result, store, progress, settings.device, decoded
    )
    timings.features_s = time.perf_counter() - started

    if settings.indexes:
        started = time.perf_counter()
        compute_indexes(
            session, run, loaded, folder, layers, recording, settings, progress, decoded
        )
        timings.indexes_s = time.perf_counter() - started
    run.stats = {
        **sweep_stats(result, folder, settings),
        "sweep_seconds": round(timings.sweep_s, 3),
        "features_seconds": round(timings.features_s, 3),
        "indexes_seconds": round(timings.indexes_s, 3) if settings.indexes else None,
    }
    run.status = "done"
    run.finished = utcnow()
    session.commit()
    return timings


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
    settings: AnalysisSettings | None = None,
    progress: Progress | None = None,
    jpeg_draft: bool = False,
) -> AnalysisOutcome:
    """Register the model, dataset and run; compute unless an identical run is already done.

    A finished run that was analysed without indexes gets them now if they are asked for.
    """
    settings = settings or AnalysisSettings()
    progress = progress or SilentProgress()
    available = list_layers(loaded.module, loaded.input)
    layers = select_layers(available, layer_names)
    by_name = {layer.name: layer for layer in available}
    recording = {layer.name: electrodes(layer, by_name) for layer in layers}
    model = register_model(session, loaded, available)
    dataset = register_dataset(session, folder)
    params = RunParams(tuple(layer.name for layer in layers), top_k, resize.value, jpeg_draft)
    run, finished = find_or_create_run(session, model, dataset, params)
    session.commit()
    if finished:
        if settings.indexes and not run.stats.get("indexes"):
            started = time.perf_counter()
            compute_indexes(session, run, loaded, folder, layers, recording, settings, progress)
            run.stats = {
                **run.stats,
                "indexes": True,
                "indexes_seconds": round(time.perf_counter() - started, 3),
            }
            session.commit()
        return AnalysisOutcome(run.id, True, layers, None)
    try:
        timings = analyze_run(
            session, run, loaded, folder, layers, recording, store, settings, progress
        )
    except BaseException as error:
        session.rollback()
        run.status = "failed"
        run.error = f"{type(error).__name__}: {error}"[:2000]
        session.commit()
        raise
    return AnalysisOutcome(run.id, False, layers, timings)
