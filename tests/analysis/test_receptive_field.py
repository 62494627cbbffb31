"""Receptive fields: the reference values of docs/algorithms.md §2, branches, and the unclipped
window formula."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from analysis.receptive_field import ReceptiveField
from tests.support.probe import receptive_fields

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


def test_squeeze_excitation_gates_and_prelu_keep_the_window_of_the_map():
    from torchvision.ops import SqueezeExcitation

    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.PReLU(8),
        SqueezeExcitation(8, 2),
        nn.Conv2d(8, 8, 3, padding=1),
    ).eval()
    fields = receptive_fields(model, ["1", "2", "3"], 32)
    # The gate pools the whole map, but it scales channels: windows stay 3 and 5 pixels wide.
    assert fields["2"].size == (3, 3) and fields["3"].size == (5, 5)
    assert fields["3"].offset == (-2, -2)


def test_efficientnet_and_regnet_y_with_squeeze_excitation_are_probed():
    from analysis.models import load_model

    for spec, layer in [
        ("torchvision:efficientnet_b0", "features.2.0.block.1"),
        ("torchvision:regnet_y_400mf", "trunk_output.block1.block1-0.f.se"),
    ]:
        model = load_model(spec, input_size=64).module
        field = receptive_fields(model, [layer], 64)[layer]
        assert field.size[0] < 64 and field.stride[0] in (2, 4, 8)


@pytest.mark.parametrize(
    ("size", "stride", "offset", "image", "grid"),
    [(100, 8, -46, 32, 4), (31, 16, -15, 16, 1), (10, 2, -4, 8, 4), (7, 3, 2, 20, 5)],
)
def test_the_reach_holds_every_image_pixel_any_window_sees_and_no_more(
    size, stride, offset, image, grid
):
    field = ReceptiveField(size=(size, size + 2), stride=(stride, stride), offset=(offset, offset))
    rows = set()
    cols = set()
    for position in range(grid):
        r0, r1, c0, c1 = field.window(position, position)
        rows |= {r - r0 for r in range(r0, r1) if 0 <= r < image}
        cols |= {c - c0 for c in range(c0, c1) if 0 <= c < image + 1}
    reach = field.reach((image, image + 1), (grid, grid))
    assert reach == (min(rows), max(rows) + 1, min(cols), max(cols) + 1)


def test_a_window_many_times_the_image_reaches_a_small_part_of_it():
    # DenseNet-121's last block at 224 px: 2,071 px windows, stride 32, a 7 × 7 map.
    field = ReceptiveField(size=(2071, 2071), stride=(32, 32), offset=(-1023, -1023))
    r0, r1, c0, c1 = field.reach((224, 224), (7, 7))
    assert (r1 - r0, c1 - c0) == (416, 416)
