"""Receptive fields traced op by op, checked against the gradient probe on every CNN family."""

from __future__ import annotations

import pytest
import torch

from analysis.layers import list_layers
from analysis.models import CNN_FAMILIES, InputSpec, load_model
from analysis.receptive_field import traced_receptive_fields
from tests.support.probe import receptive_fields

SIZE = 96


def map_layers(model: torch.nn.Module) -> list[str]:
    from analysis.hooks import execution_order

    names: list[str] = []
    for name, _module, output in execution_order(model, torch.zeros(1, 3, SIZE, SIZE)):
        if isinstance(output, torch.Tensor) and output.dim() == 4 and name not in names:
            names.append(name)
    return names


@pytest.mark.parametrize("family", CNN_FAMILIES)
def test_trace_matches_the_gradient_probe(family):
    model = load_model(f"torchvision:{family}", input_size=SIZE).module
    names = map_layers(model)
    traced = traced_receptive_fields(model, names, InputSpec(SIZE))
    # Only an adaptive pooling that upsamples (AlexNet's and VGG's at this small input) is
    # left to the probe.
    untraced = [name for name, field in traced.items() if field is None]
    assert all(name == "avgpool" for name in untraced), untraced
    # The probe grows its input to the field's size: compare the first half of the network
    # (fields up to a few hundred pixels), a dozen layers spread over it.
    candidates = [name for name in names[: len(names) // 2] if name in traced]
    sample = candidates[:: max(1, len(candidates) // 12)]
    probed = receptive_fields(model, sample, SIZE)
    assert {name: traced[name] for name in sample} == probed


@pytest.mark.parametrize(
    ("spec", "layer", "size", "stride"),
    [
        ("torchvision:vgg16", "features.28", 196, 16),
        ("torchvision:vgg16", "features.30", 212, 32),
        ("torchvision:alexnet", "features.10", 163, 16),
        ("torchvision:alexnet", "features.12", 195, 32),
        ("torchvision:resnet50", "layer4", 427, 32),
        ("torchvision:resnet18", "layer4", 435, 32),
    ],
)
def test_listed_layers_keep_the_reference_fields(spec, layer, size, stride):
    loaded = load_model(spec)
    found = {info.name: info for info in list_layers(loaded.module, loaded.input)}[layer]
    assert found.receptive_field.size == (size, size)
    assert found.receptive_field.stride == (stride, stride)


def test_convnext_channels_last_tensors_are_not_listed_as_maps():
    loaded = load_model("torchvision:convnext_tiny", input_size=64)
    names = {info.name for info in list_layers(loaded.module, loaded.input)}
    assert "features.1.0.block.0" in names  # the depthwise convolution: a channel map
    assert "features.1.0.block.3" not in names  # its Linear runs on (N, H, W, C)


def test_transformers_list_their_convolutions_and_say_what_was_left_out(capsys):
    from server.cli.main import main

    assert main(["layers", "torchvision:swin_t", "--json"]) == 0
    captured = capsys.readouterr()
    assert "features.0.0" in captured.out  # the patch embedding is a convolution
    assert "left out" in captured.err and "attention" in captured.err


class _TokenAttention(torch.nn.Module):
    """A hybrid block: every position attends to every other, added back to its residual."""

    def __init__(self) -> None:
        super().__init__()
        self.qkv = torch.nn.Conv2d(4, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = self.qkv(x).flatten(2)
        weights = torch.softmax(tokens.transpose(1, 2) @ tokens, dim=-1)
        return x + (tokens @ weights).view(b, c, h, w)


class _Gate(torch.nn.Module):
    """Squeeze-and-excitation: a 1 × 1 gate from the whole map, broadcast back over it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(x.mean((2, 3), keepdim=True))


def test_what_attention_mixes_is_left_out_and_a_gate_is_not():
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1),
        _Gate(),
        torch.nn.Conv2d(4, 4, 3, padding=1),
        _TokenAttention(),
        torch.nn.Conv2d(4, 4, 3, padding=1),
    ).eval()
    fields = traced_receptive_fields(model, ["0", "1", "2", "3.qkv", "3", "4"], InputSpec(16))
    assert fields["1"].size == (3, 3) and fields["2"].size == (5, 5)  # the gate keeps the map
    assert fields["3.qkv"].size == (5, 5)  # before attention: still a window
    assert fields["3"] is None and fields["4"] is None  # after it: every position sees all
    listed = [layer.name for layer in list_layers(model, InputSpec(16))]
    assert "3.qkv" in listed and "3" not in listed and "4" not in listed
