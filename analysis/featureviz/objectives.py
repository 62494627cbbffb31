"""What a visualisation maximises: small values that compose with ``+``, ``-`` and scalars.

An :class:`Objective` maps the recorded activations of one forward pass to a score **per image**
(shape (N,)), which the render loop maximises summed over the batch. Most objectives are bound to
one image of the batch (``image=i``), so one batch renders many neurons at once; ``image=None``
applies to every image. Per-image scores also let the loop report how well each image did.

The recorded tensors are keyed by module name, plus two reserved keys: :data:`IMAGE` (the
optimised images in [0, 1], before any transform, for penalties) and :data:`OUTPUT` (the model's
output, for class logits). Penalties return a positive magnitude; subtract them::

    channel("layer3", 7) - 1e-3 * total_variation()
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from analysis.featureviz.targets import OUTPUT

IMAGE = "@image"

Activations = Mapping[str, torch.Tensor]
ScoreFunction = Callable[[Activations], torch.Tensor]


@dataclass(frozen=True)
class Objective:
    """A per-image score of recorded activations, and the modules it needs recorded."""

    score: ScoreFunction
    layers: frozenset[str]
    description: str

    def __call__(self, activations: Activations) -> torch.Tensor:
        return self.score(activations)

    def __add__(self, other: Objective | float) -> Objective:
        if not isinstance(other, Objective):
            return self._map(lambda s: s + other, f"{self.description} + {other}")
        return Objective(
            lambda a: self.score(a) + other.score(a),
            self.layers | other.layers,
            f"{self.description} + {other.description}",
        )

    __radd__ = __add__

    def __neg__(self) -> Objective:
        return self._map(lambda s: -s, f"-({self.description})")

    def __sub__(self, other: Objective | float) -> Objective:
        return self + (-other)

    def __rsub__(self, other: float) -> Objective:
        return (-self) + other

    def __mul__(self, factor: float) -> Objective:
        if isinstance(factor, Objective):
            raise TypeError("objectives multiply by numbers, not by each other")
        return self._map(lambda s: s * factor, f"{factor} * {self.description}")

    __rmul__ = __mul__

    def __truediv__(self, divisor: float) -> Objective:
        return self * (1.0 / divisor)

    def _map(self, function: Callable[[torch.Tensor], torch.Tensor], text: str) -> Objective:
        return Objective(lambda a: function(self.score(a)), self.layers, text)

    @property
    def needs_output(self) -> bool:
        """Whether the forward must run to the end (otherwise it stops at the deepest layer)."""
        return OUTPUT in self.layers


def _bound(values: torch.Tensor, image: int | None) -> torch.Tensor:
    """Keep only image ``image``'s score (all images when None)."""
    if image is None:
        return values
    mask = torch.zeros_like(values)
    mask[image] = 1.0
    return values * mask


def _spatial(tensor: torch.Tensor) -> torch.Tensor:
    """A layer output as (N, C, H, W): a fully connected layer's (N, C) becomes 1×1 maps."""
    return tensor[:, :, None, None] if tensor.dim() == 2 else tensor


def channel(layer: str, unit: int, image: int | None = None) -> Objective:
    """The mean of channel ``unit`` over the whole map of ``layer`` (Lucid's ``channel``)."""

    def score(activations: Activations) -> torch.Tensor:
        return _bound(_spatial(activations[layer])[:, unit].float().mean((1, 2)), image)

    return Objective(score, frozenset({layer}), f"channel({layer!r}, {unit})")


def channels(layer: str, units: Sequence[int]) -> Objective:
    """Image i maximises the mean of channel ``units[i]``: a whole layer in one batch."""
    index = torch.as_tensor(list(units), dtype=torch.long)

    def score(activations: Activations) -> torch.Tensor:
        maps = _spatial(activations[layer])
        rows = torch.arange(len(index), device=maps.device)
        return maps[rows, index.to(maps.device)].float().mean((1, 2))

    return Objective(score, frozenset({layer}), f"channels({layer!r}, {len(index)} units)")


def neuron(
    layer: str, unit: int, row: int | None = None, col: int | None = None, image: int | None = None
) -> Objective:
    """One position of channel ``unit`` (the centre of the map unless given)."""

    def score(activations: Activations) -> torch.Tensor:
        maps = _spatial(activations[layer])
        y = maps.shape[2] // 2 if row is None else row
        x = maps.shape[3] // 2 if col is None else col
        return _bound(maps[:, unit, y, x].float(), image)

    return Objective(score, frozenset({layer}), f"neuron({layer!r}, {unit}, {row}, {col})")


def deepdream(layer: str, image: int | None = None) -> Objective:
    """The mean square of every channel of ``layer`` (DeepDream's layer objective)."""

    def score(activations: Activations) -> torch.Tensor:
        return _bound(activations[layer].float().pow(2).flatten(1).mean(1), image)

    return Objective(score, frozenset({layer}), f"deepdream({layer!r})")


def select_output(output: object, index: int | None) -> torch.Tensor:
    """The logits among a model's outputs: a tensor, or element ``index`` of a tuple/list/dict."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping):
        values = list(output.values())
        return values[index or 0]
    if isinstance(output, (tuple, list)):
        return output[index or 0]
    raise TypeError(f"the model returned {type(output).__name__}, not a tensor of logits")


def class_logit(unit: int, image: int | None = None, output: int | None = None) -> Objective:
    """The pre-softmax logit of class ``unit`` (the output must hold logits, not probabilities);
    ``output`` picks the logits among a tuple or dict of outputs."""

    def score(activations: Activations) -> torch.Tensor:
        return _bound(select_output(activations[OUTPUT], output)[:, unit].float(), image)

    return Objective(score, frozenset({OUTPUT}), f"class_logit({unit})")


def class_logits(units: Sequence[int], output: int | None = None) -> Objective:
    """Image i maximises the logit of class ``units[i]``."""
    index = torch.as_tensor(list(units), dtype=torch.long)

    def score(activations: Activations) -> torch.Tensor:
        logits = select_output(activations[OUTPUT], output)
        rows = torch.arange(len(index), device=logits.device)
        return logits[rows, index.to(logits.device)].float()

    return Objective(score, frozenset({OUTPUT}), f"class_logits({len(index)} classes)")


def direction(layer: str, vector: torch.Tensor, image: int | None = None) -> Objective:
    """The mean over positions of the dot product of the channel vector with ``vector``."""
    unit_vector = vector.float() / vector.float().norm().clamp(min=1e-12)

    def score(activations: Activations) -> torch.Tensor:
        maps = _spatial(activations[layer]).float()
        weights = unit_vector.to(maps.device)[None, :, None, None]
        return _bound((maps * weights).sum(1).mean((1, 2)), image)

    return Objective(score, frozenset({layer}), f"direction({layer!r})")


def diversity(layer: str, group: int | None = None) -> Objective:
    """Similarity of each image's Gram matrix to the others' of its group (subtract it).

    Images are taken in consecutive groups of ``group`` (the whole batch when None), so a batch
    can hold several neurons' diverse sets side by side. The score of image i is
    Σ_{j≠i} ⟨G_i, G_j⟩ over its group, with each Gram matrix scaled to unit norm (Lucid).
    """

    def score(activations: Activations) -> torch.Tensor:
        maps = _spatial(activations[layer]).float()
        batch, count = maps.shape[0], maps.shape[1]
        size = group or batch
        flat = maps.reshape(batch, count, -1)
        grams = F.normalize(torch.bmm(flat, flat.transpose(1, 2)).reshape(batch, -1), dim=1)
        grouped = grams.reshape(batch // size, size, -1)
        similarity = torch.bmm(grouped, grouped.transpose(1, 2))
        others = similarity.sum(2) - similarity.diagonal(dim1=1, dim2=2)
        return others.reshape(batch)

    return Objective(score, frozenset({layer}), f"diversity({layer!r})")


def total_variation(image: int | None = None) -> Objective:
    """Mean absolute difference between neighbouring pixels (a penalty: subtract it)."""

    def score(activations: Activations) -> torch.Tensor:
        pixels = activations[IMAGE]
        rows = (pixels[:, :, 1:] - pixels[:, :, :-1]).abs().flatten(1).mean(1)
        cols = (pixels[:, :, :, 1:] - pixels[:, :, :, :-1]).abs().flatten(1).mean(1)
        return _bound(rows + cols, image)

    return Objective(score, frozenset({IMAGE}), "total_variation()")


def l1(constant: float = 0.5, image: int | None = None) -> Objective:
    """Mean absolute distance of the pixels from ``constant`` (a penalty: subtract it)."""

    def score(activations: Activations) -> torch.Tensor:
        return _bound((activations[IMAGE] - constant).abs().flatten(1).mean(1), image)

    return Objective(score, frozenset({IMAGE}), f"l1({constant})")


def blur(image: int | None = None) -> Objective:
    """Mean squared difference between the image and its 3×3 box blur: high-frequency energy
    (a penalty: subtract it)."""

    def score(activations: Activations) -> torch.Tensor:
        pixels = activations[IMAGE]
        blurred = F.avg_pool2d(F.pad(pixels, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
        return _bound((pixels - blurred.detach()).pow(2).flatten(1).mean(1), image)

    return Objective(score, frozenset({IMAGE}), "blur()")
