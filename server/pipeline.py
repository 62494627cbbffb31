"""Analyse a model over an image folder and store the results.

Stages: sweep → Neuron Features → (stored) → selectivity indexes and physiology → done. This is
where ``analysis/`` (pure compute) meets the database and the artifact store. A run is marked
``done`` only in the last commit, so it is never shown half-written; artifacts written before a
failure are harmless orphans, and a failed run is cleared and recomputed next time.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Protocol

import numpy as np
import torch
from sqlalchemy.orm import Session

from analysis.data import ImageFolder, ResizePolicy, as_float, load_pixels
from analysis.layers import LayerInfo, default_layers, list_layers
from analysis.machine import usable_cores
from analysis.models import InputSpec, LoadedModel
from analysis.neuron_feature import NeuronFeature, display_image, neuron_features, sprite
from analysis.physiology import (
    Electrode,
    electrodes,
    fractions,
    layer_physiology,
    stimulus_count,
)
from analysis.selectivity.indexes import population_summary
from analysis.selectivity.layer import layer_indexes
from analysis.sweep import LayerTopK, SweepResult, sweep
from server.artifacts import ArtifactStore
from server.models import INDEX_NAMES, Run, utcnow
from server.registry import RunParams, find_or_create_run, register_dataset, register_model
from server.results import (
    StoredNeuron,
    clear_run_layers,
    load_layer_topk,
    store_layer_indexes,
    store_sweep_results,
)


class Progress(Protocol):
    """Reports long work: ``start`` a stage of ``total`` steps (counted in ``unit``, such as
    ``images``), then ``update`` done counts."""

    def start(self, stage: str, total: int, unit: str = "") -> None: ...
    def update(self, done: int) -> None: ...
    def finish(self) -> None: ...


class SilentProgress:
    def start(self, stage: str, total: int, unit: str = "") -> None:
        pass

    def update(self, done: int) -> None:
        pass

    def finish(self) -> None:
        pass


@dataclass
class AnalysisTimings:
    sweep_s: float = 0.0
    features_s: float = 0.0
    indexes_s: float = 0.0
    per_layer: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class AnalysisSettings:
    """How (not what) to compute: none of these change a run's numbers."""

    device: str = "cpu"
    batch_size: int = 64
    workers: int | None = None  # image-loading processes; None: one per core (loader_workers)
    indexes: bool = True


class LayerSelectionError(ValueError):
    """A requested layer that does not exist or cannot be recorded."""


def expand_patterns(available: list[LayerInfo], requested: list[str]) -> list[str]:
    """Layer names, with shell-style patterns (``features.*.block.2``) expanded in execution
    order to the recordable layers they match; a pattern matching none is an error."""
    names: list[str] = []
    for item in requested:
        if not any(char in item for char in "*?["):
            names.append(item)
            continue
        matched = [layer.name for layer in available if fnmatchcase(layer.name, item)]
        matched = [name for name in matched if name not in names]
        if not matched:
            raise LayerSelectionError(f"no layer matches {item!r}; see `neuronscope layers`")
        names += matched
    return names


def select_layers(available: list[LayerInfo], requested: list[str] | None) -> list[LayerInfo]:
    """The requested layers (names or shell-style patterns) in execution order, or the default
    post-activation set (SPEC §1)."""
    by_name = {layer.name: layer for layer in available}
    chosen = []
    names = expand_patterns(available, requested) if requested else default_layers(available)
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


MAX_STORE_THREADS = 16  # threads encoding and writing a layer's NF files: one per core
IMAGE_CACHE_BYTES = 1 << 30  # decoded images kept between the layers of a stage
NPY_HEADER_BYTES = 128  # an NF array's NPY header (format 1.0 pads it to a multiple of 64)


def run_decoding(run: Run) -> tuple[ResizePolicy, bool]:
    """How ``run`` turns files into the model's pixels: its resize policy, and whether JPEGs may
    decode at a reduced DCT scale (a run parameter, as it changes the pixels)."""
    return ResizePolicy(run.params["resize"]), bool(run.params.get("jpeg_draft", False))


class DecodedImages:
    """Dataset images as the model saw them, decoded once and kept as uint8 in memory up to
    IMAGE_CACHE_BYTES; beyond that the least recently used are let go, so a million-image
    folder stays bounded.

    The sweep hands over its batches (:meth:`keep`), so on a folder that fits, the Neuron
    Feature and index stages decode nothing; an image that several layers' neurons chose is
    decoded once per stage while it fits."""

    def __init__(
        self,
        folder: ImageFolder,
        input_spec: InputSpec,
        policy: ResizePolicy,
        draft: bool = False,
    ) -> None:
        self.folder = folder
        self.input_spec = input_spec
        self.policy = policy
        self.draft = draft
        self.capacity = max(1, IMAGE_CACHE_BYTES // (input_spec.height * input_spec.width * 3))
        self._pixels: OrderedDict[int, np.ndarray] = OrderedDict()

    @classmethod
    def of_run(cls, folder: ImageFolder, input_spec: InputSpec, run: Run) -> DecodedImages:
        """Decoding as ``run`` decodes: its resize policy, and its JPEG draft choice."""
        policy, draft = run_decoding(run)
        return cls(folder, input_spec, policy, draft)

    def _hold(self, index: int, pixels: np.ndarray) -> None:
        self._pixels[index] = pixels
        self._pixels.move_to_end(index)
        while len(self._pixels) > self.capacity:
            self._pixels.popitem(last=False)

    def keep(self, pixels: torch.Tensor, indices: torch.Tensor) -> None:
        """Hold a decoded uint8 (N, H, W, 3) batch (the sweep's ``keep``)."""
        for index, image in zip(indices.tolist(), pixels.numpy(), strict=True):
            self._hold(index, image.copy())  # a view would keep its whole batch alive

    def pixels(self, index: int) -> np.ndarray:
        """Image ``index`` as uint8 (H, W, 3)."""
        found = self._pixels.get(index)
        if found is None:
            path = self.folder.root / self.folder.images[index].path
            spec = self.input_spec
            found = load_pixels(path, spec.size, self.policy, spec.grey, self.draft)
        self._hold(index, found)
        return found

    def image(self, index: int) -> np.ndarray:
        """Image ``index`` as float32 (H, W, 3) in [0, 1], as :func:`load_rgb` gives it."""
        return as_float(self.pixels(index))


def nf_box(layer: LayerInfo, spec: InputSpec) -> tuple[int, int, int, int]:
    """The part of ``layer``'s window that its NF arrays hold: its reach on the model's input
    (outside it an NF is grey by definition)."""
    return layer.receptive_field.reach(spec.size, (layer.height, layer.width))


class StorageError(OSError):
    """Not enough disk for what a run must store; the message says how much, and where."""


def nf_array_bytes(
    layers: list[LayerInfo], spec: InputSpec, live: dict[str, int] | None = None
) -> int:
    """Bytes of the float NF arrays of ``layers``: one per live neuron (``live`` counts per
    layer; every channel before the sweep has found the dead ones), over its layer's reach."""
    total = 0
    for layer in layers:
        r0, r1, c0, c1 = nf_box(layer, spec)
        count = layer.channels if live is None else live[layer.name]
        total += count * ((r1 - r0) * (c1 - c0) * 3 * 4 + NPY_HEADER_BYTES)
    return total


def check_room_for_features(
    store: ArtifactStore,
    layers: list[LayerInfo],
    spec: InputSpec,
    live: dict[str, int] | None = None,
) -> None:
    """Refuse, before any time is spent, a run whose float NFs alone cannot fit on the store's
    disk (a late layer's are megabytes a neuron, and a full disk would fail the run hours in)."""
    need, free = nf_array_bytes(layers, spec, live), store.free_bytes()
    if need > free:
        raise StorageError(
            f"the Neuron Features of {len(layers)} layer(s) need {_size(need)} and {store.root} "
            f"has {_size(free)} free: choose fewer or earlier layers (a late layer's are the "
            "largest), or free some space"
        )


def _size(count: int) -> str:
    """A byte count for people: 3.2 GB, 410.0 MB, 5.1 kB."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count / 1e3:.1f} kB"


def compute_neuron_features(
    layer: LayerInfo,
    topk: LayerTopK,
    decoded: DecodedImages,
    store: ArtifactStore,
    device: str = "cpu",
    advance: Callable[[int], None] | None = None,
) -> dict[int, StoredNeuron]:
    """NF (float NPY at full resolution over the layer's :func:`nf_box` + stretched display
    PNG of the whole window) and top-patch sprite (JPEG) for every live channel of a layer;
    ``advance(n)`` is told how many are finished.

    Encoding, hashing and writing a neuron's files run on a thread per core (they release the
    GIL; a GPU's NFs come faster than two threads write them) while the next neurons are
    finished; every write is done when this returns."""
    stored = {channel: StoredNeuron(channel) for channel in range(topk.channels)}
    features = neuron_features(
        topk.values.numpy(),
        topk.images.numpy(),
        topk.rows.numpy(),
        topk.cols.numpy(),
        layer.receptive_field,
        decoded.pixels,
        topk.dead.numpy(),
        device=device,
        resident_images=decoded.capacity,
        reach=nf_box(layer, decoded.input_spec),
    )

    def save(entry: StoredNeuron, feature: NeuronFeature) -> None:
        entry.nf_array_key = store.put_array(feature.mean)
        entry.nf_key = store.put_png(display_image(feature.mean, feature.reach, feature.window))
        entry.sprite_key = store.put_jpeg(sprite(feature.tiles))

    threads = min(usable_cores(), MAX_STORE_THREADS)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        pending: deque[Future[None]] = deque()
        for finished, (channel, feature) in enumerate(features, start=1):
            pending.append(pool.submit(save, stored[channel], feature))
            if advance:
                advance(finished)
            if len(pending) > 4 * threads:  # bounded: a few NFs in flight, not a layer
                pending.popleft().result()
        for done in pending:
            done.result()  # re-raises a failed write here
    return stored


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
) -> dict[str, float]:
    """NFs and sprites of every layer, then the run's layers, neurons and top activations.

    Layers stored by an earlier, interrupted attempt are replaced (the caller commits once), so
    repeating this is harmless. Returns seconds per layer.
    """
    trimmed = {name: topk.trimmed() for name, topk in result.layers.items()}
    live = {name: int((~topk.dead).sum()) for name, topk in trimmed.items()}
    check_room_for_features(store, layers, loaded.input, live)
    decoded = decoded or DecodedImages.of_run(folder, loaded.input, run)
    neurons: dict[str, dict[int, StoredNeuron]] = {}
    seconds: dict[str, float] = {}
    progress.start("neuron features", sum(layer.channels for layer in layers), "neurons")
    done = 0
    for layer in layers:
        started = time.perf_counter()
        neurons[layer.name] = compute_neuron_features(
            layer,
            trimmed[layer.name],
            decoded,
            store,
            device,
            lambda finished, base=done: progress.update(base + finished),
        )
        seconds[layer.name] = time.perf_counter() - started
        done += layer.channels
        progress.update(done)
    progress.finish()
    clear_run_layers(session, run)
    store_sweep_results(
        session,
        run,
        layers,
        SweepResult(trimmed, result.image_count, result.unreadable),
        neurons,
        {layer.name: nf_box(layer, loaded.input) for layer in layers},
    )
    session.flush()
    session.refresh(run)
    return seconds


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
    check_room_for_features(store, layers, loaded.input)
    run.status = "running"
    session.commit()

    decoded = DecodedImages.of_run(folder, loaded.input, run)
    started = time.perf_counter()
    result = sweep_images(loaded, folder, layers, run, settings, progress, decoded=decoded)
    timings.sweep_s = time.perf_counter() - started

    started = time.perf_counter()
    timings.per_layer = store_features(
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
