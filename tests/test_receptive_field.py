"""Receptive fields: the SPEC §2 reference values, branches, and the unclipped window formula."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from analysis.receptive_field import receptive_fields

REFERENCE = [
    ("vgg16", "features.28", 196, 16),
    ("vgg16", "features.30", 212, 32),
    ("alexnet", "features.10", 163, 16),
    ("alexnet", "features.12", 195, 32),
    ("resnet50", "layer4", 427, 32),
    ("resnet18", "layer4", 435, 32),
]


@pytest.mark.parametrize(("model_name", "layer", "size", "stride"), REFERENCE)
def test_reference_values_for_torchvision_models(model_name, layer, size, stride):
    model = torchvision.models.get_model(model_name).eval()
    field = receptive_fields(model, [layer], 224)[layer]
    assert field.size == (size, size)
    assert field.stride == (stride, stride)


class TwoBranches(nn.Module):
    """A 3×3 branch and a dilated 5×5-span branch, concatenated: the union is 5×5."""

    def __init__(self) -> None:
        super().__init__()
        self.narrow = nn.Conv2d(3, 2, 3, padding=1)
        self.wide = nn.Conv2d(3, 2, 3, padding=2, dilation=2)
        self.merge = nn.Conv2d(4, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.merge(torch.cat([self.narrow(x), self.wide(x)], dim=1))


def test_branches_give_the_union_of_windows():
    field = receptive_fields(TwoBranches().eval(), ["narrow", "wide", "merge"], 32)
    assert field["narrow"].size == (3, 3)
    assert field["wide"].size == (5, 5)
    assert field["merge"].size == (5, 5)
    assert field["merge"].offset == (-2, -2)


def test_window_is_unclipped_at_the_border_and_matches_the_gradient_support():
    model = torchvision.models.alexnet().features.eval()
    field = receptive_fields(model, ["10"], 224)["10"]
    assert field.window(0, 0) == (-66, 97, -66, 97)
    # Brute force at an interior position: the input pixels with a gradient are the window.
    image = torch.rand(1, 3, 224, 224, requires_grad=True)
    out = model[:11](image)
    out[0, :, 5, 6].sum().backward()
    rows = torch.nonzero(image.grad[0].abs().sum((0, 2))).flatten()
    cols = torch.nonzero(image.grad[0].abs().sum((0, 1))).flatten()
    r0, r1, c0, c1 = field.window(5, 6)
    assert rows.min() >= r0 and rows.max() < r1
    assert cols.min() >= c0 and cols.max() < c1
