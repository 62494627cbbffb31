"""The gradient probe of receptive fields: the reference the trace in
:mod:`analysis.receptive_field` is checked against, and the way tests find fields of hand-built
networks at any input size.

Run the network *linearised* (convolutions with constant positive weights and no bias,
max-pooling as average pooling, activations and normalisations as identity) and back-propagate
from one map position: the input pixels with a non-zero gradient are exactly the pixels that
position can see, whatever the graph (branches, residual sums, concatenations give the union).
The linearisation is a ``TorchFunctionMode``, so it rewrites the operations of any module, eager
or ``torch.export``-ed, without copying the model. Channels are collapsed to one (a convolution
averages its input channels) because with constant weights every channel is the same; models
whose ops depend on the channel count are probed again with full channels.

The probe measures the centre unit and its diagonal neighbour on an input large enough that the
centre unit's window lies strictly inside it.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from analysis.hooks import forward_until, layer_hooks, model_device
from analysis.receptive_field import ReceptiveField

_MAX_PROBE_SIZE = 4096


class ReceptiveFieldError(ValueError):
    """A layer whose receptive field cannot be probed; the message names the layer and why."""


def _name(func: Any) -> str:
    return getattr(func, "__name__", str(func)).split(".")[0]


_IDENTITY = {
    "relu",
    "relu_",
    "relu6",
    "gelu",
    "silu",
    "silu_",
    "hardswish",
    "hardswish_",
    "mish",
    "leaky_relu",
    "leaky_relu_",
    "prelu",
    "rrelu",
    "softplus",
    "elu",
    "elu_",
    "selu",
    "celu",
    "tanh",
    "sigmoid",
    "hardsigmoid",
    "hardtanh",
    "hardtanh_",
    "batch_norm",
    "layer_norm",
    "group_norm",
    "instance_norm",
    "rms_norm",
    "dropout",
    "dropout_",
    "dropout2d",
    "feature_dropout",
    "_native_batch_norm_legit_no_training",
}


class _Linearised(TorchFunctionMode):
    """Rewrite each operation of a forward into its linear, non-negative counterpart."""

    def __init__(self, collapse_channels: bool, dtype: torch.dtype = torch.float64) -> None:
        super().__init__()
        self.collapse_channels = collapse_channels
        self.dtype = dtype

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        name = _name(func)
        if name in _IDENTITY:
            result = args[0] if args else kwargs["input"]
            # batch_norm's no-training aten form returns (out, mean, invstd).
            return (result, None, None) if name.startswith("_native") else result
        if name in {"conv2d", "convolution"}:
            return self._conv(*args, **kwargs)
        if name in {"max_pool2d", "max_pool2d_with_indices"}:
            return self._avg_pool(name, *args, **kwargs)
        if name == "adaptive_max_pool2d":
            return F.adaptive_avg_pool2d(args[0], args[1]), None
        if name == "linear":
            return _linear(*args, **kwargs)
        if name in _PRODUCTS and len(args) == 2 and _is_gate(*args):
            return _gated(*args)
        return func(*_cast(args, self.dtype), **_cast(kwargs, self.dtype))

    def _conv(
        self,
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None = None,
        stride: Any = 1,
        padding: Any = 0,
        dilation: Any = 1,
        groups: int = 1,
        *rest: Any,
    ) -> torch.Tensor:
        if rest:  # aten.convolution: (..., transposed, output_padding, groups)
            raise NotImplementedError("transposed convolutions are not probed")
        kh, kw = weight.shape[-2:]
        if self.collapse_channels:
            x = x.mean(dim=1, keepdim=True)
            kernel = torch.full((1, 1, kh, kw), 1.0 / (kh * kw), dtype=x.dtype, device=x.device)
            return F.conv2d(x, kernel, None, stride, padding, dilation, 1)
        per_group = weight.shape[1]
        kernel = torch.full(
            tuple(weight.shape), 1.0 / (per_group * kh * kw), dtype=x.dtype, device=x.device
        )
        return F.conv2d(x, kernel, None, stride, padding, dilation, groups)

    @staticmethod
    def _avg_pool(
        name: str,
        x: torch.Tensor,
        kernel_size: Any,
        stride: Any = None,
        padding: Any = 0,
        dilation: Any = 1,
        ceil_mode: bool = False,
        return_indices: bool = False,
    ) -> Any:
        if dilation not in (1, (1, 1), [1, 1]):
            raise NotImplementedError("dilated max-pooling is not probed")
        stride = stride if stride else kernel_size
        pooled = F.avg_pool2d(x, kernel_size, stride, padding, ceil_mode, count_include_pad=False)
        return (pooled, None) if name.endswith("indices") or return_indices else pooled


_PRODUCTS = {"mul", "__mul__", "__rmul__", "mul_", "__imul__"}


def _cast(value: Any, dtype: torch.dtype) -> Any:
    """Floating tensors (parameters met along the way: PReLU slopes, layer scales, norms'
    weights) in the probe's dtype, so float32 weights never meet the float64 probe."""
    if isinstance(value, torch.Tensor):
        return value.to(dtype) if value.is_floating_point() and value.dtype != dtype else value
    if isinstance(value, (list, tuple)):
        return type(value)(_cast(item, dtype) for item in value)
    if isinstance(value, dict):
        return {key: _cast(item, dtype) for key, item in value.items()}
    return value


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> Any:
    """A linear layer linearised: every output feature is the mean of the input features (on a
    channels-last map, as in ConvNeXt, that mixes channels and keeps positions apart)."""
    return x.mean(-1, keepdim=True).expand(*x.shape[:-1], weight.shape[0])


def _is_gate(left: Any, right: Any) -> bool:
    """A squeeze-and-excitation product: a map times a per-channel scale (N, C, 1, 1)."""
    if not (isinstance(left, torch.Tensor) and isinstance(right, torch.Tensor)):
        return False
    if left.dim() != 4 or right.dim() != 4:
        return False
    spatial = (left.shape[-2] * left.shape[-1], right.shape[-2] * right.shape[-1])
    return min(spatial) == 1 and max(spatial) > 1


def _gated(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """The map alone, its gate held at 1: a gate scales channels, it does not widen the receptive
    field (the window follows the map, not the gate, docs/algorithms.md §2). Held at its linearised
    value instead, each gate would be the map's own mean and square the probe's magnitude,
    overflowing after a few blocks."""
    gate, feature = (left, right) if left.shape[-2:] == (1, 1) else (right, left)
    return feature * torch.ones_like(gate, dtype=feature.dtype)


def _probe(
    model: nn.Module, layers: list[str], size: tuple[int, int], channels: int, collapse: bool
) -> dict[str, tuple[tuple[int, int, int, int], tuple[int, int, int, int], tuple[int, int]]]:
    """For each layer: the windows of its centre unit and diagonal neighbour, and its map size."""
    outputs: dict[str, torch.Tensor] = {}

    def keep(name: str, output: torch.Tensor) -> None:
        outputs.setdefault(name, output)

    image = torch.ones(
        2, channels, *size, dtype=torch.float64, device=model_device(model), requires_grad=True
    )
    with (
        layer_hooks(model, layers, keep, stop_early=True),
        _Linearised(collapse),
        torch.enable_grad(),
    ):
        forward_until(model, image)
    found = {}
    for name in layers:
        out = outputs[name]
        height, width = out.shape[-2:]
        ci, cj = (height - 1) // 2, (width - 1) // 2
        ni, nj = min(ci + 1, height - 1), min(cj + 1, width - 1)
        seed = torch.zeros_like(out)
        seed[0, :, ci, cj] = 1.0
        seed[1, :, ni, nj] = 1.0
        (grad,) = torch.autograd.grad(out, image, seed, retain_graph=True)
        boxes = []
        for sample in range(2):
            support = grad[sample].abs().sum(0) > 0
            rows = torch.nonzero(support.any(1)).flatten()
            cols = torch.nonzero(support.any(0)).flatten()
            if not len(rows):
                raise ReceptiveFieldError(
                    f"layer {name!r}: no input pixel reaches it in the probe (an operation "
                    "the receptive-field probe does not know cuts the gradient)"
                )
            boxes.append((int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1))
        found[name] = (boxes[0], boxes[1], (height, width))
    return found


def receptive_fields(
    model: nn.Module, layers: list[str], input_size: int, channels: int = 3
) -> dict[str, ReceptiveField]:
    """Receptive-field geometry of each named layer, exact for any feed-forward graph; the
    model reads ``channels`` input channels."""
    results: dict[str, ReceptiveField] = {}
    pending = list(layers)
    size = input_size
    while pending:
        try:
            probed = _probe(model, pending, (size, size), channels, collapse=True)
        except (RuntimeError, NotImplementedError, ValueError):
            probed = _probe(model, pending, (size, size), channels, collapse=False)
        still = []
        for name in pending:
            centre, neighbour, (height, width) = probed[name]
            r0, r1, c0, c1 = centre
            if height == width == 1 and size >= 4 * input_size:
                # Still a single unit at four times the input: a global pool sees everything.
                results[name] = ReceptiveField((input_size,) * 2, (input_size,) * 2, (0, 0))
                continue
            interior = r0 > 0 and c0 > 0 and r1 < size and c1 < size
            if not interior or height < 2 or width < 2:
                still.append(name)
                continue
            ci, cj = (height - 1) // 2, (width - 1) // 2
            stride = (neighbour[0] - r0, neighbour[2] - c0)
            results[name] = ReceptiveField(
                size=(r1 - r0, c1 - c0),
                stride=stride,
                offset=(r0 - ci * stride[0], c0 - cj * stride[1]),
            )
        pending = still
        if pending and size * 2 > _MAX_PROBE_SIZE:
            raise ValueError(f"receptive field of {pending[0]} exceeds a {size}px probe")
        size *= 2
    return results
