"""The optimisation loop of activation maximisation (docs/algorithms.md §7).

Per step: the parameterisation renders the batch (fp32), each image gets its own random warp to
the network's input size, the network runs only as far as the deepest layer the objective reads
(under bf16 autocast where that is faster: CUDA, CPUs with native bf16), and Adam follows the
gradient of the summed per-image scores. The model's weights are frozen for the duration, so
back-propagation computes input gradients only, and every change to the model (training flag,
``requires_grad``, hooks) is undone on the way out.

For the first steps, ReLUs let through gradients that would lift a dead unit (Lucid's "redirected
ReLU"): starting from a grey image, a neuron that is below zero everywhere would otherwise never
receive any gradient at all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from analysis.exported import input_constraints
from analysis.featureviz.objectives import IMAGE, Objective
from analysis.featureviz.param import ImageParam
from analysis.featureviz.targets import OUTPUT
from analysis.featureviz.transform import RobustnessTransform, resize
from analysis.hooks import forward_until, layer_hooks
from analysis.models import InputSpec

ProgressCallback = Callable[[int, int], None]
REDIRECT_STEPS = 16
STANDARD_TRANSFORM = RobustnessTransform()


@dataclass
class RenderResult:
    """Finished images (N, 3, H, W) in [0, 1] on the CPU and the objective's score of each,
    measured on the image itself (no transform) at the network's input size."""

    images: torch.Tensor
    scores: torch.Tensor
    steps: int


@contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """The model in eval mode with gradients off for its weights; restored exactly afterwards."""
    training = {module: module.training for module in model.modules()}
    requires_grad = {parameter: parameter.requires_grad for parameter in model.parameters()}
    try:
        model.eval()
        for parameter in requires_grad:
            parameter.requires_grad_(False)
        yield model
    finally:
        for module, mode in training.items():
            module.training = mode
        for parameter, flag in requires_grad.items():
            parameter.requires_grad_(flag)


class _RedirectedReLU(torch.autograd.Function):
    """ReLU whose backward also passes gradients that would raise a negative input.

    Per image: where the ordinary ReLU gradient is zero everywhere (the unit is dead for that
    image), the redirected gradient is used instead.
    """

    @staticmethod
    def forward(ctx: Any, inputs: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(inputs)
        return inputs.clamp(min=0)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> torch.Tensor:
        (inputs,) = ctx.saved_tensors
        negative = inputs < 0
        ordinary = grad_output.masked_fill(negative, 0.0)
        # The loss is minimised: a negative gradient pushes the input up, out of the dead zone.
        redirected = grad_output.masked_fill(negative & (grad_output > 0), 0.0)
        dims = tuple(range(1, inputs.dim()))
        dead = (ordinary.abs().sum(dim=dims, keepdim=True) == 0) if dims else ordinary == 0
        return torch.where(dead, redirected, ordinary)


_RELU_FUNCTIONS = {
    torch.nn.functional.relu,
    torch.relu,
    torch.relu_,
    torch.Tensor.relu,
    torch.Tensor.relu_,
}


class redirected_relus(TorchFunctionMode):  # noqa: N801 - used like a function: with ...():
    """Inside this mode every ReLU call (module, functional or method, in-place or not) runs
    :class:`_RedirectedReLU` instead, out of place. The model itself is not touched."""

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        first = args[0] if args else None
        if func in _RELU_FUNCTIONS and isinstance(first, torch.Tensor) and first.requires_grad:
            return _RedirectedReLU.apply(first)
        return func(*args, **(kwargs or {}))


def record(
    model: nn.Module,
    inputs: torch.Tensor,
    layers: frozenset[str],
    autocast: bool,
) -> dict[str, torch.Tensor]:
    """Forward ``inputs`` (already normalised) and return the outputs of ``layers``.

    Without :data:`OUTPUT` among them, the forward stops after the last named module. Outputs are
    copied in the hook, before an in-place op further on can overwrite them.
    """
    names = sorted(layer for layer in layers if layer not in (IMAGE, OUTPUT))
    recorded: dict[str, torch.Tensor] = {}

    def keep(name: str, output: torch.Tensor) -> None:
        recorded[name] = output.clone()

    cast = torch.autocast(inputs.device.type, dtype=torch.bfloat16) if autocast else nullcontext()
    with layer_hooks(model, names, keep, stop_early=OUTPUT not in layers), cast:
        if OUTPUT in layers:
            recorded[OUTPUT] = model(inputs)
        else:
            forward_until(model, inputs)
    return recorded


def bf16_pays(device: torch.device) -> bool:
    """Whether bf16 autocast speeds the network up here: on CUDA, and on CPUs with native bf16
    (AVX512-BF16 or AMX, where it halves a step's time); elsewhere it is emulated, and slower."""
    if device.type == "cuda":
        return True
    if device.type != "cpu":
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def evaluate(
    model: nn.Module,
    objective: Objective,
    images: torch.Tensor,
    input_spec: InputSpec,
    autocast: bool = False,
    view_size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """The objective's per-image score of ``images`` shown untransformed at the input size
    (in fp32 unless ``autocast``: reported activations should not carry bf16 rounding)."""
    size = view_size or input_spec.size
    with frozen(model), torch.no_grad():
        shown = input_spec.normalise(resize(images, size))
        activations = record(model, shown, objective.layers, autocast)
        activations[IMAGE] = images
        return objective(activations).float().cpu()


def render(
    model: nn.Module,
    objective: Objective,
    param: ImageParam,
    input_spec: InputSpec,
    steps: int = 512,
    lr: float = 0.05,
    transform: RobustnessTransform | None = STANDARD_TRANSFORM,
    redirect_steps: int = REDIRECT_STEPS,
    seed: int = 0,
    progress: ProgressCallback | None = None,
    view_size: tuple[int, int] | None = None,
    autocast: bool | None = None,
) -> RenderResult:
    """Maximise ``objective`` over the images of ``param`` for ``steps`` Adam steps.

    The network sees the images at ``view_size`` (default: the model's input size).
    The model must already be on the parameterisation's device. ``transform=None`` optimises the
    images without robustness transforms (they are still resized to the view size).
    ``autocast`` runs the network in bf16 (default: where that is faster, see :func:`bf16_pays`);
    the images, the transform and the loss stay fp32 either way.
    """
    device = param.parameters()[0].device
    autocast = bf16_pays(device) if autocast is None else autocast
    generator = torch.Generator().manual_seed(seed)
    size = view_size or input_spec.size
    input_constraints(model).require(*size, f"images of {size[0]}×{size[1]} px to optimise")
    optimiser = torch.optim.Adam(param.parameters(), lr=lr)
    with frozen(model):
        for step in range(steps):
            optimiser.zero_grad(set_to_none=True)
            images = param.images()
            warped = transform(images, size, generator) if transform else resize(images, size)
            # Convolutions run faster on channels-last input, on GPUs and CPUs alike.
            warped = warped.contiguous(memory_format=torch.channels_last)
            redirect = redirected_relus() if step < redirect_steps else nullcontext()
            with redirect:
                activations = record(
                    model, input_spec.normalise(warped), objective.layers, autocast
                )
            activations[IMAGE] = images
            loss = -objective(activations).float().sum()
            loss.backward()
            optimiser.step()
            if progress:
                progress(step + 1, steps)
    with torch.no_grad():
        final = param.images().detach()
    scores = evaluate(model, objective, final, input_spec, view_size=size)
    return RenderResult(images=final.float().cpu(), scores=scores, steps=steps)
