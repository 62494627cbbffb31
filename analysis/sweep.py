"""The sweep: one pass over a dataset, keeping every chosen channel's top-K images (SPEC §1).

For each image and channel the sweep records the maximum of the layer output over all positions
and where it is (ties to the first in row-major order), so a neuron's top-K are K distinct images.
The running top-K lives on the device and is merged after every batch.

Ordering is total: a higher value wins and, among equal values, the lower image index. Batches
arrive in index order and are appended after the buffer before a *stable* sort, which realises
exactly that order, so top-K(A ∪ B) = top-K(top-K(A) ∪ top-K(B)) holds bit for bit and sharded
sweeps merge to the unsharded result, ties included (post-ReLU zeros tie a lot).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader

from analysis.data import ImageFolder, ImageTensors, ResizePolicy
from analysis.hooks import forward_until, layer_hooks
from analysis.models import InputSpec

ProgressCallback = Callable[[int, int], None]


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


class TopKRecorder:
    """Hooks on the chosen layers that fold every batch into each layer's running top-K.

    Use as a context manager around forwards of batches whose global image indices are given
    with :meth:`next_batch`; hooks are removed on exit.
    """

    def __init__(
        self, model: nn.Module, layers: Sequence[str], k: int, device: torch.device | str
    ) -> None:
        self.model = model
        self.layer_names = list(layers)
        self.k = k
        self.device = torch.device(device)
        self.state: dict[str, LayerTopK] = {}
        self._images: torch.Tensor | None = None
        self._valid: torch.Tensor | None = None
        self._hooks = layer_hooks(model, self.layer_names, self._record, stop_early=True)

    def __enter__(self) -> TopKRecorder:
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._hooks.__exit__(*exc)

    def forward(self, batch: torch.Tensor, images: torch.Tensor, valid: torch.Tensor) -> None:
        """Run ``batch`` (already normalised) and fold it in; ``images`` are global indices."""
        self._images = images
        self._valid = valid
        forward_until(self.model, batch)
        self._images = self._valid = None

    def _record(self, name: str, output: torch.Tensor) -> None:
        batch, channels, height, width = output.shape
        if output.is_contiguous(memory_format=torch.channels_last) and not output.is_contiguous():
            # (N, H·W, C) is a view of a channels_last tensor: reduce without a copy.
            maxima, where = (
                output.permute(0, 2, 3, 1).reshape(batch, height * width, channels).max(1)
            )
        else:
            maxima, where = output.reshape(batch, channels, height * width).max(2)
        maxima = maxima.float().masked_fill(~self._valid[:, None], float("-inf"))
        state = self.state.get(name)
        if state is None:
            state = self.state[name] = LayerTopK.empty(channels, self.k, self.device)
        state.maxima_sum += maxima.masked_fill(~self._valid[:, None], 0.0).sum(
            0, dtype=torch.float64
        )
        state.count += batch  # corrected for unreadable images in ``result``
        where = where.int()
        state.merge(
            maxima.t(),
            self._images[None, :].expand(channels, batch),
            (where // width).t(),
            (where % width).t(),
        )

    def result(self, unreadable: list[int]) -> SweepResult:
        layers = {}
        for name in self.layer_names:
            state = self.state[name].to("cpu")
            state.count -= len(unreadable)
            layers[name] = state
        count = next(iter(layers.values())).count if layers else 0
        return SweepResult(layers=layers, image_count=count, unreadable=sorted(unreadable))


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
    workers: int = 2,
    progress: ProgressCallback | None = None,
) -> SweepResult:
    """Stream ``folder`` (or the ``indices`` shard of it) through ``model`` once.

    On CUDA the network runs channels_last under bf16 autocast; reductions and the top-K are
    kept in float32.
    """
    device = torch.device(device)
    dataset = ImageTensors(folder, input_spec.size, policy, indices)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
    )
    cuda = device.type == "cuda"
    model = model.to(device).eval()
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    unreadable: list[int] = []
    done = 0
    with TopKRecorder(model, layers, k, device) as recorder, torch.inference_mode():
        for images, image_indices, readable in loader:
            unreadable.extend(image_indices[~readable].tolist())
            images = images.to(device, non_blocking=True)
            if cuda:
                images = images.contiguous(memory_format=torch.channels_last)
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
