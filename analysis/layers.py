"""List a network's layers: every module with a 4-D output, in execution order.

For each convolution we also name the activation module that follows it: neurons are read after
the non-linearity by default (docs/algorithms.md §1, the original toolkit's Keras semantics) while
the in-silico physiology reads hue responses before it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import torch
from torch import nn

from analysis.exported import class_name
from analysis.hooks import ForwardError, execution_order, model_device
from analysis.models import InputSpec
from analysis.receptive_field import ReceptiveField, traced_receptive_fields

_ACTIVATIONS = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Hardswish,
    nn.Tanh,
    nn.PReLU,
)
_ACTIVATION_NAMES = {kind.__name__.lower() for kind in _ACTIVATIONS}
_BARRIERS = (nn.Conv2d, nn.Linear, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)
_BARRIER_NAMES = {kind.__name__ for kind in _BARRIERS}  # an exported program's submodules
# A module of a network's own (timm's GammaAct, a normaliser-free net's scaled GELU) counts as
# an activation when it is a leaf, keeps its input's shape (checked where it runs) and its class
# says so by its name's ending.
_ACTIVATION_ENDINGS = (
    "act",
    "activation",
    "relu",
    "gelu",
    "gelutanh",
    "silu",
    "swish",
    "mish",
    "sigmoid",
)


def is_activation(module: nn.Module) -> bool:
    """A known element-wise activation, or a leaf module of the network's own whose class name
    ends like one (``GammaAct``, ``ScaledGELU``, ``QuickSwish``)."""
    if isinstance(module, _ACTIVATIONS):
        return True
    name = class_name(module).lower()
    return not list(module.children()) and (
        name in _ACTIVATION_NAMES or name.endswith(_ACTIVATION_ENDINGS)
    )


def is_convolution(module: nn.Module) -> bool:
    """A 2-D convolution, subclasses included (weight-standardised ones, timm's ``Conv2dSame``),
    or an exported program's submodule traced from one."""
    if isinstance(module, nn.Conv2d):
        return True
    name = class_name(module).lower()
    return not list(module.children()) and name.endswith(("conv2d", "conv2dsame"))


class LayerListingError(ValueError):
    """A model whose layers cannot be listed; the message says why in one line."""


@dataclass(frozen=True)
class LayerInfo:
    """One layer as the sweep sees it."""

    name: str
    type: str
    channels: int
    height: int
    width: int
    calls: int
    activation: str | None
    receptive_field: ReceptiveField
    role: str = ""  # "convolution", "activation" (:func:`is_activation`) or ""

    @property
    def hookable(self) -> bool:
        """A module that runs more than once per forward has no single output to record."""
        return self.calls == 1

    def as_json(self) -> dict[str, object]:
        """The layer as plain data (``neuronscope layers --json``, a registered model's list)."""
        return {
            "name": self.name,
            "type": self.type,
            "channels": self.channels,
            "map_size": [self.height, self.width],
            "rf_size": list(self.receptive_field.size),
            "rf_stride": list(self.receptive_field.stride),
            "rf_offset": list(self.receptive_field.offset),
            "activation": self.activation,
            "calls": self.calls,
        }


def list_layers(model: nn.Module, input_spec: InputSpec) -> list[LayerInfo]:
    """Every submodule with a 4-D tensor output, with its map size and receptive field."""
    probe = input_spec.blank(model_device(model))
    try:
        order = execution_order(model, probe)
    except ForwardError as error:
        raise LayerListingError(
            f"the model's forward fails on a {input_spec.describe()} image {error}"
        ) from None
    calls = Counter(name for name, _, _ in order)
    first: dict[str, tuple[nn.Module, torch.Tensor]] = {}
    for name, module, output in order:
        if isinstance(output, torch.Tensor) and output.dim() == 4:
            first.setdefault(name, (module, output))
    activation_after = _activations_after_convolutions(order)
    fields = layer_receptive_fields(model, list(first), input_spec)
    return [
        LayerInfo(
            name=name,
            type=class_name(module),
            channels=int(output.shape[1]),
            height=int(output.shape[2]),
            width=int(output.shape[3]),
            calls=calls[name],
            activation=activation_after.get(name),
            receptive_field=fields[name],
            role=_role(module, output),
        )
        for name, (module, output) in first.items()
        if name in fields  # channels-last tensors (inside ConvNeXt blocks) are no channel maps
    ]


def _role(module: nn.Module, output: torch.Tensor) -> str:
    if is_convolution(module):
        return "convolution"
    return "activation" if is_activation(module) else ""


def layer_receptive_fields(
    model: nn.Module, layers: list[str], input_spec: InputSpec
) -> dict[str, ReceptiveField]:
    """Fields composed op by op in one forward. Layers the trace cannot follow are left out:
    token maps after attention, window partitions, channels-last tensors, upsampling — outputs
    without a local window per channel and position (see :func:`unmapped_layers`)."""
    traced = traced_receptive_fields(model, layers, input_spec)
    return {name: field for name, field in traced.items() if field is not None}


def unmapped_layers(model: nn.Module, input_spec: InputSpec, listed: list[LayerInfo]) -> list[str]:
    """Modules with a 4-D output that :func:`list_layers` left out (they are no channel maps
    with receptive windows), in execution order."""
    probe = input_spec.blank(model_device(model))
    known = {layer.name for layer in listed}
    found: list[str] = []
    for name, _module, output in execution_order(model, probe):
        four_d = isinstance(output, torch.Tensor) and output.dim() == 4
        if four_d and name not in known and name not in found:
            found.append(name)
    return found


def _activations_after_convolutions(order: list) -> dict[str, str]:
    """Map each convolution to the first activation that runs after it on a same-shaped map.

    Only leaf modules are considered, and the search stops at the next convolution, linear or
    pooling layer, so a block's closing ReLU is not credited to an unrelated branch.
    """
    leaves = [(n, m, o) for n, m, o in order if not list(m.children())]
    found: dict[str, str] = {}
    for index, (name, module, output) in enumerate(leaves):
        if not is_convolution(module):
            continue
        for later_name, later, later_output in leaves[index + 1 :]:
            if is_activation(later):
                if getattr(later_output, "shape", None) == output.shape:
                    found[name] = later_name
                break
            if isinstance(later, _BARRIERS) or class_name(later) in _BARRIER_NAMES:
                break
    return found


def default_layers(layers: list[LayerInfo]) -> list[str]:
    """Each convolution's post-activation output, one per block where the network says so.

    A convolution followed by its own activation module is read after that activation. Where
    the activation is not a module of its own, or one module is reused (torchvision's ResNet
    blocks call one ReLU twice, GoogLeNet and Inception apply ``F.relu`` inside a conv
    wrapper), the nearest enclosing module with a map of the same size is read instead: the
    residual block's output, the wrapper's post-ReLU output. Containers of a convolution and
    its norm alone (a ResNet downsample, a linear projection) are passed over on the way up,
    as they apply no activation. Convolutions on a single position that sees the whole image
    (squeeze-and-excitation gates) are no spatial neurons and are left out. Only a
    convolution with none of these is read itself.
    """
    by_name = {layer.name: layer for layer in layers}
    chosen: list[str] = []
    for layer in layers:
        if layer.role != "convolution" or _is_gate(layer):
            continue
        activation = by_name.get(layer.activation or "")
        if activation and activation.hookable:
            target = activation.name
        else:
            target = _enclosing(layer, by_name) or layer.name
        if target not in chosen:
            chosen.append(target)
    order = {layer.name: index for index, layer in enumerate(layers)}
    return sorted(chosen, key=order.__getitem__)


# Wrappers of a convolution and its norm that apply an activation only when they hold one
# (torchvision's, timm's): without one they are passed over on the way up.
_PLAIN_CONTAINERS = frozenset({"Sequential", "Conv2dNormActivation", "ConvNormAct", "ConvBnAct"})


def _enclosing(layer: LayerInfo, by_name: dict[str, LayerInfo]) -> str | None:
    """The nearest recorded ancestor of ``layer`` with a map of the same size that may apply
    an activation (see :func:`default_layers`)."""
    parts = layer.name.split(".")
    for depth in range(len(parts) - 1, 0, -1):
        parent = by_name.get(".".join(parts[:depth]))
        if parent is None:
            continue
        if (parent.height, parent.width) != (layer.height, layer.width) or not parent.hookable:
            return None
        prefix = parent.name + "."
        activates = any(
            name.startswith(prefix) and inner.role == "activation"
            for name, inner in by_name.items()
        )
        if parent.type not in _PLAIN_CONTAINERS or activates:
            return parent.name
    return None


def _is_gate(layer: LayerInfo) -> bool:
    """A convolution after a global pooling: one position, a window of the whole image."""
    field = layer.receptive_field
    whole = field.size == field.stride and field.offset == (0, 0)
    return whole and (layer.height, layer.width) == (1, 1)
