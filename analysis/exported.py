"""What input a ``torch.export`` program accepts, read once from the program, and the program made
to take a batch of any size.

A module can be fed any input its layers can compute on; an exported program carries the shape
constraints of its whole graph, found when it was traced: a range per dynamic dimension (a
two-convolution network needs at least 5 px; ``Dim.AUTO`` makes a dynamic batch start at 2) and
guards relating sizes (a U-Net's "height is even"). Feeding it anything else fails inside the
stage that tried. So the constraints are read when the program is loaded: the ranges from the
program's ``range_constraints`` on its input's symbols, the guards from the program's own guard
function, evaluated on shapes alone (meta tensors: no memory, no arithmetic). Each stage then asks
:meth:`InputConstraints.accepts` for the size it needs, or the smallest accepted size that keeps
its answer exact (docs/algorithms.md §4: a larger crop around the same window), and refuses in one
line before it starts when there is none.

The batch is the one dimension every stage varies: a batch below the program's minimum is padded
with copies of its last image, which leaves every image's result unchanged (an eval-mode network
treats the images of a batch independently), and the copies are cut off again before any hook or
caller sees them (:func:`analysis.hooks.padded_batch`); a batch above its maximum runs in pieces
that every hook sees as one (:func:`analysis.hooks.in_pieces`). Only a program whose batch is
fixed is refused at load.
"""

from __future__ import annotations

import math
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils import _pytree as pytree

from analysis.hooks import in_pieces, padded_batch

DESCRIBED_SIDES = 257  # a refusal says which square sides below this the program takes


class ProgramInputError(ValueError):
    """The program cannot take the input a stage needs; the message says what it accepts."""


@dataclass(frozen=True)
class SizeRange:
    """The sizes one input dimension takes: ``low`` … ``high`` (None: unbounded); static when
    both are the same."""

    low: int
    high: int | None

    @property
    def static(self) -> bool:
        return self.high == self.low

    def __contains__(self, size: int) -> bool:
        return size >= self.low and (self.high is None or size <= self.high)

    def describe(self) -> str:
        if self.static:
            return f"exactly {self.low}"
        return f"{self.low} to {self.high}" if self.high is not None else f"at least {self.low}"


ANY_SIZE = SizeRange(1, None)


@dataclass(frozen=True)
class InputConstraints:
    """The (batch, channels, height, width) shapes an exported program accepts."""

    batch: SizeRange = ANY_SIZE
    height: SizeRange = ANY_SIZE
    width: SizeRange = ANY_SIZE
    guard: Callable[[tuple[int, int, int, int]], bool] | None = None  # the program's guards
    channels: int | None = None

    def accepts(self, height: int, width: int, batch: int | None = None) -> bool:
        """Whether a (batch, C, height, width) input passes the program's checks (batch: its
        smallest)."""
        batch = self.batch.low if batch is None else batch
        if batch not in self.batch or height not in self.height or width not in self.width:
            return False
        return self.guard is None or self.guard((batch, self.channels or 3, height, width))

    def smallest_batch(self, batch: int) -> int:
        """The batch to run ``batch`` images in: at least the program's minimum."""
        return max(batch, self.batch.low)

    def smallest_size(self, heights: list[int], widths: list[int]) -> tuple[int, int] | None:
        """The first accepted (height, width) from the candidates (each in increasing order),
        smallest height first; None when none is."""
        for height in heights:
            for width in widths:
                if self.accepts(height, width):
                    return height, width
        return None

    def require(self, height: int, width: int, what: str) -> None:
        """Raise a readable :class:`ProgramInputError` when ``what`` (a stage's input, e.g.
        "the 23×23 px octave of this dream") cannot be fed to the program."""
        if not self.accepts(height, width):
            raise ProgramInputError(f"the exported program cannot take {what}: {self.describe()}")

    def describe(self) -> str:
        """What the program takes, in words: "it takes only 64×64 px images", "it takes square
        images of 7 px and more", "it takes square images of 34, 36, 38, … px"."""
        if self.height.static and self.width.static:
            return f"it takes only {self.height.low}×{self.width.low} px images"
        sides = [side for side in range(1, DESCRIBED_SIDES) if self.accepts(side, side)]
        if not sides:
            return f"it takes heights {self.height.describe()}, widths {self.width.describe()}"
        if sides == list(range(sides[0], DESCRIBED_SIDES)):
            return f"it takes square images of {sides[0]} px and more"
        return f"it takes square images of {', '.join(map(str, sides[:3]))}, … px"


ANY_INPUT = InputConstraints()


def read_constraints(program: torch.export.ExportedProgram) -> InputConstraints:
    """The input constraints of a program with one image input (N, C, H, W)."""
    user_inputs = set(program.graph_signature.user_inputs)
    shapes = [
        node.meta["val"].shape
        for node in program.graph.nodes
        if node.op == "placeholder" and node.name in user_inputs and "val" in node.meta
    ]
    if len(shapes) != 1 or len(shapes[0]) != 4:
        raise ProgramInputError(
            "the exported program must take one image tensor (N, C, H, W); it takes "
            f"{len(shapes)} input(s)" + (f" of {len(shapes[0])} dimensions" if shapes else "")
        )
    batch, channels, height, width = (_size_range(dim, program) for dim in shapes[0])
    return InputConstraints(
        batch=batch,
        height=height,
        width=width,
        guard=_guard(program),
        channels=channels.low if channels.static else None,
    )


def _size_range(dim: Any, program: torch.export.ExportedProgram) -> SizeRange:
    if isinstance(dim, int):
        return SizeRange(dim, dim)
    expression = dim.node.expr
    bounds = program.range_constraints.get(expression)
    if bounds is None:  # a size tied to others by an expression: left to the guards
        return ANY_SIZE
    high = bounds.upper
    return SizeRange(int(bounds.lower), int(high) if math.isfinite(float(high)) else None)


def _guard(program: torch.export.ExportedProgram) -> Callable[[tuple[int, ...]], bool] | None:
    """The program's guards on its input sizes, as a test of a shape: they are compiled into
    the program's module as ``_guards_fn``, which asserts; run on a meta tensor it reads the
    shape only. None when the program has no guards."""
    check = getattr(program.module(), "_guards_fn", None)
    if check is None:
        return None

    def passes(shape: tuple[int, ...]) -> bool:
        try:
            check(torch.empty(shape, device="meta"))
        except AssertionError:
            return False
        return True

    return passes


def name_original_classes(module: nn.Module, program: torch.export.ExportedProgram) -> None:
    """Tell each unflattened submodule (an ``InterpreterModule``) which class it was traced from
    (``Conv2d``, ``ReLU``), as recorded in the program's node metadata, so that layers are listed,
    paired and read as the module's were (:func:`class_name`)."""
    classes: dict[str, str] = {}
    for node in program.graph.nodes:
        for path, kind in (node.meta.get("nn_module_stack") or {}).values():
            name = kind if isinstance(kind, str) else kind.__qualname__
            classes.setdefault(path, name.rsplit(".", 1)[-1])
    for path, submodule in module.named_modules():
        if path and path in classes:
            submodule.neuronscope_class = classes[path]


def class_name(module: nn.Module) -> str:
    """The class a module was written as: its own, or the one an exported program's submodule
    was traced from."""
    return getattr(module, "neuronscope_class", type(module).__name__)


def accept_any_batch(module: nn.Module, constraints: InputConstraints) -> nn.Module:
    """``module`` (a program's) made to take a batch of any size, and to carry its
    ``constraints`` for the stages to read (:func:`input_constraints`)."""
    if constraints.batch.static:
        raise ProgramInputError(
            f"the exported program's batch is fixed at {constraints.batch.low}: export it with "
            "a dynamic batch, e.g. dynamic_shapes=({0: torch.export.Dim.AUTO, "
            "2: torch.export.Dim.AUTO, 3: torch.export.Dim.AUTO},)"
        )
    module.neuronscope_input = constraints
    if constraints.batch != ANY_SIZE:
        # Bound as a method, so that a deep copy of the module calls its own forward.
        module.forward = types.MethodType(_any_batch_forward, module)
    return module


def input_constraints(model: nn.Module) -> InputConstraints:
    """What ``model`` accepts: an exported program's constraints, anything for a module."""
    return getattr(model, "neuronscope_input", ANY_INPUT)


def _any_batch_forward(self: nn.Module, images: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
    """The program's forward for any batch: above its maximum in pieces, below its minimum
    padded (see the module's docstring)."""
    largest = self.neuronscope_input.batch.high
    if largest is not None and images.shape[0] > largest:
        return in_pieces(lambda piece: _padded(self, piece, args, kwargs), images, largest)
    return _padded(self, images, args, kwargs)


def _padded(self: nn.Module, images: torch.Tensor, args: tuple, kwargs: dict) -> Any:
    real = images.shape[0]
    padded = self.neuronscope_input.smallest_batch(real)
    forward = type(self).forward
    if padded == real:
        return forward(self, images, *args, **kwargs)
    copies = images[-1:].expand(padded - real, *images.shape[1:])
    with padded_batch(real, padded):
        output = forward(self, torch.cat([images, copies]), *args, **kwargs)
    return pytree.tree_map(
        lambda value: (
            value[:real]
            if isinstance(value, torch.Tensor) and value.dim() and value.shape[0] == padded
            else value
        ),
        output,
    )
