"""Forward hooks that are always removed, and forwards that stop at the deepest layer needed.

Lucent leaves hooks registered across calls; here every hook lives inside a ``with`` block.
Stopping the forward once the last layer of interest has run saves the rest of the network
(the classifier, or every layer after the one a selectivity index perturbs).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from typing import Any

import torch
from torch import nn

LayerCallback = Callable[[str, torch.Tensor], None]
# (images, padded) while a forward runs a batch padded to a program's minimum (analysis.exported).
_PADDING: ContextVar[tuple[int, int] | None] = ContextVar("padded_batch", default=None)
# While a batch runs in pieces (a program's maximum), each hook call of the current piece.
_PIECE: ContextVar[list[tuple[LayerCallback, str, torch.Tensor]] | None] = ContextVar(
    "batch_piece", default=None
)


class _ForwardStopped(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Raised inside a hook to end the forward pass early."""


@contextmanager
def padded_batch(images: int, padded: int) -> Iterator[None]:
    """Within this block a forward runs ``images`` images padded with copies to ``padded``:
    every hook here sees the first ``images`` only, as if the copies were never there."""
    token = _PADDING.set((images, padded))
    try:
        yield
    finally:
        _PADDING.reset(token)


def in_pieces(forward: Callable[[torch.Tensor], Any], images: torch.Tensor, largest: int) -> Any:
    """``forward(images)`` run ``largest`` images at a time, yet one forward to every hook: the
    outputs a hook sees in each piece are joined along the batch and handed to its callback
    once, in the order they ran; an early stop ends every piece, then the whole forward.

    Only for exported programs, which are functional: nothing changes a tensor in place after
    its hook has seen it, so the callbacks may run after the pieces."""
    pieces: list[list[tuple[LayerCallback, str, torch.Tensor]]] = []
    outputs, stopped = [], False
    for start in range(0, images.shape[0], largest):
        token = _PIECE.set(piece := [])
        try:
            outputs.append(forward(images[start : start + largest]))
        except _ForwardStopped:
            stopped = True
        finally:
            _PIECE.reset(token)
        pieces.append(piece)
    for calls in zip(*pieces, strict=True):  # the same hook calls, in the same order, per piece
        callback, name, _tensor = calls[0]
        callback(name, torch.cat([tensor for _callback, _name, tensor in calls]))
    if stopped:
        raise _ForwardStopped
    return torch.cat(outputs) if isinstance(outputs[0], torch.Tensor) else outputs[0]


def _unpadded(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` without a padded batch's copies (a batch of another size is left whole: an
    ablation's replacement batch, say)."""
    padding = _PADDING.get()
    if padding is not None and tensor.dim() and tensor.shape[0] == padding[1]:
        return tensor[: padding[0]]
    return tensor


def named_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Every submodule by its dotted name, without the root."""
    return {name: module for name, module in model.named_modules() if name}


def resolve_layers(model: nn.Module, names: list[str]) -> dict[str, nn.Module]:
    """Look the ``names`` up, raising a KeyError that lists what is close when one is unknown."""
    modules = named_modules(model)
    unknown = [name for name in names if name not in modules]
    if unknown:
        prefix = unknown[0].rsplit(".", 1)[0]
        near = [n for n in modules if n.startswith(prefix)][:8] or list(modules)[:8]
        raise KeyError(f"unknown layer {unknown[0]!r}; layers look like: {', '.join(near)}")
    return {name: modules[name] for name in names}


@contextmanager
def layer_hooks(
    model: nn.Module,
    names: list[str],
    callback: LayerCallback,
    stop_early: bool = False,
    before: bool = False,
) -> Iterator[None]:
    """Call ``callback(name, output)`` whenever one of the named modules runs.

    The callback runs right after the module's forward, before any following in-place ReLU can
    modify the tensor. With ``before``, it runs just before the module and receives the module's
    first input instead (a ReLU's pre-activation, read before an in-place ReLU overwrites it).
    With ``stop_early``, the forward is aborted as soon as every named module has been reached;
    use :func:`forward_until` to swallow the signal.
    """
    modules = resolve_layers(model, names)
    handles = []
    waiting: set[str] = set()

    def make_hook(name: str) -> Callable[[nn.Module, Any, Any], None]:
        def hook(_module: nn.Module, inputs: Any, output: Any = None) -> None:
            tensor = inputs[0] if before else output
            if isinstance(tensor, torch.Tensor):
                piece = _PIECE.get()
                if piece is None:
                    callback(name, _unpadded(tensor))
                else:  # handed on once every piece has run (see in_pieces)
                    piece.append((callback, name, _unpadded(tensor)))
            waiting.discard(name)
            if stop_early and not waiting:
                waiting.update(modules)  # re-arm for the next forward
                raise _ForwardStopped

        return hook

    waiting.update(modules)
    try:
        for name, module in modules.items():
            register = module.register_forward_pre_hook if before else module.register_forward_hook
            handles.append(register(make_hook(name)))
        yield
    finally:
        for handle in handles:
            handle.remove()


def forward_until(model: nn.Module, inputs: torch.Tensor) -> None:
    """Run ``model(inputs)``, treating an early stop requested by a hook as normal completion."""
    with suppress(_ForwardStopped):
        model(inputs)


class ForwardError(RuntimeError):
    """A forward pass that failed, with the innermost module that was running when it did."""

    def __init__(self, module: str | None, module_type: str | None, error: BaseException) -> None:
        self.module, self.module_type = module, module_type
        self.reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
        where = f"in module {module!r} ({module_type})" if module else "outside any submodule"
        super().__init__(f"{where}: {self.reason}")


def execution_order(model: nn.Module, inputs: torch.Tensor) -> list[tuple[str, nn.Module, Any]]:
    """The modules (all depths) in the order their forwards finish, with their outputs.

    A forward that fails raises :class:`ForwardError` naming the innermost module that was
    running, so a user learns which layer of their network the input does not fit."""
    order: list[tuple[str, nn.Module, Any]] = []
    running: list[tuple[str, nn.Module]] = []
    handles = []
    try:
        for name, module in named_modules(model).items():

            def enter(module: nn.Module, _inputs: Any, name: str = name) -> None:
                running.append((name, module))

            def hook(module: nn.Module, _inputs: Any, output: Any, name: str = name) -> None:
                running.pop()
                if isinstance(output, torch.Tensor):
                    output = _unpadded(output)
                order.append((name, module, output))

            handles.append(module.register_forward_pre_hook(enter))
            handles.append(module.register_forward_hook(hook))
        with torch.no_grad():
            try:
                model(inputs)
            except (RuntimeError, ValueError, TypeError, IndexError, KeyError) as error:
                name, module = running[-1] if running else (None, None)
                raise ForwardError(name, type(module).__name__ if module else None, error) from None
    finally:
        for handle in handles:
            handle.remove()
    return order


def model_device(model: nn.Module) -> torch.device:
    """Where the model's parameters live (the CPU for a model without any)."""
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")
