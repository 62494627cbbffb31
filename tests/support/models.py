"""Hand-built networks with known answers, importable as ``tests.support.models:NAME`` model
specs."""

from __future__ import annotations

import time

import torch
from torch import nn

# Command-line model options for red_detector: raw [0, 1] pixels, 32 px input.
RED_DETECTOR_ARGS = (
    "--model",
    "tests.support.models:red_detector",
    "--mean",
    "0,0,0",
    "--std",
    "1,1,1",
    "--input-size",
    "32",
)


def red_detector() -> nn.Sequential:
    """conv(3→3, 3×3) + ReLU + pool + conv(3→2, 3×3) + ReLU.

    First conv, channel 0: R − (G + B)/2 (fires on red); channel 1: luminance (R + G + B)/3;
    channel 2: never fires (all-negative bias). Use with --mean 0,0,0 --std 1,1,1.
    """
    first = nn.Conv2d(3, 3, 3, padding=1)
    second = nn.Conv2d(3, 2, 3, padding=1)
    with torch.no_grad():
        first.weight.zero_()
        first.bias.zero_()
        first.weight[0, 0] = 1.0 / 9
        first.weight[0, 1] = -0.5 / 9
        first.weight[0, 2] = -0.5 / 9
        first.weight[1] = 1.0 / 27
        first.bias[2] = -10.0
        second.weight.zero_()
        second.bias.zero_()
        second.weight[0, 0] = 1.0 / 9
        second.weight[1, 1] = 1.0 / 9
    return nn.Sequential(first, nn.ReLU(), nn.MaxPool2d(2), second, nn.ReLU())


def random_net() -> nn.Sequential:
    """A small seeded random network with a residual-free chain, for brute-force comparisons."""
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 5, 3, stride=2),
        nn.ReLU(),
    ).eval()


def two_convolutions() -> nn.Sequential:
    """Conv(3→6, 3×3) → ReLU → Conv(6→8, 3×3, stride 2) → ReLU, seeded: exported with dynamic
    sizes, its program refuses inputs under 7 px, which layer ``1``'s 3 px crops are."""
    torch.manual_seed(2)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3), nn.ReLU(), nn.Conv2d(6, 8, 3, stride=2), nn.ReLU()
    ).eval()


def single_filter(weights: torch.Tensor, bias: float = 0.0) -> nn.Sequential:
    """One conv channel with the given (3, k, k) weights, no padding, followed by a ReLU."""
    size = weights.shape[-1]
    conv = nn.Conv2d(3, 1, size, padding=size // 2)
    with torch.no_grad():
        conv.weight.copy_(weights[None])
        conv.bias.fill_(bias)
    return nn.Sequential(conv, nn.ReLU()).eval()


def grey_kernel(profile: torch.Tensor) -> torch.Tensor:
    """A (3, k, k) kernel applying the same (k, k) profile to R, G and B (a luminance filter)."""
    return (profile / 3.0)[None].expand(3, -1, -1).clone()


def vertical_edge_kernel(size: int = 7) -> torch.Tensor:
    """Second derivative across x, constant along y: responds to vertical edges and lines."""
    profile = torch.zeros(size, size)
    centre = size // 2
    profile[:, centre - 1] = -1.0
    profile[:, centre] = 2.0
    profile[:, centre + 1] = -1.0
    return grey_kernel(profile / size)


def centre_surround_kernel(size: int = 7) -> torch.Tensor:
    """An isotropic difference of Gaussians: ON centre, OFF surround."""
    coords = torch.arange(size, dtype=torch.float32) - size // 2
    radius2 = coords[:, None] ** 2 + coords[None, :] ** 2
    centre = torch.exp(-radius2 / (2 * 0.8**2))
    surround = torch.exp(-radius2 / (2 * 2.0**2))
    return grey_kernel(centre / centre.sum() - surround / surround.sum())


def gaussian_blob_kernel(size: int = 7) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float32) - size // 2
    blob = torch.exp(-(coords[:, None] ** 2 + coords[None, :] ** 2) / (2 * 1.5**2))
    return grey_kernel(blob / blob.sum())


def corner_kernel(size: int = 7) -> torch.Tensor:
    """Bright top-left quadrant against the rest: has no mirror symmetry."""
    profile = -torch.ones(size, size)
    profile[: size // 2 + 1, : size // 2 + 1] = 1.0
    return grey_kernel(profile / size**2)


def colour_kernel(red: float, green: float, blue: float, size: int = 1) -> torch.Tensor:
    """The same colour weighting at every tap of a (3, size, size) kernel."""
    weights = torch.tensor([red, green, blue])[:, None, None]
    return (weights / size**2).expand(3, size, size).clone()


class Pause(nn.Module):
    """Sleeps on every batch of more than one image, so that a sweep lasts long enough to be
    killed mid-way (the one-image probes that list layers and receptive fields stay quick)."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > 1:
            time.sleep(self.seconds)
        return x


def slow_red_detector() -> nn.Sequential:
    """red_detector behind a 0.5 s pause per batch; its ReLUs are layers "2" and "5"."""
    return nn.Sequential(Pause(0.5), *red_detector())


class _ChannelsLastNorm(nn.Module):
    """LayerNorm over channels on a (N, H, W, C) view, as ConvNeXt does."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class _Varied(nn.Module):
    def __init__(self, output: str) -> None:
        super().__init__()
        from torchvision.ops import SqueezeExcitation

        torch.manual_seed(2)
        self.output = output
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.PReLU(8),
            nn.Conv2d(8, 8, 3, padding=1),
            nn.LeakyReLU(0.1),
            SqueezeExcitation(8, 4),
            nn.Conv2d(8, 12, 3, stride=2, padding=1),
            nn.ELU(),
            _ChannelsLastNorm(12),
            nn.Conv2d(12, 12, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(12, 16, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(16, 16, 1),
            nn.Hardswish(),
        )
        self.head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor):
        logits = self.head(self.features(x).mean((2, 3)))
        if self.output == "tuple":
            return logits, logits.detach() * 0
        return {"logits": logits, "features": x}


def varied_tuple_net() -> nn.Module:
    """PReLU, LeakyReLU, squeeze-excitation, ELU, channels-last LayerNorm, GELU, SiLU and
    Hardswish in one network with a tuple output (logits, auxiliary)."""
    return _Varied("tuple").eval()


def varied_dict_net() -> nn.Module:
    """The same network with a dict output."""
    return _Varied("dict").eval()


def fixed_size_net() -> nn.Module:
    """A network whose classifier expects a 12 × 12 input: any other size cannot go through."""
    return nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 10 * 10, 2)
    ).eval()


def darkness_detector() -> nn.Sequential:
    """A greyscale model: conv(1→2, 3×3) + ReLU + pool + conv(2→2, 3×3) + ReLU.

    First conv, channel 0: 0.5 − mean luminance (fires on dark places); channel 1: a vertical
    edge. On the square folder, with --mean 0 --std 1, the darkest squares are the blue ones
    (luma 0.114 against red's 0.299 and green's 0.470; the background is 0.5): an RGB mean
    (R + G + B)/3 would rank red and blue alike.
    """
    first = nn.Conv2d(1, 2, 3, padding=1)
    second = nn.Conv2d(2, 2, 3, padding=1)
    with torch.no_grad():
        first.weight.zero_()
        first.weight[0, 0] = -1.0 / 9
        first.bias.copy_(torch.tensor([0.5, 0.0]))
        first.weight[1, 0, :, 0] = -1.0
        first.weight[1, 0, :, 2] = 1.0
        second.weight.zero_()
        second.bias.zero_()
        second.weight[0, 0] = 1.0 / 9
        second.weight[1, 1] = 1.0 / 9
    return nn.Sequential(first, nn.ReLU(), nn.MaxPool2d(2), second, nn.ReLU()).eval()


class ScaledStdConv2d(nn.Conv2d):
    """A weight-standardised convolution of a normaliser-free net (a subclass of Conv2d)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight - self.weight.mean(dim=(1, 2, 3), keepdim=True)
        return nn.functional.conv2d(x, weight, self.bias, self.stride, self.padding)


class ScaledGELU(nn.Module):
    """An activation of a network's own: GELU times a constant (no known activation class)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.gelu(x) * 1.7015


def normaliser_free_net() -> nn.Sequential:
    """Convolutions and activations that are none of torch's classes."""
    torch.manual_seed(0)
    return nn.Sequential(
        ScaledStdConv2d(3, 4, 3, padding=1),
        ScaledGELU(),
        ScaledStdConv2d(4, 6, 3, padding=1, stride=2),
        ScaledGELU(),
    )


def no_convolution_net() -> nn.Sequential:
    """Pools and a linear read-out: nothing a default layer could be."""
    return nn.Sequential(nn.AvgPool2d(2), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2))


def _probe_pair(width: int, seed: int) -> nn.Sequential:
    """conv(3→4) + ReLU + conv(4→width) + ReLU: the first conv shared by the pair (seed 0, its
    channel 0 also reading brightness, so it varies over images), the second seeded apart."""
    torch.manual_seed(0)
    first = nn.Conv2d(3, 4, 3, padding=1)
    with torch.no_grad():
        first.weight[0] = first.weight[0].abs() + 0.1
    torch.manual_seed(seed)
    second = nn.Conv2d(4, width, 3, padding=1)
    return nn.Sequential(first, nn.ReLU(), second, nn.ReLU()).eval()


def probe_pair_a() -> nn.Sequential:
    """With :func:`probe_pair_b`, two networks of different widths with one neuron in common:
    this one's layer ``3`` channel 2 reads its first layer's channel 0."""
    model = _probe_pair(6, seed=1)
    with torch.no_grad():
        model[2].weight[2].zero_()
        model[2].weight[2, 0] = 1.0 / 9
        model[2].bias[2] = 0.0
    return model


def probe_pair_b() -> nn.Sequential:
    """Eight channels at layer ``3``, seeded apart from :func:`probe_pair_a`'s six, except
    channel 5: a copy of probe_pair_a's channel 2 (same weights on the same first layer)."""
    model = _probe_pair(8, seed=2)
    with torch.no_grad():
        model[2].weight[5] = probe_pair_a()[2].weight[2]
        model[2].bias[5] = 0.0
    return model
