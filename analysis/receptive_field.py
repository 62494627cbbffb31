"""Receptive fields: the unclipped input window of every map position of every layer
(docs/algorithms.md §2), composed op by op while the network runs once.

Every tensor with a spatial map carries the window of its map position (0, 0) and its stride in
input pixels, per axis. A convolution or pooling with kernel k (dilated: d·(k − 1) + 1), stride s
and padding p maps (size, stride, offset) to (size + (k − 1)·stride, s·stride, offset −
p·stride); an element-wise op, a sum or a concatenation of same-sized maps takes the union of
their windows (a residual block sees both branches); a map multiplied by a per-channel gate of
size 1 × 1 keeps its own window (squeeze-and-excitation scales channels, it does not widen the
field); permutes and channels-last layouts are followed by tracking which dims are spatial.

One ordinary forward of one image at the model's input size gives every layer's field; a gradient
probe (back-propagating through a linearised copy of the network, as the tests do to check this
trace) needs inputs larger than the field itself: for ConvNeXt and DenseNet, whose late fields
exceed 1,000 px, that is the difference between a fraction of a second and minutes. A layer whose
output went through an op the trace does not know gets no field (it is not listed); one after a
pooling to a single position sees the whole image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from analysis.hooks import forward_until, layer_hooks, model_device
from analysis.models import InputSpec


@dataclass(frozen=True)
class ReceptiveField:
    """Geometry of one layer's receptive fields, per axis as (rows, cols)."""

    size: tuple[int, int]
    stride: tuple[int, int]
    offset: tuple[int, int]

    def window(self, row: int, col: int) -> tuple[int, int, int, int]:
        """Unclipped input window ``(r0, r1, c0, c1)`` of map position (row, col).

        It may extend past the image border; patches fill that part with grey.
        """
        r0 = self.offset[0] + row * self.stride[0]
        c0 = self.offset[1] + col * self.stride[1]
        return r0, r0 + self.size[0], c0, c0 + self.size[1]

    def reach(self, image: tuple[int, int], grid: tuple[int, int]) -> tuple[int, int, int, int]:
        """The box ``(r0, r1, c0, c1)``, in window coordinates, that holds every pixel of an
        ``image`` (rows, cols) seen from any position of a ``grid`` (rows, cols) map.

        A Neuron Feature is exactly grey outside it, whatever the patches, so only this box
        is accumulated and stored. For a late layer whose window is many times the image it is
        a small part of the window (DenseNet-121's last block at 224 px: 416 of 2,071 px a side).
        """
        rows = self._reach_axis(0, image[0], grid[0])
        cols = self._reach_axis(1, image[1], grid[1])
        return (*rows, *cols)

    def _reach_axis(self, axis: int, extent: int, positions: int) -> tuple[int, int]:
        """Along one axis: from where the last position's window meets the image's first pixel
        to where the first position's window meets its last; the whole window if none does."""
        offset, stride, size = self.offset[axis], self.stride[axis], self.size[axis]
        start = min(size, max(0, -(offset + (positions - 1) * stride)))
        stop = max(0, min(size, extent - offset))
        return (start, stop) if start < stop else (0, size)


@dataclass(frozen=True)
class Geometry:
    """The window of map position (0, 0) and the stride between positions, per axis; ``dims``
    are the tensor's height and width dimensions."""

    size: tuple[int, int]
    stride: tuple[int, int]
    offset: tuple[int, int]
    dims: tuple[int, int]
    whole: bool = False  # after a pooling to one position: every unit sees the whole image

    def through(self, kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int]):
        return Geometry(
            size=tuple(self.size[a] + (kernel[a] - 1) * self.stride[a] for a in (0, 1)),
            stride=tuple(self.stride[a] * stride[a] for a in (0, 1)),
            offset=tuple(self.offset[a] - padding[a] * self.stride[a] for a in (0, 1)),
            dims=(2, 3),
            whole=self.whole,
        )

    def union(self, other: Geometry, dims: tuple[int, int]) -> Geometry | None:
        if self.stride != other.stride:
            return None
        start = tuple(min(self.offset[a], other.offset[a]) for a in (0, 1))
        end = tuple(
            max(self.offset[a] + self.size[a], other.offset[a] + other.size[a]) for a in (0, 1)
        )
        return Geometry(
            size=(end[0] - start[0], end[1] - start[1]),
            stride=self.stride,
            offset=start,
            dims=dims,
            whole=self.whole or other.whole,
        )


_CONVOLUTIONS = {"conv2d", "convolution", "_convolution"}
_POOLS = {"max_pool2d", "max_pool2d_with_indices", "avg_pool2d", "lp_pool2d"}
_ADAPTIVE = {"adaptive_avg_pool2d", "adaptive_max_pool2d", "adaptive_max_pool2d_with_indices"}
_LAYOUT = {"permute", "transpose", "movedim", "swapaxes", "swapdims"}


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    values = tuple(value)
    return (values[0], values[0]) if len(values) == 1 else (values[0], values[1])


def _argument(args: Any, kwargs: dict, index: int, name: str, default: Any) -> Any:
    if len(args) > index:
        return args[index]
    return kwargs.get(name, default)


class _Tracer(TorchFunctionMode):
    """Runs the forward unchanged, attaching a :class:`Geometry` to every spatial tensor.

    A tensor computed from the image whose map the trace lost (tokens flattened for attention,
    an upsampling) is *lost*, and so is everything computed from it; where a lost tensor of the
    output's whole shape joins a map (attention added back to its residual), the result is lost
    too: its units see more than any window. A lost tensor smaller than the output (a
    squeeze-and-excitation gate, broadcast over the map) does not count."""

    def __init__(self, image: torch.Tensor) -> None:
        super().__init__()
        self.geometry: dict[int, Geometry] = {id(image): Geometry((1, 1), (1, 1), (0, 0), (2, 3))}
        self.lost: set[int] = set()
        self.alive: list[torch.Tensor] = [image]  # keeps ids from being reused mid-forward

    def of(self, tensor: Any) -> Geometry | None:
        return self.geometry.get(id(tensor)) if isinstance(tensor, torch.Tensor) else None

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        parts = result if isinstance(result, (tuple, list)) else (result,)
        name = getattr(func, "__name__", "").split(".")[0]  # aten overloads: conv2d.default
        inputs = _tensors(args, kwargs)
        traced = any(id(t) in self.geometry for t in inputs)
        lost = [t for t in inputs if id(t) in self.lost]
        for part in parts:  # chunk, split, unbind: every piece is a map
            if isinstance(part, torch.Tensor):
                poisoned = (lost and not traced) or any(t.shape == part.shape for t in lost)
                found = None if poisoned else self._geometry(name, args, kwargs, part)
                if found is not None:
                    self.geometry[id(part)] = found
                    self.alive.append(part)
                elif traced or lost:
                    self.lost.add(id(part))
                    self.alive.append(part)
            if name in _POOLS or name in _ADAPTIVE:
                break  # (output, indices): the indices are no map
        return result

    def _geometry(
        self, name: str, args: Any, kwargs: dict, output: torch.Tensor
    ) -> Geometry | None:
        first = args[0] if args else None
        source = self.of(first)
        if name in _CONVOLUTIONS and source is not None:
            if _argument(args, kwargs, 6, "transposed", False) is True and name != "conv2d":
                return None
            weight = args[1]
            dilation = _pair(_argument(args, kwargs, 5, "dilation", 1))
            kernel = tuple(dilation[a] * (weight.shape[2 + a] - 1) + 1 for a in (0, 1))
            padding = _argument(args, kwargs, 4, "padding", 0)
            if padding == "valid":
                padding = 0
            elif padding == "same":
                padding = tuple((k - 1) // 2 for k in kernel)
            stride = _pair(_argument(args, kwargs, 3, "stride", 1))
            return source.through(kernel, stride, _pair(padding))
        if name in _POOLS and source is not None:
            kernel = _pair(_argument(args, kwargs, 1, "kernel_size", 1))
            stride = _argument(args, kwargs, 2, "stride", None) or kernel
            padding = _pair(_argument(args, kwargs, 3, "padding", 0))
            dilation = 1 if name == "avg_pool2d" else _argument(args, kwargs, 4, "dilation", 1)
            dilation = _pair(dilation)
            kernel = tuple(dilation[a] * (kernel[a] - 1) + 1 for a in (0, 1))
            return source.through(kernel, _pair(stride), padding)
        if name in _ADAPTIVE and source is not None:
            return self._adaptive(source, first, output)
        if name in _LAYOUT and source is not None:
            return self._relayout(name, source, first, args, kwargs)
        return self._elementwise(args, kwargs, output)

    @staticmethod
    def _adaptive(source: Geometry, first: torch.Tensor, output: torch.Tensor) -> Geometry | None:
        """Identity, a global pool, or an even pooling; other bins overlap (left to the probe)."""
        size_in = (first.shape[-2], first.shape[-1])
        size_out = (output.shape[-2], output.shape[-1])
        if size_in == size_out:
            return source
        if size_out == (1, 1):
            return Geometry(source.size, source.stride, source.offset, (2, 3), whole=True)
        if all(size_in[a] % size_out[a] == 0 for a in (0, 1)):
            step = (size_in[0] // size_out[0], size_in[1] // size_out[1])
            return source.through(step, step, (0, 0))
        return None

    @staticmethod
    def _relayout(
        name: str, source: Geometry, first: torch.Tensor, args: Any, kwargs: dict
    ) -> Geometry | None:
        rank = first.dim()
        if name == "permute":
            order = args[1:] if len(args) > 2 else args[1] if len(args) > 1 else kwargs["dims"]
            order = [d % rank for d in order]
            dims = (order.index(source.dims[0]), order.index(source.dims[1]))
        else:
            a, b = (d % rank for d in (args[1], args[2]))
            swap = {a: b, b: a}
            dims = (
                swap.get(source.dims[0], source.dims[0]),
                swap.get(source.dims[1], source.dims[1]),
            )
        return Geometry(source.size, source.stride, source.offset, dims, source.whole)

    def _elementwise(self, args: Any, kwargs: dict, output: torch.Tensor) -> Geometry | None:
        """Any other op: the union of the inputs whose maps have the output's spatial size (a
        1 × 1 gate broadcast over a larger map is not one of them)."""
        found: Geometry | None = None
        for tensor in _tensors(args, kwargs):
            geometry = self.of(tensor)
            if geometry is None:
                continue
            spatial = (tensor.shape[geometry.dims[0]], tensor.shape[geometry.dims[1]])
            dims = _matching_dims(output, spatial, tensor, geometry.dims)
            if dims is None or (spatial == (1, 1) and output.dim() >= 2 and _larger(output, dims)):
                continue
            found = (
                Geometry(geometry.size, geometry.stride, geometry.offset, dims, geometry.whole)
                if found is None
                else found.union(geometry, dims)
            )
            if found is None:
                return None
        return found


def _tensors(args: Any, kwargs: dict) -> list[torch.Tensor]:
    found: list[torch.Tensor] = []
    for value in [*args, *kwargs.values()]:
        if isinstance(value, torch.Tensor):
            found.append(value)
        elif isinstance(value, (list, tuple)):
            found += [item for item in value if isinstance(item, torch.Tensor)]
    return found


def _matching_dims(
    output: torch.Tensor, spatial: tuple[int, int], tensor: torch.Tensor, dims: tuple[int, int]
) -> tuple[int, int] | None:
    """Where the input's spatial dims are in the output: the same dims when the rank is kept,
    the last two when the input's were its last two (a reshape that keeps the map)."""
    same_rank = output.dim() == tensor.dim() and dims[1] < output.dim()
    if same_rank and (output.shape[dims[0]], output.shape[dims[1]]) == spatial:
        return dims
    trailing = dims == (tensor.dim() - 2, tensor.dim() - 1) and output.dim() >= 2
    if trailing and tuple(output.shape[-2:]) == spatial:
        return output.dim() - 2, output.dim() - 1
    return None


def _larger(output: torch.Tensor, dims: tuple[int, int]) -> bool:
    return output.shape[dims[0]] * output.shape[dims[1]] > 1


def traced_receptive_fields(
    model: nn.Module, layers: list[str], input_spec: InputSpec
) -> dict[str, ReceptiveField | None]:
    """Every named layer's field from one forward (None where the trace lost the map).

    A layer whose output holds its map in other dims than (N, C, H, W) — the channels-last
    tensors inside a ConvNeXt block — is left out: it is no channel map to record."""
    image = input_spec.blank(model_device(model))
    outputs: dict[str, torch.Tensor] = {}

    def keep(name: str, output: torch.Tensor) -> None:
        outputs.setdefault(name, output)

    tracer = _Tracer(image)
    with torch.no_grad(), layer_hooks(model, layers, keep, stop_early=True), tracer:
        forward_until(model, image)
    fields: dict[str, ReceptiveField | None] = {}
    for name in layers:
        geometry = tracer.of(outputs.get(name))
        if geometry is not None and geometry.dims != (2, 3):
            continue
        output = outputs.get(name)
        single = output is not None and tuple(output.shape[-2:]) == (1, 1)
        if geometry is None:
            fields[name] = None
        elif geometry.whole or (single and _covers(geometry.size, input_spec.size)):
            fields[name] = ReceptiveField(input_spec.size, input_spec.size, (0, 0))
        else:
            fields[name] = ReceptiveField(geometry.size, geometry.stride, geometry.offset)
    return fields


def _covers(window: tuple[int, int], image: tuple[int, int]) -> bool:
    return window[0] >= image[0] and window[1] >= image[1]
