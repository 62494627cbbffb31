"""Transformation robustness as one fused affine warp per image (docs/algorithms.md §7).

Lucid's standard chain — pad 12, jitter 8, scale 0.90..1.10, rotate ±10°, jitter 4 — asks the
optimised image to keep exciting the neuron when it moves a little, which removes the
high-frequency patterns that only work at one exact alignment. Lucent runs each step as a separate
tensor operation on the whole batch, so every image of a batch gets the *same* draw. Here the
whole chain, and the resize to the network's input size, is one affine matrix per image with its
own random draw, applied by a single ``grid_sample``: one pass over the pixels instead of five, and
a batch of N images explores N different transformations every step.

Pixels the warp pulls from outside the image are mid-grey or mirrored, never black: a black border
is a strong edge that neurons would learn to exploit.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import torch
import torch.nn.functional as F

GREY = 0.5


class Padding(StrEnum):
    GREY = "grey"
    REFLECT = "reflect"


@dataclass(frozen=True)
class RobustnessTransform:
    """The random warp's ranges, in pixels of the optimised image and in degrees.

    ``pad`` widens the field of view so the border can move into the frame; ``jitter`` and
    ``late_jitter`` are the total translation ranges before and after scaling.
    """

    pad: int = 12
    jitter: int = 8
    scale: tuple[float, float] = (0.9, 1.1)
    degrees: float = 10.0
    late_jitter: int = 4
    padding: Padding = Padding.GREY

    def matrices(
        self, batch: int, size: tuple[int, int], generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """One (2, 3) affine matrix per image, mapping output to input normalised coordinates."""
        height, width = size
        draws = torch.rand(batch, 5, generator=generator)
        low, high = self.scale
        scale = low + (high - low) * draws[:, 0]
        angle = torch.deg2rad((2 * draws[:, 1] - 1) * self.degrees)
        # Lucid crops the padded image by the jitters, so the view spans this many pixels.
        view_rows = (height + 2 * self.pad - self.jitter - self.late_jitter) / height
        view_cols = (width + 2 * self.pad - self.jitter - self.late_jitter) / width
        shift = (draws[:, 2:4] - 0.5) * self.jitter + (draws[:, 4:5] - 0.5) * self.late_jitter
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        theta = torch.zeros(batch, 2, 3)
        theta[:, 0, 0] = cos * view_cols
        theta[:, 0, 1] = -sin * view_rows * height / width
        theta[:, 1, 0] = sin * view_cols * width / height
        theta[:, 1, 1] = cos * view_rows
        theta[:, 0, 2] = 2 * shift[:, 0] / width
        theta[:, 1, 2] = 2 * shift[:, 1] / height
        return theta

    def __call__(
        self,
        images: torch.Tensor,
        output_size: tuple[int, int] | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Warp each image of (N, 3, H, W) with its own draw, resampled to ``output_size``."""
        batch = images.shape[0]
        height, width = images.shape[-2:]
        theta = self.matrices(batch, (height, width), generator).to(images)
        return warp(images, theta, output_size or (height, width), self.padding)


def warp(
    images: torch.Tensor,
    theta: torch.Tensor,
    output_size: tuple[int, int],
    padding: Padding = Padding.GREY,
) -> torch.Tensor:
    """Bilinear resampling of ``images`` by the affine ``theta`` (N, 2, 3)."""
    grid = F.affine_grid(theta, [images.shape[0], 3, *output_size], align_corners=False)
    if padding is Padding.REFLECT:
        return F.grid_sample(images, grid, padding_mode="reflection", align_corners=False)
    # Zero padding around (image − grey) is grey padding around the image.
    warped = F.grid_sample(images - GREY, grid, padding_mode="zeros", align_corners=False)
    return warped + GREY


def resize(images: torch.Tensor, output_size: tuple[int, int]) -> torch.Tensor:
    """The identity warp to another size: how the finished image is shown to the network."""
    if tuple(images.shape[-2:]) == tuple(output_size):
        return images
    return F.interpolate(images, size=output_size, mode="bilinear", align_corners=False)
