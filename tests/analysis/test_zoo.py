"""Zoo models with the weights already in the local caches, offline: the cache layouts torchvision
and timm write (random weights in their exact formats), the weights loaded exactly, each model's
own input configuration and class names, and one clear line when a file is missing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from analysis.metadata import class_names
from analysis.models import ModelError, load_model
from analysis.zoo.caches import cached_weights
from tests.support.zoo import empty_caches, hub_snapshot, torchvision_checkpoint

timm = pytest.importorskip("timm")


@pytest.fixture
def caches(tmp_path, monkeypatch) -> Path:
    return empty_caches(tmp_path, monkeypatch)


def same_weights(module: torch.nn.Module, state: dict[str, torch.Tensor]) -> bool:
    loaded = module.state_dict()
    return loaded.keys() == state.keys() and all(torch.equal(loaded[k], state[k]) for k in state)


def test_torchvision_weights_by_name_come_from_the_torch_hub_cache(caches):
    state = torchvision_checkpoint(caches, "resnet18", "IMAGENET1K_V1")
    for tag in ("IMAGENET1K_V1", "DEFAULT"):
        loaded = load_model("torchvision:resnet18", weights=tag)
        assert same_weights(loaded.module, state)
    # its evaluation transform: resize 256, centre crop 224, ImageNet's statistics
    assert loaded.input.size == (224, 224)
    assert loaded.input.mean == (0.485, 0.456, 0.406) and loaded.input.std == (0.229, 0.224, 0.225)
    assert loaded.resize.value == "center-crop 256"
    names = class_names(loaded.metadata)
    assert len(names) == 1000 and names[0] == "tench" and names[417] == "balloon"
    assert loaded.weights_path.endswith("resnet18-f37072fd.pth")


def test_timm_weights_by_tag_come_from_the_hugging_face_cache(caches):
    state = hub_snapshot(caches, "resnet18.a1_in1k")
    loaded = load_model("timm:resnet18.a1_in1k")
    assert same_weights(loaded.module, state)
    config = timm.data.resolve_data_config({}, model=loaded.module)
    assert loaded.input.size == tuple(config["input_size"][1:]) == (224, 224)
    assert loaded.input.mean == tuple(config["mean"]) and loaded.input.std == tuple(config["std"])
    assert loaded.resize.value == "center-crop 235 bicubic"  # ⌊224 / crop_pct 0.95⌋
    assert class_names(loaded.metadata)[:2] == ["tench", "goldfish"]
    assert loaded.metadata["neuronscope.source"] == "timm/resnet18.a1_in1k"

    again = load_model("timm:resnet18.a1_in1k", weights=loaded.weights_path)  # as a worker does
    assert same_weights(again.module, state) and "/blobs/" in loaded.weights_path

    overridden = load_model("timm:resnet18.a1_in1k", input_size=96, mean=(0.5,) * 3)
    assert overridden.input.size == (96, 96) and overridden.input.mean == (0.5,) * 3

    bare = load_model("timm:resnet18")  # no tag: random weights, as torchvision:NAME
    assert not same_weights(bare.module, state) and bare.resize.value.startswith("center-crop")
    assert "neuronscope.source" not in bare.metadata

    assert [(w.spec, w.weights) for w in cached_weights()] == [("timm:resnet18.a1_in1k", None)]


def test_a_missing_file_is_one_line_naming_where_it_was_looked_for(caches):
    with pytest.raises(ModelError) as timm_error:
        load_model("timm:resnet18.a1_in1k")
    message = str(timm_error.value)
    assert "\n" not in message and "models--timm--resnet18.a1_in1k/snapshots" in message
    assert str(caches / "hf" / "hub") in message

    with pytest.raises(ModelError) as torchvision_error:
        load_model("torchvision:resnet18", weights="IMAGENET1K_V1")
    message = str(torchvision_error.value)
    assert "\n" not in message and str(caches / "torch" / "hub" / "checkpoints") in message
    assert "resnet18-f37072fd.pth" in message

    with pytest.raises(ModelError, match="has no weights 'IMAGENET9K'"):
        load_model("torchvision:resnet18", weights="IMAGENET9K")
    with pytest.raises(ModelError, match="timm cannot build 'no_such_net'"):
        load_model("timm:no_such_net")


def test_the_zoo_command_lists_both_caches(caches, capsys):
    from tests.support.cli import run_cli

    torchvision_checkpoint(caches, "resnet18", "IMAGENET1K_V1")
    hub_snapshot(caches, "resnet18.a1_in1k")
    code, out, _err = run_cli(capsys, "zoo", "--json")
    assert code == 0
    found = {(entry["model"], entry["weights"]) for entry in json.loads(out)}
    assert found == {("torchvision:resnet18", "IMAGENET1K_V1"), ("timm:resnet18.a1_in1k", None)}
    named = {(entry["architecture"], entry["tag"]) for entry in json.loads(out)}
    assert named == {("resnet18", "IMAGENET1K_V1"), ("resnet18", "a1_in1k")}
    code, out, _err = run_cli(capsys, "zoo")
    assert "--model timm:resnet18.a1_in1k" in out and "--weights IMAGENET1K_V1" in out
