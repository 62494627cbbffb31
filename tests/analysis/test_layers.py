"""Layer listings of unusual and torchvision models: fields as the gradient probe finds them,
and the default post-activation layers."""

from __future__ import annotations

import pytest
import torch

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


def test_a_networks_own_convolutions_and_activations_are_recognised():
    """A normaliser-free net (weight-standardised Conv2d subclasses, a scaled-GELU module of its
    own) is read after its activations, as a ReLU network is."""
    from analysis.layers import default_layers, is_activation, list_layers
    from analysis.models import InputSpec, load_model
    from tests.support.models import ScaledGELU

    model = load_model("tests.support.models:normaliser_free_net").module
    layers = list_layers(model, InputSpec(size=16, mean=(0, 0, 0), std=(1, 1, 1)))
    assert [layer.role for layer in layers] == ["convolution", "activation"] * 2
    assert default_layers(layers) == ["1", "3"]
    assert is_activation(ScaledGELU()) and not is_activation(torch.nn.Sequential(ScaledGELU()))
    assert not is_activation(torch.nn.Linear(2, 2)) and not is_activation(torch.nn.Identity())


def test_a_model_without_default_layers_is_refused_before_its_sweep(capsys, data_dir, tmp_path):
    from server.storage.db import Database
    from server.storage.schema import Run
    from tests.support.cli import run_cli
    from tests.support.images import write_square_folder

    folder = write_square_folder(tmp_path / "squares", per_class=2)
    args = ("--model", "tests.support.models:no_convolution_net", "--input-size", "16")
    code, _out, err = run_cli(capsys, "analyze", *args, "--data", str(folder), *SMALL)
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "no default layer" in err and "neuronscope layers" in err and "--layers" in err
    code, _out, err = run_cli(
        capsys, "analyze", *args, "--data", str(folder), "--layers", "9*", *SMALL
    )
    assert code == 1 and "no layer matches '9*'" in err
    with Database(f"sqlite:///{data_dir / 'neuronscope.db'}").session() as session:
        assert session.query(Run).count() == 0  # nothing swept, nothing stored as done
