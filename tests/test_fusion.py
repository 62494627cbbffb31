"""Batch norms folded into convolutions: the same outputs, hooks on the norm still read them."""

from __future__ import annotations

import torch
from torch import nn

from analysis.fusion import batch_norms_folded
from analysis.hooks import layer_hooks


def conv_bn_relu() -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 1))
    with torch.no_grad():
        model[1].running_mean.uniform_(-1, 1)
        model[1].running_var.uniform_(0.5, 2)
        model[1].weight.uniform_(0.5, 1.5)
        model[1].bias.uniform_(-0.5, 0.5)
    return model.eval()


def read(model: nn.Module, layers: list[str], images: torch.Tensor) -> dict[str, torch.Tensor]:
    found: dict[str, torch.Tensor] = {}
    with layer_hooks(model, layers, lambda name, out: found.setdefault(name, out.clone())):
        found["output"] = model(images)
    return found


def test_folded_norms_give_the_same_outputs_and_the_model_is_restored():
    model = conv_bn_relu()
    images = torch.rand(2, 3, 9, 9)
    before = read(model, ["1", "2"], images)
    with batch_norms_folded(model):
        assert isinstance(model[0], nn.Conv2d) and isinstance(model[1], nn.Identity)
        folded = read(model, ["1", "2"], images)
    assert isinstance(model[1], nn.BatchNorm2d)  # restored
    for name in ("1", "2", "output"):
        torch.testing.assert_close(folded[name], before[name], rtol=1e-5, atol=1e-6)


def test_a_recorded_convolution_keeps_its_own_output():
    model = conv_bn_relu()
    images = torch.rand(2, 3, 9, 9)
    with batch_norms_folded(model, recorded=["0"]):
        assert isinstance(model[1], nn.BatchNorm2d)
        folded = read(model, ["0"], images)
    torch.testing.assert_close(folded["0"], read(model, ["0"], images)["0"])
