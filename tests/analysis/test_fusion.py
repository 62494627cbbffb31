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


class Block(nn.Module):
    """ResNet's pattern: the convolution and its norm are attributes, not a Sequential."""

    def __init__(self, shortcut_reads_raw_conv: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(4, 4, 1)
        self.reads_raw = shortcut_reads_raw_conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raw = self.conv1(x)
        out = self.relu(self.bn1(raw))
        return self.conv2(out) + (raw if self.reads_raw else 0)


def randomised(model: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-1, 1)
                module.running_var.uniform_(0.5, 2)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)
    return model.eval()


def test_attribute_pairs_are_found_by_the_probe_and_fold_to_the_same_outputs():
    model = randomised(Block())
    images, probe = torch.rand(2, 3, 9, 9), torch.rand(1, 3, 9, 9)
    before = read(model, ["bn1", "relu"], images)
    with batch_norms_folded(model, ["relu"], probe):
        assert isinstance(model.bn1, nn.Identity) and isinstance(model.conv1, nn.Conv2d)
        folded = read(model, ["bn1", "relu"], images)
    assert isinstance(model.bn1, nn.BatchNorm2d) and model.conv1.bias is not None  # restored
    for name in ("bn1", "relu", "output"):
        torch.testing.assert_close(folded[name], before[name], rtol=1e-5, atol=1e-6)
    with batch_norms_folded(model, ["relu"]):  # without a probe only Sequentials are folded
        assert isinstance(model.bn1, nn.BatchNorm2d)


def test_a_fold_that_would_change_what_another_module_reads_is_undone():
    model = randomised(Block(shortcut_reads_raw_conv=True))
    images, probe = torch.rand(2, 3, 9, 9), torch.rand(1, 3, 9, 9)
    before = read(model, ["conv2"], images)
    with batch_norms_folded(model, [], probe):
        assert isinstance(model.bn1, nn.BatchNorm2d)  # the shortcut reads conv1's raw output
        torch.testing.assert_close(read(model, ["conv2"], images)["output"], before["output"])


def test_every_resnet_norm_folds_and_the_recorded_blocks_read_the_same():
    from torchvision.models import resnet18

    model = randomised(resnet18())
    images = torch.rand(2, 3, 64, 64)
    layers = ["layer2", "layer3.1.bn2"]
    before = read(model, layers, images)
    with batch_norms_folded(model, layers, torch.rand(1, 3, 64, 64)):
        kinds = [type(module) for module in model.modules()]
        assert nn.BatchNorm2d not in kinds and kinds.count(nn.Identity) == 20
        folded = read(model, layers, images)
    assert sum(isinstance(module, nn.BatchNorm2d) for module in model.modules()) == 20
    for name in layers:
        torch.testing.assert_close(folded[name], before[name], rtol=1e-4, atol=1e-4)
