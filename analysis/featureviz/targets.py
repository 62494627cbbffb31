"""What a set of feature visualisations is of (a layer's channels, or the output's classes), the
name its results are filed under, and how its images are searched for.

Plain Python, without torch: the web process names targets and checks methods as the worker
files and runs them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

# The model's output, as a name among layer names: its logits are the targets of class images.
OUTPUT = "@output"


@dataclass(frozen=True)
class Target:
    """What the units are: channels of ``layer``, or classes of the model's output (``layer`` is
    None; ``output`` picks the logits among a tuple or dict of outputs)."""

    layer: str | None = None
    output: int | None = None

    @property
    def name(self) -> str:
        """How results are filed: the layer's name, or ``@output`` / ``@output[1]``."""
        if self.layer is not None:
            return self.layer
        return OUTPUT + ("" if self.output is None else f"[{self.output}]")

    @property
    def objective_name(self) -> str:
        return "channel" if self.layer is not None else "class"


class Method(StrEnum):
    """Gradient ascent on a Fourier image, or the gradient-free genetic search (XDREAM)."""

    GRADIENT = "gradient"
    XDREAM = "xdream"
