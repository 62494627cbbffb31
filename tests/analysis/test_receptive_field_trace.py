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
