"""The sweep: one pass over a dataset, keeping every chosen channel's top-K images
(docs/algorithms.md §1).

For each image and channel the sweep records the maximum of the layer output over all positions
and where it is (ties to the first in row-major order), so a neuron's top-K are K distinct images.
The running top-K lives on the device and is merged after every batch.

Ordering is total: a higher value wins and, among equal values, the lower image index. Batches
arrive in index order and are appended after the buffer before a *stable* sort, which realises
exactly that order, so top-K(A ∪ B) = top-K(top-K(A) ∪ top-K(B)) holds bit for bit and sharded
sweeps merge to the unsharded result, ties included (post-ReLU zeros tie a lot).
"""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from multiprocessing.context import BaseContext

import torch
from torch import nn
from torch.utils.data import DataLoader

from analysis.data import ImageFolder, ImageTensors, model_pixels
from analysis.fusion import batch_norms_folded
from analysis.hooks import forward_until, layer_hooks
from analysis.machine import usable_cores
from analysis.models import InputSpec
from analysis.resize import ResizePolicy

ProgressCallback = Callable[[int, int], None]
BatchKeeper = Callable[[torch.Tensor, torch.Tensor], None]


@dataclass
class LayerTopK:
    """A layer's running top-K per channel, plus the mean of per-image maxima.

    ``values``, ``images``, ``rows`` and ``cols`` are (channels, K), sorted best first; an
    unfilled slot has value -inf and image -1.
    """

    values: torch.Tensor
    images: torch.Tensor
    rows: torch.Tensor
    cols: torch.Tensor
    maxima_sum: torch.Tensor
    count: int

    @classmethod
    def empty(cls, channels: int, k: int, device: torch.device | str = "cpu") -> LayerTopK:
        return cls(
            values=torch.full((channels, k), float("-inf"), device=device),
            images=torch.full((channels, k), -1, dtype=torch.int64, device=device),
            rows=torch.zeros((channels, k), dtype=torch.int32, device=device),
            cols=torch.zeros((channels, k), dtype=torch.int32, device=device),
            maxima_sum=torch.zeros(channels, dtype=torch.float64, device=device),
            count=0,
        )

    @property
    def channels(self) -> int:
        return self.values.shape[0]

    @property
    def k(self) -> int:
        return self.values.shape[1]

    @property
    def mean(self) -> torch.Tensor:
        """Mean over the dataset of each channel's per-image maximum."""
        return self.maxima_sum / max(self.count, 1)

    @property
    def dead(self) -> torch.Tensor:
        """A neuron whose best activation is ≤ 0 never fires: no NF, no indexes."""
        return ~(self.values[:, 0] > 0)

    def merge(
        self, values: torch.Tensor, images: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor
    ) -> None:
        """Fold candidates (channels, n) that come after everything merged so far."""
        all_values = torch.cat([self.values, values], dim=1)
        order = torch.sort(all_values, dim=1, descending=True, stable=True).indices[:, : self.k]
        self.values = all_values.gather(1, order)
        self.images = torch.cat([self.images, images], dim=1).gather(1, order)
        self.rows = torch.cat([self.rows, rows], dim=1).gather(1, order)
        self.cols = torch.cat([self.cols, cols], dim=1).gather(1, order)

    def to(self, device: torch.device | str) -> LayerTopK:
        return LayerTopK(
            self.values.to(device),
            self.images.to(device),
            self.rows.to(device),
            self.cols.to(device),
            self.maxima_sum.to(device),
            self.count,
        )

    def trimmed(self) -> LayerTopK:
        """Drop the slots no image filled (a dataset smaller than K)."""
        filled = int(torch.isfinite(self.values[0]).sum()) if self.channels else 0
        return LayerTopK(
            self.values[:, :filled],
            self.images[:, :filled],
            self.rows[:, :filled],
            self.cols[:, :filled],
            self.maxima_sum,
            self.count,
        )


@dataclass
class SweepResult:
    """What one sweep (or a merge of shards) found, on the CPU."""

    layers: dict[str, LayerTopK]
    image_count: int
    unreadable: list[int]

    def to_tensors(self) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        """Flat named tensors and string metadata, for a safetensors file (a shard's result)."""
        tensors: dict[str, torch.Tensor] = {"unreadable": torch.tensor(self.unreadable).long()}
        counts = {}
        for name, topk in self.layers.items():
            for part in ("values", "images", "rows", "cols", "maxima_sum"):
                tensors[f"{name}/{part}"] = getattr(topk, part).cpu()
            counts[name] = topk.count
        metadata = {"image_count": str(self.image_count), "counts": json.dumps(counts)}
        return tensors, metadata

    @classmethod
    def from_tensors(
        cls, tensors: dict[str, torch.Tensor], metadata: dict[str, str]
    ) -> SweepResult:
        """The inverse of :meth:`to_tensors`."""
        layers = {
            name: LayerTopK(
                values=tensors[f"{name}/values"],
                images=tensors[f"{name}/images"],
                rows=tensors[f"{name}/rows"],
                cols=tensors[f"{name}/cols"],
                maxima_sum=tensors[f"{name}/maxima_sum"],
                count=count,
            )
            for name, count in json.loads(metadata["counts"]).items()
        }
        return cls(layers, int(metadata["image_count"]), tensors["unreadable"].tolist())


class TopKRecorder:
    """Hooks on the chosen layers that fold every batch into each layer's running top-K.

    Enter it (hooks registered; it may be entered again and keeps its state), call
    :meth:`forward` per batch with the batch's global image indices, then :meth:`result`.

    Per batch and layer only a few kernels run and nothing waits for the device: the maxima and
    their positions are computed (:func:`spatial_argmax`) and staged; every ``merge_every``
    batches the staged candidates are folded into the top-K with one sort per layer.

    On CUDA the reductions, which are memory-bound, run on a side stream and overlap the next
    layers' compute-bound convolutions. That is only safe for an output that nothing modifies
    in place after the hook (a convolution followed by an in-place ReLU is modified), so the
    first batch runs on one stream and checks every output's version counter; only the
    outputs found untouched go to the side stream afterwards.
    """

    def __init__(
        self,
        model: nn.Module,
        layers: Sequence[str],
        k: int,
        device: torch.device | str,
        merge_every: int = 8,
        overlap: bool = True,
    ) -> None:
        self.model = model
        self.layer_names = list(layers)
        self.k = k
        self.device = torch.device(device)
        self.merge_every = merge_every
        self.state: dict[str, LayerTopK] = {}
        self._staged: dict[str, list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]] = {}
        self._staged_images: list[torch.Tensor] = []
        self._staged_valid: list[torch.Tensor] = []
        self._hooks: AbstractContextManager[None] | None = None
        cuda = self.device.type == "cuda"
        self._side_stream = torch.cuda.Stream(self.device) if cuda and overlap else None
        self._overlap_safe: set[str] | None = None  # None until the first batch has been checked
        self._versions: dict[str, tuple[torch.Tensor, int]] = {}

    def __enter__(self) -> TopKRecorder:
        self._hooks = layer_hooks(self.model, self.layer_names, self._record, stop_early=True)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._hooks is not None:
            self._hooks.__exit__(*exc)
            self._hooks = None

    def forward(self, batch: torch.Tensor, images: torch.Tensor, valid: torch.Tensor) -> None:
        """Run ``batch`` (already normalised); ``images`` are its global indices, in order."""
        forward_until(self.model, batch)
        if self._side_stream is not None and self._overlap_safe is None:
            self._overlap_safe = {
                name
                for name, (tensor, version) in self._versions.items()
                if tensor._version == version
            }
            self._versions.clear()
        self._staged_images.append(images)
        self._staged_valid.append(valid)
        if len(self._staged_images) >= self.merge_every:
            self._merge_staged()

    def _record(self, name: str, output: torch.Tensor) -> None:
        side = self._side_stream
        if side is None or self._overlap_safe is None or name not in self._overlap_safe:
            if side is not None and self._overlap_safe is None:
                self._versions[name] = (output, output._version)
            self._staged.setdefault(name, []).append(spatial_argmax(output))
            return
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            found = spatial_argmax(output)
        output.record_stream(side)  # keep its memory from reuse until the side stream is done
        self._staged.setdefault(name, []).append(found)

    def _merge_staged(self) -> None:
        if not self._staged_images:
            return
        if self._side_stream is not None:
            main = torch.cuda.current_stream(self.device)
            main.wait_stream(self._side_stream)
            for staged in self._staged.values():
                for tensor in (t for entry in staged for t in entry):
                    tensor.record_stream(main)
        images = torch.cat(self._staged_images)
        valid = torch.cat(self._staged_valid)
        for name, staged in self._staged.items():
            values = torch.cat([v for v, _, _ in staged]).float().t()  # (C, n)
            rows = torch.cat([r for _, r, _ in staged]).t().int()
            cols = torch.cat([c for _, _, c in staged]).t().int()
            values = values.masked_fill(~valid[None, :], float("-inf"))
            state = self.state.get(name)
            if state is None:
                state = self.state[name] = LayerTopK.empty(values.shape[0], self.k, self.device)
            state.maxima_sum += values.masked_fill(~valid[None, :], 0.0).sum(1, dtype=torch.float64)
            state.count += int(valid.shape[0])  # corrected for unreadable images in ``result``
            state.merge(values, images[None, :].expand_as(values), rows, cols)
        self._staged = {}
        self._staged_images.clear()
        self._staged_valid.clear()

    def result(self, unreadable: list[int]) -> SweepResult:
        self._merge_staged()
        layers = {}
        for name in self.layer_names:
            state = self.state[name].to("cpu")
            state.count -= len(unreadable)
            layers[name] = state
        count = next(iter(layers.values())).count if layers else 0
        return SweepResult(layers=layers, image_count=count, unreadable=sorted(unreadable))


def spatial_argmax(output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per image and channel: the maximum over all positions, and its row and column (N, C).

    Ties go to the first position in row-major order. The whole map is read once, by a max
    over each row; the max over rows and the arg-max within the winning row then touch 1/W and
    1/H of the data. That costs about what a plain max costs, where ``torch.max(dim)`` over the
    flattened map costs 1.5× (GPU) to 10× (CPU) more.
    """
    batch, channels, _, width = output.shape
    if output.is_contiguous(memory_format=torch.channels_last) and not output.is_contiguous():
        nhwc = output.permute(0, 2, 3, 1)  # a view, contiguous in memory
        values, rows = nhwc.amax(2).max(1)
        winning_rows = nhwc.gather(1, rows[:, None, None, :].expand(batch, 1, width, channels))
        cols = winning_rows[:, 0].argmax(1)
    else:
        values, rows = output.amax(3).max(2)
        winning_rows = output.gather(2, rows[:, :, None, None].expand(batch, channels, 1, width))
        cols = winning_rows[:, :, 0].argmax(2)
    return values, rows, cols


MAX_LOADER_WORKERS = 32


def loader_workers(device: torch.device) -> int:
    """Image-loading processes for a sweep when the user names no number: one per usable core.

    On a GPU decoding is usually the bound (one core decodes about 300 photos of 500×375 a
    second), so every core but the one feeding the GPU decodes. On a CPU the forward needs the
    cores, but a loader that is ahead of it waits on its queue rather than spinning, so spare
    loaders cost nothing, and camera photos (65 ms each to decode) need them.
    """
    cores = usable_cores()
    return min(cores - 1 if device.type == "cuda" and cores > 2 else cores, MAX_LOADER_WORKERS)


def loader_start_method(device: torch.device, workers: int) -> BaseContext | None:
    """How image-loading processes start (None: the default, forking).

    Forking a process that has initialised CUDA is unsafe, so on a GPU they come from a
    forkserver (the dataset is pickled to them). The forkserver imports the loader's module, and
    with it torch, once: each sweep's loaders then start in 0.2 s instead of importing torch
    each (1.6–2.0 s a sweep with two loaders on a 2-core CPU; a worker sweeps many shards).
    """
    if device.type != "cuda" or workers == 0:
        return None
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([ImageTensors.__module__])  # read when the server starts
    return context


def sweep(
    model: nn.Module,
    folder: ImageFolder,
    layers: Sequence[str],
    input_spec: InputSpec,
    k: int = 100,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    policy: ResizePolicy = ResizePolicy.WHOLE,
    indices: range | None = None,
    workers: int | None = None,
    draft: bool = False,
    progress: ProgressCallback | None = None,
    keep: BatchKeeper | None = None,
) -> SweepResult:
    """Stream ``folder`` (or the ``indices`` shard of it) through ``model`` once.

    ``workers`` loader processes decode the images (None: :func:`loader_workers`); ``draft``
    lets JPEGs decode at a reduced DCT scale (:func:`analysis.data.load_pixels`).
    ``keep(pixels, indices)`` is handed each batch's readable images as decoded, uint8
    (N, H, W, 3) on the CPU, so the next stage can use them without decoding again.

    The network runs channels-last on every device (oneDNN's CPU convolutions are 1.2–1.7×
    faster so, as cuDNN's are), and under bf16 autocast on CUDA; reductions and the top-K are
    kept in float32.
    """
    device = torch.device(device)
    cuda = device.type == "cuda"
    workers = loader_workers(device) if workers is None else workers
    dataset = ImageTensors(folder, input_spec.size, policy, indices, input_spec.grey, draft)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        pin_memory=cuda,
        persistent_workers=False,
        multiprocessing_context=loader_start_method(device, workers),
    )
    model = model.to(device).eval().to(memory_format=torch.channels_last)
    unreadable: list[int] = []
    done = 0
    # no_grad rather than inference_mode: the recorder reads tensors' version counters.
    with (
        batch_norms_folded(model, layers, input_spec.probe(device)),
        TopKRecorder(model, layers, k, device) as recorder,
        torch.no_grad(),
    ):
        for images, image_indices, readable in loader:
            unreadable.extend(image_indices[~readable].tolist())
            if keep:
                keep(images[readable], image_indices[readable])
            images = model_pixels(images.to(device, non_blocking=True))
            autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else nullcontext()
            with autocast:
                recorder.forward(
                    input_spec.normalise(images),
                    image_indices.to(device, non_blocking=True),
                    readable.to(device, non_blocking=True),
                )
            done += len(image_indices)
            if progress:
                progress(done, len(dataset))
        return recorder.result(unreadable)


def merge_sweeps(shards: Iterable[SweepResult]) -> SweepResult:
    """Merge shard results exactly; shards must be given in the order of their image indices."""
    shards = list(shards)
    if not shards:
        raise ValueError("nothing to merge")
    merged: dict[str, LayerTopK] = {}
    for name, first in shards[0].layers.items():
        state = LayerTopK.empty(first.channels, first.k)
        for shard in shards:
            part = shard.layers[name]
            state.merge(part.values, part.images, part.rows, part.cols)
            state.maxima_sum += part.maxima_sum
            state.count += part.count
        merged[name] = state
    return SweepResult(
        layers=merged,
        image_count=sum(s.image_count for s in shards),
        unreadable=sorted(i for s in shards for i in s.unreadable),
    )
