"""In-silico physiology: response curves of single units, as with a cell and an electrode
(docs/algorithms.md §5).

The cell is one channel; its response is the activation at the centre of the map. The
spontaneous rate is the response to a black image. Hue responses are read *before* the
activation function (where opponency shows as responses below baseline) and grating responses
*after* it. A greyscale model sees uniform hues only as 360 grey levels, so it is shown no hues:
its units are classed spectrally "achromatic" and keep their grating responses.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from analysis.hooks import forward_until, layer_hooks
from analysis.layers import LayerInfo
from analysis.models import InputSpec

HUES = tuple(range(360))
GRATING_ORIENTATIONS = tuple(range(0, 181, 20))  # 10
GRATING_PHASES = tuple(round(0.2 * i, 1) for i in range(6))  # 0 … 1 cycle, 6
GRATING_FREQUENCIES = tuple(range(1, 17))  # cycles per image, 16


@dataclass(frozen=True)
class Electrode:
    """Where responses are read: a module's output, or its first input (``before`` it runs)."""

    module: str
    before: bool = False


def hue_stimuli(size: tuple[int, int]) -> torch.Tensor:
    """360 full-field uniform images, hue 0°…359° in HSL with saturation 1 and lightness 0.5."""
    colours = torch.tensor([colorsys.hls_to_rgb(h / 360, 0.5, 1.0) for h in HUES])
    return colours[:, :, None, None].expand(len(HUES), 3, *size).float()


def grating_conditions() -> list[tuple[int, float, int]]:
    """(orientation°, phase in cycles, cycles per image) of the 960 gratings, in stimulus order."""
    return [
        (o, p, f) for o in GRATING_ORIENTATIONS for p in GRATING_PHASES for f in GRATING_FREQUENCIES
    ]


def grating_stimuli(size: tuple[int, int]) -> torch.Tensor:
    """Achromatic full-contrast sinusoidal gratings, 0.5 + 0.5·sin(2π(f·u/side + phase)).

    ``size`` is (height, width); f counts cycles over the shorter side, ``side``, so a
    frequency means the same on a non-square input as on its inscribed square."""
    height, width = size
    side = min(height, width)
    rows = torch.arange(height, dtype=torch.float64) + 0.5 - height / 2
    cols = torch.arange(width, dtype=torch.float64) + 0.5 - width / 2
    y, x = torch.meshgrid(rows, cols, indexing="ij")
    images = []
    for orientation, phase, frequency in grating_conditions():
        angle = math.radians(orientation)
        u = x * math.cos(angle) + y * math.sin(angle)
        images.append(0.5 + 0.5 * torch.sin(2 * math.pi * (frequency * u / side + phase)))
    return torch.stack(images).float()[:, None].expand(-1, 3, -1, -1)


def black_stimulus(size: tuple[int, int]) -> torch.Tensor:
    return torch.zeros(1, 3, *size)


def stimulus_count(input_spec: InputSpec) -> int:
    """Stimuli :func:`layer_physiology` shows a model: black, the hues (not to a greyscale
    model) and the gratings, 1,321 or 961; one forward each, so on a heavy model this is a
    stage of its own to watch."""
    return 1 + (0 if input_spec.grey else len(HUES)) + len(grating_conditions())


def record_centre(
    model: nn.Module,
    electrodes: Sequence[Electrode],
    stimuli: torch.Tensor,
    input_spec: InputSpec,
    device: torch.device | str = "cpu",
    batch_size: int = 128,
    advance: Callable[[int], None] | None = None,
    memory_format: torch.memory_format = torch.channels_last,
) -> dict[Electrode, np.ndarray]:
    """Responses (stimuli, channels) at the map centre of every electrode, in one pass;
    ``advance(n)`` is told how many stimuli are done. ``memory_format`` is the layout of the
    model and its input (``benchmarks/physiology.py`` times the contiguous one)."""
    device = torch.device(device)
    found: dict[Electrode, list[torch.Tensor]] = {e: [] for e in electrodes}

    def reader(before: bool):
        def read(name: str, tensor: torch.Tensor) -> None:
            height, width = tensor.shape[-2:]
            # A copy now: an in-place ReLU would otherwise overwrite a pre-activation read.
            centre = tensor[:, :, height // 2, width // 2].float().cpu().clone()
            found[Electrode(name, before)].append(centre)

        return read

    cuda = device.type == "cuda"
    # Channels-last convolutions run 1.3–1.5× faster on CPUs too (oneDNN; ResNet-18 and VGG11
    # at 64 px), in fp32 all the same.
    model.to(memory_format=memory_format)
    with ExitStack() as stack, torch.no_grad():
        if cuda:
            stack.enter_context(torch.backends.cudnn.flags(enabled=True, allow_tf32=False))
        for before in (False, True):
            names = [e.module for e in electrodes if e.before == before]
            if names:
                stack.enter_context(layer_hooks(model, names, reader(before), before=before))
        # Registered last, so it runs after the readers: the forward ends once every electrode's
        # module has run, instead of going on through the rest of the network.
        modules = sorted({e.module for e in electrodes})
        stack.enter_context(layer_hooks(model, modules, lambda *_: None, stop_early=True))
        for start in range(0, len(stimuli), batch_size):
            batch = input_spec.normalise(stimuli[start : start + batch_size].to(device))
            # Full fp32 even on CUDA (no bf16, no TF32): the classes compare responses with the
            # baseline, and reduced precision turns "equal to baseline" into noise; 1,321
            # stimuli cost little anyway.
            forward_until(model, batch.contiguous(memory_format=memory_format))
            if advance:
                advance(start + len(batch))
    return {e: torch.cat(parts).numpy() for e, parts in found.items()}


@dataclass(frozen=True)
class UnitPhysiology:
    """One unit's response curves and classes."""

    hue_curve: list[float]  # empty for a greyscale model
    hue_baseline: float
    spectral_class: str  # "opponent", "non-opponent", "unresponsive" or "achromatic"
    hue_max: int | None
    hue_min: int | None
    spatial_class: str
    grating_baseline: float
    orientation_tuning: list[float]  # max over phase and frequency, per grating orientation
    preferred_frequency: int
    preferred_orientation: int

    @property
    def double_opponent(self) -> bool:
        return self.spectral_class == "opponent" and self.spatial_class == "opponent"

    def details(self) -> dict[str, object]:
        return {
            "hue_curve": self.hue_curve,
            "hue_baseline": self.hue_baseline,
            "spectral_class": self.spectral_class,
            "hue_max": self.hue_max,
            "hue_min": self.hue_min,
            "spatial_class": self.spatial_class,
            "grating_baseline": self.grating_baseline,
            "grating_orientations": list(GRATING_ORIENTATIONS),
            "grating_orientation_tuning": self.orientation_tuning,
            "preferred_frequency": self.preferred_frequency,
            "preferred_orientation": self.preferred_orientation,
            "double_opponent": self.double_opponent,
        }


def _tolerance(baseline: float, responses: np.ndarray) -> float:
    return 1e-5 * max(abs(baseline), float(np.abs(responses).max(initial=0.0))) + 1e-6


def spectral_class(hue_responses: np.ndarray, baseline: float) -> str:
    """Unresponsive if every hue gives the baseline; opponent if some hues excite and others
    inhibit a spontaneously active unit (max > baseline > min, baseline > 0); else non-opponent."""
    tolerance = _tolerance(baseline, hue_responses)
    if np.all(np.abs(hue_responses - baseline) <= tolerance):
        return "unresponsive"
    excited = hue_responses.max() > baseline + tolerance
    inhibited = hue_responses.min() < baseline - tolerance
    return "opponent" if excited and inhibited and baseline > 0 else "non-opponent"


def spatial_class(grating_responses: np.ndarray, baseline: float) -> str:
    """Unresponsive if every grating gives the baseline; non-opponent if all are on one side of
    it; opponent if some gratings raise and others lower the response."""
    tolerance = _tolerance(baseline, grating_responses)
    above = grating_responses > baseline + tolerance
    below = grating_responses < baseline - tolerance
    if not above.any() and not below.any():
        return "unresponsive"
    return "opponent" if above.any() and below.any() else "non-opponent"


def unit_physiology(
    hue: np.ndarray | None, hue_baseline: float, gratings: np.ndarray, grating_baseline: float
) -> UnitPhysiology:
    """Classify one unit from its 360 hue (None: a greyscale model) and 960 grating responses."""
    by_condition = gratings.reshape(
        len(GRATING_ORIENTATIONS), len(GRATING_PHASES), len(GRATING_FREQUENCIES)
    )
    best = np.unravel_index(int(np.argmax(by_condition)), by_condition.shape)
    return UnitPhysiology(
        hue_curve=[] if hue is None else [float(v) for v in hue],
        hue_baseline=float(hue_baseline),
        spectral_class="achromatic" if hue is None else spectral_class(hue, hue_baseline),
        hue_max=None if hue is None else int(np.argmax(hue)),
        hue_min=None if hue is None else int(np.argmin(hue)),
        spatial_class=spatial_class(gratings, grating_baseline),
        grating_baseline=float(grating_baseline),
        orientation_tuning=[float(v) for v in by_condition.max(axis=(1, 2))],
        preferred_frequency=GRATING_FREQUENCIES[best[2]],
        preferred_orientation=GRATING_ORIENTATIONS[best[0]],
    )


def electrodes(layer: LayerInfo, by_name: dict[str, LayerInfo]) -> tuple[Electrode, Electrode]:
    """(pre-activation, post-activation) electrodes of a recorded layer.

    An activation module is read at its input and its output; a convolution at its output and
    at the output of the activation that follows it; anything else at its output only.
    """
    if layer.role == "activation":
        return Electrode(layer.name, before=True), Electrode(layer.name)
    activation = by_name.get(layer.activation or "")
    if activation is not None and activation.hookable:
        return Electrode(layer.name), Electrode(activation.name)
    return Electrode(layer.name), Electrode(layer.name)


def layer_physiology(
    model: nn.Module,
    layers: dict[str, tuple[Electrode, Electrode]],
    input_spec: InputSpec,
    device: torch.device | str = "cpu",
    advance: Callable[[int], None] | None = None,
    batch_size: int = 128,
) -> dict[str, list[UnitPhysiology]]:
    """Physiology of every unit of every layer; ``layers`` maps a layer to its (pre-activation,
    post-activation) electrodes. All layers share one pass over the 1,321 stimuli (961 for a
    greyscale model, which is shown no hues). Stimuli fill the model's input size;
    ``advance(n)`` is told how many are done. A CPU wants smaller batches than
    ``batch_size``'s default: DenseNet-121 at 224 px took 41 ms a stimulus in batches of 64 and
    58–65 ms in batches of 128, with the same responses."""
    size = input_spec.size
    hues = [] if input_spec.grey else [hue_stimuli(size)]
    stimuli = torch.cat([black_stimulus(size), *hues, grating_stimuli(size)])
    electrodes = sorted({e for pair in layers.values() for e in pair}, key=str)
    recorded = record_centre(
        model, electrodes, stimuli, input_spec, device, batch_size, advance=advance
    )
    hue_rows = slice(1, 1 + len(HUES)) if hues else None
    grating_rows = slice(1 + (len(HUES) if hues else 0), None)
    result = {}
    for name, (pre, post) in layers.items():
        before, after = recorded[pre], recorded[post]
        result[name] = [
            unit_physiology(
                before[hue_rows, c] if hue_rows else None,
                before[0, c],
                after[grating_rows, c],
                after[0, c],
            )
            for c in range(before.shape[1])
        ]
    return result


def fractions(units: Sequence[UnitPhysiology]) -> dict[str, float]:
    """Per layer: the share of units in each spectral and spatial class, and double opponent."""
    count = max(len(units), 1)
    shares: dict[str, float] = {}
    for kind in ("opponent", "non-opponent", "unresponsive"):
        shares[f"spectral_{kind}"] = sum(u.spectral_class == kind for u in units) / count
        shares[f"spatial_{kind}"] = sum(u.spatial_class == kind for u in units) / count
    shares["double_opponent"] = sum(u.double_opponent for u in units) / count
    return shares
