"""Hand-built networks with known answers, importable as ``tests.tiny_models:NAME`` model specs."""

from __future__ import annotations

import torch
from torch import nn


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
