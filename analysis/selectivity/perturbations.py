"""Perturbations of receptive-field patches, batched: (B, 3, h, w) in, (B, V, 3, h, w) out.

Each function returns V variants per patch; ``mask`` (B, h, w) marks the pixels that lie inside
the image (the rest of an unclipped window is grey padding and is not part of the stimulus).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

ORIENTATION_ANGLES = tuple(range(15, 360, 15))  # 23 rotations, docs/algorithms.md §4
SYMMETRY_AXES = (0, 45, 90, 135)
SHUFFLE_SEED = 0

PatchFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Perturbation:
    """A named family of ``variants`` perturbations."""

    name: str
    variants: int
    apply: PatchFunction


def identity(patches: torch.Tensor, _mask: torch.Tensor) -> torch.Tensor:
    """The unperturbed patch: re-reading it gives a_j under exactly the same conditions."""
    return patches[:, None]


def opponent_grey(patches: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A grey version that keeps the patch's shape and contrast (docs/algorithms.md §4, colour).

    Pixels go to opponent space O1 = (R+G+B−1.5)/1.5, O2 = R−G, O3 = (R+G−2B)/2 and are projected
    on the first principal component of the patch's own (in-image) pixels, signed to correlate
    positively with O1; the projection is rescaled so its minimum and maximum equal those of the
    luminance (R+G+B)/3, and used for all three channels.
    """
    batch, _, height, width = patches.shape
    rgb = patches.permute(0, 2, 3, 1).reshape(batch, -1, 3).double()
    weight = mask.reshape(batch, -1, 1).double()
    count = weight.sum(1, keepdim=True).clamp_min(1.0)
    r, g, b = rgb.unbind(-1)
    opponent = torch.stack([(r + g + b - 1.5) / 1.5, r - g, (r + g - 2 * b) / 2], dim=-1)
    centred = opponent - (opponent * weight).sum(1, keepdim=True) / count
    covariance = (centred * weight).transpose(1, 2) @ centred / count
    _, vectors = torch.linalg.eigh(covariance)  # ascending eigenvalues, symmetric solver
    principal = vectors[..., -1]  # (B, 3)
    principal = principal * torch.where(principal[:, :1] < 0, -1.0, 1.0)
    projection = (centred @ principal[..., None])[..., 0]  # (B, P)
    luminance = rgb.mean(-1)
    inside = weight[..., 0] > 0
    big = torch.finfo(torch.float64).max
    low = torch.where(inside, projection, big).amin(1, keepdim=True)
    high = torch.where(inside, projection, -big).amax(1, keepdim=True)
    lum_low = torch.where(inside, luminance, big).amin(1, keepdim=True)
    lum_high = torch.where(inside, luminance, -big).amax(1, keepdim=True)
    span = high - low
    flat = span <= 1e-12
    scaled = lum_low + (projection - low) / torch.where(flat, 1.0, span) * (lum_high - lum_low)
    mean_luminance = (luminance * weight[..., 0]).sum(1, keepdim=True) / count[..., 0]
    grey = torch.where(flat, mean_luminance, scaled).float().reshape(batch, 1, height, width)
    return grey.expand(batch, 3, height, width)[:, None]


def _warp(patches: torch.Tensor, matrices: torch.Tensor) -> torch.Tensor:
    """Resample every patch with each 2×2 matrix about its centre, edges replicated."""
    batch, channels, height, width = patches.shape
    variants = matrices.shape[0]
    theta = torch.zeros(variants, 2, 3, dtype=patches.dtype, device=patches.device)
    theta[:, :, :2] = matrices.to(patches)
    grid = F.affine_grid(theta, [variants, channels, height, width], align_corners=False)
    grid = grid[None].expand(batch, -1, -1, -1, -1).reshape(batch * variants, height, width, 2)
    source = patches[:, None].expand(-1, variants, -1, -1, -1).reshape(-1, channels, height, width)
    warped = F.grid_sample(
        source, grid, mode="bilinear", padding_mode="border", align_corners=False
    )
    return warped.reshape(batch, variants, channels, height, width)


def rotations(patches: torch.Tensor, _mask: torch.Tensor) -> torch.Tensor:
    """The patch rotated by 15°, 30°, …, 345° about its centre (edge-replicated, same size)."""
    radians = torch.tensor([math.radians(a) for a in ORIENTATION_ANGLES], dtype=torch.float64)
    cos, sin = torch.cos(radians), torch.sin(radians)
    # affine_grid maps output to input coordinates: use the inverse rotation.
    matrices = torch.stack([torch.stack([cos, sin], -1), torch.stack([-sin, cos], -1)], 1)
    return _warp(patches, matrices)


def mirrors(patches: torch.Tensor, _mask: torch.Tensor) -> torch.Tensor:
    """Mirror images about the axes 0° (top↔bottom), 45° (anti-diagonal), 90° (left↔right) and
    135° (main diagonal). On a square patch these are exact flips and transposes."""
    flipped_rows = patches.flip(-2)
    anti_transpose = patches.flip(-1).flip(-2).transpose(-1, -2)
    flipped_cols = patches.flip(-1)
    transpose = patches.transpose(-1, -2)
    if patches.shape[-1] == patches.shape[-2]:
        return torch.stack([flipped_rows, anti_transpose, flipped_cols, transpose], dim=1)
    # Non-square windows: diagonal mirrors by resampling in normalised coordinates.
    matrices = torch.tensor(
        [
            [[1.0, 0.0], [0.0, -1.0]],
            [[0.0, -1.0], [-1.0, 0.0]],
            [[-1.0, 0.0], [0.0, 1.0]],
            [[0.0, 1.0], [1.0, 0.0]],
        ]
    )
    return _warp(patches, matrices)


def shuffled(patches: torch.Tensor, _mask: torch.Tensor) -> torch.Tensor:
    """The patch's pixels in a fixed random order (seeded): colours kept, shape destroyed."""
    batch, channels, height, width = patches.shape
    generator = torch.Generator().manual_seed(SHUFFLE_SEED)
    order = torch.randperm(height * width, generator=generator).to(patches.device)
    flat = patches.reshape(batch, channels, height * width)[:, :, order]
    return flat.reshape(batch, 1, channels, height, width)


IDENTITY = Perturbation("identity", 1, identity)
COLOUR = Perturbation("color", 1, opponent_grey)
ORIENTATION = Perturbation("orientation", len(ORIENTATION_ANGLES), rotations)
SYMMETRY = Perturbation("symmetry", len(SYMMETRY_AXES), mirrors)
SHAPE = Perturbation("shape", 1, shuffled)
ALL = (IDENTITY, COLOUR, ORIENTATION, SYMMETRY, SHAPE)
