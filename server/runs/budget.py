"""What a run will cost, said before it starts: time per stage on the chosen device, and disk.

Each figure comes from a short trial on this machine, not from a table: a few images decoded and
one batch through the network (the sweep, and physiology's 1,321 stimuli); one synthetic
Neuron Feature of each layer's window size accumulated, drawn, encoded and tiled (the NF
stage); one truncated forward per layer, scaled to the crops the index engine forwards (the
indexes: 31 re-readings of each top patch); two optimisation steps (feature visualisations).
The stages of a real run overlap less or more than this assumes; the estimate aims at a factor
of two, enough to tell minutes from hours before they are spent.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from analysis.data import ImageFolder, load_pixels, model_pixels
from analysis.hooks import forward_until, layer_hooks, model_device
from analysis.layers import LayerInfo
from analysis.models import InputSpec, LoadedModel
from analysis.neuron_feature import display_image, sprite, tile_step
from analysis.physiology import stimulus_count
from analysis.resize import ResizePolicy
from analysis.sweep import loader_workers
from server.runs.disk import feature_bytes, readable_bytes
from server.runs.features import feature_processes, nf_box
from server.storage.artifacts import encode_jpeg
from server.storage.png import encode_png

LONG_SECONDS = 600.0  # over this, or over half the free disk, the user is asked to confirm
REREADS_PER_PATCH = 31  # the index engine: the patch itself, 1 grey, 23 rotations, 4 mirrors, 2
TRIAL_IMAGES = 8
INDEX_TRIAL_BATCH = 32  # the engine forwards crops in large batches: time one that size
# The index engine's crops ran nearly twice as fast per crop as the trial's plain truncated
# forwards of the same area (ResNet-18 and VGG-11 on a 2-core CPU: neurons that share an image
# and position share their forwards, and the crops' grid fits the layer exactly).
ENGINE_SHARE = 0.6


@dataclass
class Stage:
    name: str
    seconds: float
    bytes: int = 0


@dataclass
class Budget:
    """The stages' estimates, and what a user can do about a large one."""

    stages: list[Stage] = field(default_factory=list)
    free_bytes: int | None = None

    @property
    def seconds(self) -> float:
        return sum(stage.seconds for stage in self.stages)

    @property
    def bytes(self) -> int:
        return sum(stage.bytes for stage in self.stages)

    @property
    def large(self) -> bool:
        """Long enough, or big enough for the disk, to ask before starting."""
        over_disk = self.free_bytes is not None and self.bytes > self.free_bytes / 2
        return self.seconds > LONG_SECONDS or over_disk

    def lines(self) -> list[str]:
        width = max(len(stage.name) for stage in self.stages)
        rows = [
            f"  {stage.name:<{width}}  {duration(stage.seconds):>9}"
            + (f"  {readable_bytes(stage.bytes):>9}" if stage.bytes else "")
            for stage in self.stages
        ]
        total = (
            f"  {'total':<{width}}  {duration(self.seconds):>9}  {readable_bytes(self.bytes):>9}"
        )
        return [*rows, total]

    def advice(self, indexes: bool, flags: bool = True) -> list[str]:
        """Which options shrink a large run: as the CLI's flags, or as the new-run form's
        fields (``flags=False``)."""
        if not flags:
            ways = [
                "fewer layers, or earlier ones (a late layer's windows are the largest)",
                "a smaller top-K (every stage after the sweep is in proportion to it)",
            ]
            if indexes:
                ways.append("no selectivity indexes (a later run with them adds them)")
            return [*ways, "a GPU worker (`neuronscope worker --device cuda`)"]
        ways = ["--layers (fewer, or earlier: a late layer's windows are the largest)"]
        ways.append("--top-k (every stage after the sweep is in proportion to it)")
        if indexes:
            ways.append("--no-indexes (they can be added later by analysing again without it)")
        ways.append("a GPU worker (--queue, then `neuronscope worker --device cuda`)")
        return ways

    def headline(self) -> str:
        """One line: each stage's time (and disk), then the total."""
        stages = " · ".join(
            f"{stage.name} {duration(stage.seconds)}"
            + (f" ({readable_bytes(stage.bytes)})" if stage.bytes else "")
            for stage in self.stages
        )
        return f"{stages} · total {duration(self.seconds)}, {readable_bytes(self.bytes)}"

    def record(self) -> dict[str, Any]:
        """The estimate as a job stores it (JSON), its figures also worded for people."""
        return {
            "stages": [
                {
                    "name": stage.name,
                    "seconds": round(stage.seconds, 2),
                    "bytes": stage.bytes,
                    "time": duration(stage.seconds),
                    "disk": readable_bytes(stage.bytes) if stage.bytes else "",
                }
                for stage in self.stages
            ],
            "seconds": round(self.seconds, 2),
            "bytes": self.bytes,
            "time": duration(self.seconds),
            "disk": readable_bytes(self.bytes),
            "free_disk": readable_bytes(self.free_bytes) if self.free_bytes is not None else None,
            "large": self.large,
        }


def estimate_run(
    loaded: LoadedModel,
    folder: ImageFolder,
    layers: list[LayerInfo],
    top_k: int,
    batch_size: int,
    indexes: bool,
    policy: ResizePolicy = ResizePolicy.WHOLE,
    featureviz: Callable[[], float] | None = None,
    free_bytes: int | None = None,
) -> Budget:
    """Estimate each stage of analysing ``folder`` at ``layers`` (see the module's docstring);
    ``featureviz`` returns the feature visualisations' seconds when they are asked for."""
    model = loaded.module.eval()
    spec = loaded.input
    count = len(folder.images)
    decode = _decode_seconds(folder, spec.size, policy)
    cold, forward = _forward_seconds(model, loaded, batch_size)
    device = model_device(model)
    loaders = max(1, loader_workers(device) or 1)
    budget = Budget(free_bytes=free_bytes)
    budget.stages.append(Stage("sweep", cold + count * max(forward, decode / loaders)))
    neurons = sum(layer.channels for layer in layers)
    nf_seconds = sum(
        layer.channels * _neuron_feature_seconds(layer, spec, top_k) for layer in layers
    )
    nf_seconds /= feature_processes(str(device), neurons)
    nf_bytes = feature_bytes(layers, top_k, spec.size)
    budget.stages.append(Stage("Neuron Features", nf_seconds, nf_bytes))
    if indexes:
        truncated = _truncated_seconds(loaded, layers)
        # Physiology's stimuli go as far as the deepest recorded layer, once each.
        budget.stages.append(Stage("physiology", stimulus_count(spec) * max(truncated.values())))
        budget.stages.append(
            Stage("indexes", _index_seconds(loaded, layers, truncated, top_k, count))
        )
    if featureviz is not None:
        budget.stages.append(Stage("feature visualisations", featureviz()))
    return budget


def _decode_seconds(folder: ImageFolder, size: tuple[int, int], policy: ResizePolicy) -> float:
    """Seconds to decode one image of the folder (a few, evenly spaced)."""
    count = len(folder.images)
    drawn = min(count, TRIAL_IMAGES)
    sample = sorted({i * count // drawn for i in range(drawn)})
    started = time.perf_counter()
    for index in sample:
        try:
            load_pixels(folder.root / folder.images[index].path, size, policy)
        except (OSError, ValueError):
            continue
    return (time.perf_counter() - started) / max(1, len(sample))


@torch.no_grad()
def _forward_seconds(
    model: torch.nn.Module, loaded: LoadedModel, batch_size: int
) -> tuple[float, float]:
    """The first batch's seconds (kernels chosen, memory found: a sweep pays it once), and
    seconds per image of the whole forward in the run's batches after it."""
    batch = min(batch_size, 16)
    inputs = _inputs(loaded, batch)
    started = time.perf_counter()
    model(inputs)
    _synchronise(inputs.device)
    cold = time.perf_counter() - started
    return cold, _fastest(lambda: model(inputs), inputs) / batch


def _inputs(loaded: LoadedModel, batch: int) -> torch.Tensor:
    device = model_device(loaded.module)
    pixels = torch.rand(batch, loaded.input.height, loaded.input.width, 3) * 255
    images = model_pixels(pixels.to(torch.uint8)).to(device)
    return loaded.input.normalise(images).contiguous(memory_format=torch.channels_last)


def _synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _neuron_feature_seconds(layer: LayerInfo, spec: InputSpec, top_k: int) -> float:
    """One neuron of ``layer``: K patches accumulated over its reach (where its NF is computed:
    a late layer's window can be many times larger), the display drawn and encoded, the sprite
    tiled and encoded; on a synthetic NF of that size."""
    reach = nf_box(layer, spec)
    rows, cols = reach[1] - reach[0], reach[3] - reach[2]
    rng = np.random.default_rng(0)
    feature = rng.random((rows, cols, 3), dtype=np.float32)
    step = tile_step(layer.receptive_field)
    window = layer.receptive_field.size
    tile = (rng.random((-(-window[0] // step), -(-window[1] // step), 3)) * 255).astype(np.uint8)
    started = time.perf_counter()
    for _ in range(top_k):
        feature += 0.01 * feature
    encode_png(display_image(feature, reach, window))
    encode_jpeg(sprite([tile] * top_k))
    return time.perf_counter() - started


@torch.no_grad()
def _truncated_seconds(loaded: LoadedModel, layers: list[LayerInfo]) -> dict[str, float]:
    """Seconds per image of the forward up to each layer (as the index engine and physiology
    run it: stopped after the layer), in a batch the size the engine's are."""
    model = loaded.module
    inputs = _inputs(loaded, INDEX_TRIAL_BATCH)
    found = {}
    for layer in layers:
        with layer_hooks(model, [layer.name], lambda _name, _out: None, stop_early=True):
            forward_until(model, inputs)
            found[layer.name] = _fastest(lambda: forward_until(model, inputs), inputs) / len(inputs)
    return found


def _fastest(step: Callable[[], object], inputs: torch.Tensor, repeats: int = 3) -> float:
    """The fastest of a few timed runs of ``step``: a trial this short is easily slowed by
    whatever else the machine does, never sped up."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        step()
        _synchronise(inputs.device)
        best = min(best, time.perf_counter() - started)
    return best


def _index_seconds(
    loaded: LoadedModel,
    layers: list[LayerInfo],
    truncated: dict[str, float],
    top_k: int,
    images: int,
) -> float:
    """Each layer's truncated forward per image, scaled to the crop around a window that the
    engine forwards, times the re-readings of every distinct top patch (at most one per image
    and map position, whichever neurons chose it)."""
    spec = loaded.input
    area = spec.height * spec.width
    total = 0.0
    for layer in layers:
        rows, cols = layer.receptive_field.size
        crop = min(rows, spec.height) * min(cols, spec.width) / area
        patches = min(layer.channels * top_k, images * layer.height * layer.width)
        total += patches * REREADS_PER_PATCH * truncated[layer.name] * crop * ENGINE_SHARE
    return total


def duration(seconds: float) -> str:
    """An estimate for people: ``"45 s"``, ``"12 min"``, ``"3.5 h"``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
