"""Zoo caches as torchvision and the Hugging Face hub write them, filled with random weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torchvision

from analysis.safetensors_io import save_safetensors


def empty_caches(root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Empty torch hub and Hugging Face caches under ``root``, offline."""
    monkeypatch.setenv("TORCH_HOME", str(root / "torch"))
    monkeypatch.setenv("HF_HOME", str(root / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return root


def torchvision_checkpoint(root: Path, name: str, tag: str) -> dict[str, torch.Tensor]:
    """Random weights where torchvision downloads ``tag``: TORCH_HOME/hub/checkpoints/<file>."""
    torch.manual_seed(7)
    state = torchvision.models.get_model(name).state_dict()
    url = torchvision.models.get_model_weights(name)[tag].url
    path = root / "torch" / "hub" / "checkpoints" / url.rsplit("/", 1)[1]
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    return state


def hub_snapshot(root: Path, name: str) -> dict[str, torch.Tensor]:
    """Random weights as the hub cache keeps timm's ``name``: a blob, linked from the snapshot
    that refs/main names, beside its config.json."""
    torch.manual_seed(7)
    import timm

    model = timm.create_model(name)
    state = {key: value.contiguous() for key, value in model.state_dict().items()}
    repo = root / "hf" / "hub" / f"models--timm--{name}"
    blob = repo / "blobs" / "0f1e2d"
    blob.parent.mkdir(parents=True)
    save_safetensors(state, blob)
    snapshot = repo / "snapshots" / "c0ffee"
    snapshot.mkdir(parents=True)
    (snapshot / "model.safetensors").symlink_to(Path("../../blobs/0f1e2d"))
    (snapshot / "config.json").write_text(json.dumps({"architecture": name.split(".")[0]}))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("c0ffee")
    return state
