"""Layer listings of unusual and torchvision models: fields as the gradient probe finds them,
and the default post-activation layers."""

from __future__ import annotations

import pytest

SMALL = ("--top-k", "3", "--workers", "0", "--no-indexes", "--json")


@pytest.mark.parametrize(
    ("factory", "channels"), [("varied_tuple_net", 3), ("darkness_detector", 1)]
)
def test_unusual_models_trace_the_fields_the_gradient_probe_finds(factory, channels):
    """PReLU, SE, channels-last LayerNorm, tuple output and a greyscale input, traced on a
    non-square input, against the probe (an interior window does not depend on the input's
    shape)."""
    from analysis.layers import list_layers
    from analysis.models import InputSpec, load_model
    from tests.support.probe import receptive_fields

    model = load_model(f"tests.support.models:{factory}").module
    spec = InputSpec(size=(24, 40), mean=(0.0,), std=(1.0,), channels=channels)
    traced = {layer.name: layer.receptive_field for layer in list_layers(model, spec)}
    names = [name for name, field in traced.items() if max(field.size) < 24]
    assert len(names) >= 3
    assert receptive_fields(model, names, 32, channels=channels) == {n: traced[n] for n in names}


@pytest.mark.parametrize(
    ("family", "first", "last", "count"),
    [
        ("resnet18", "relu", "layer4.1", 9),  # the stem's ReLU, then each residual block
        ("googlenet", "conv1", "inception5b.branch4.1", 57),  # each BasicConv2d, post-ReLU
        ("efficientnet_b0", "features.0.2", "features.8.2", 49),  # SE gates left out
        ("convnext_tiny", "features.0.0", "features.7.2", 22),  # each CNBlock
    ],
)
def test_default_layers_read_each_convolution_after_its_activation(family, first, last, count):
    from analysis.layers import default_layers, list_layers
    from analysis.models import load_model

    loaded = load_model(f"torchvision:{family}", input_size=64)
    chosen = default_layers(list_layers(loaded.module, loaded.input))
    assert (chosen[0], chosen[-1], len(chosen)) == (first, last, count)
    assert not any(".fc" in name or "se_layer" in name for name in chosen)
