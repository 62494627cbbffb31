"""Model specs and weights: safe loading only, clear errors, recorded input conventions."""

from __future__ import annotations

import pickle

import pytest
import torch

from analysis.metadata import META_INPUT_SIZE, META_MEAN
from analysis.models import ModelError, load_model
from analysis.safetensors_io import load_safetensors, save_safetensors
from tests.support.models import random_net


def test_safetensors_round_trip_with_metadata(tmp_path):
    tensors = {"a": torch.arange(6, dtype=torch.float32).view(2, 3), "n": torch.tensor(7)}
    save_safetensors(tensors, tmp_path / "w.safetensors", {"k": "v"})
    loaded, metadata = load_safetensors(tmp_path / "w.safetensors")
    assert torch.equal(loaded["a"], tensors["a"]) and int(loaded["n"]) == 7
    assert metadata == {"k": "v"}


def test_weights_load_from_safetensors_and_state_dict(tmp_path):
    state = random_net().state_dict()
    save_safetensors(state, tmp_path / "w.safetensors", {META_INPUT_SIZE: "48", META_MEAN: "0,0,0"})
    torch.save(state, tmp_path / "w.pth")
    from_safetensors = load_model("tests.support.models:random_net", tmp_path / "w.safetensors")
    from_pth = load_model("tests.support.models:random_net", tmp_path / "w.pth")
    assert from_safetensors.weights_sha256 == from_pth.weights_sha256
    assert from_safetensors.input.size == (48, 48) and from_safetensors.input.mean == (0, 0, 0)
    assert from_pth.input.size == (224, 224)
    assert load_model(
        "tests.support.models:random_net", tmp_path / "w.pth", input_size=64
    ).input.size == (64, 64)


class Payload:
    """An object whose unpickling would run code."""

    def __reduce__(self):
        return (print, ("this must never run",))


def test_a_pickle_that_needs_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps({"weight": Payload()}, protocol=2))
    with pytest.raises(ModelError, match="refuses"):
        load_model("tests.support.models:random_net", path)


def test_bad_specs_and_mismatched_weights_have_clear_messages(tmp_path):
    with pytest.raises(ModelError, match="unknown torchvision model"):
        load_model("torchvision:not_a_net")
    with pytest.raises(ModelError, match="cannot import"):
        load_model("no_such_module:factory")
    with pytest.raises(ModelError, match="unrecognised model spec"):
        load_model("just-a-word")
    torch.save({"unrelated": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(ModelError, match="do not fit"):
        load_model("tests.support.models:random_net", tmp_path / "other.pth")
    with pytest.raises(ModelError, match="TorchScript"):
        load_model(str(tmp_path / "scripted.pt"))
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 4)
    with pytest.raises(ModelError, match="safetensors"):
        load_model("tests.support.models:random_net", tmp_path / "junk.safetensors")


def test_random_init_is_seeded_so_runs_are_reproducible():
    first = load_model("torchvision:alexnet").weights_sha256
    assert first == load_model("torchvision:alexnet").weights_sha256


def test_exported_program_files_are_hookable(tmp_path):
    from analysis.layers import list_layers

    model = random_net()
    batch = torch.export.Dim("batch", min=1, max=512)
    program = torch.export.export(model, (torch.zeros(2, 3, 32, 32),), dynamic_shapes=({0: batch},))
    torch.export.save(program, tmp_path / "net.pt2")
    loaded = load_model(str(tmp_path / "net.pt2"), input_size=32)
    names = {layer.name: layer for layer in list_layers(loaded.module, loaded.input)}
    assert names["3"].receptive_field.size == (8, 8)


def test_input_sizes_and_normalisation_numbers_parse_or_say_why():
    from analysis.models import ModelError, parse_numbers, parse_size

    assert parse_size("224") == (224, 224) and parse_size("256,128") == (256, 128)
    assert parse_size("64x32") == (64, 32)
    for bad, reason in [("4,x", "N or H,W"), ("4", "at least 8"), ("", "N or H,W")]:
        with pytest.raises(ModelError, match=reason):
            parse_size(bad)
    assert parse_numbers("0.5") == (0.5,) and parse_numbers("1,2,3") == (1.0, 2.0, 3.0)
    with pytest.raises(ModelError, match="R,G,B or one"):
        parse_numbers("1,2")
