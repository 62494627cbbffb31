"""Where the zoos keep downloaded weights on a researcher's disk, read as they read them offline.

- torch hub (torchvision): ``$TORCH_HOME/hub/checkpoints/<file name of the weights' URL>``
  (``TORCH_HOME`` defaults to ``$XDG_CACHE_HOME/torch``, else ``~/.cache/torch``);
- Hugging Face hub (timm): ``$HF_HUB_CACHE/models--<org>--<name>/snapshots/<revision>/<file>``
  (``HF_HUB_CACHE`` defaults to ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``); the
  revision is the one ``refs/main`` names, else the newest snapshot that has the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch


def torch_hub_checkpoints() -> Path:
    """The folder torchvision's weights are downloaded to (torch's own rule for it)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def hf_hub_cache() -> Path:
    """The Hugging Face hub's cache folder, by its environment variables' rule."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or Path(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "huggingface"
    )
    return Path(home).expanduser() / "hub"


def hf_repo_folder(repo_id: str) -> Path:
    """Where the hub caches ``org/name``: ``models--org--name``."""
    return hf_hub_cache() / ("models--" + repo_id.replace("/", "--"))


def hf_cached_file(repo_id: str, filename: str) -> Path | None:
    """``filename`` of ``repo_id`` as the hub cache holds it (links resolved), or None."""
    repo = hf_repo_folder(repo_id)
    snapshots = repo / "snapshots"
    main = repo / "refs" / "main"
    if main.is_file():
        chosen = snapshots / main.read_text().strip() / filename
        if chosen.is_file():
            return chosen.resolve()
    found = [snapshot / filename for snapshot in _folders(snapshots)]
    found = [path for path in found if path.is_file()]
    if not found:
        return None
    return max(found, key=lambda path: path.stat().st_mtime).resolve()


def hf_repos(org: str) -> list[tuple[str, Path]]:
    """Every cached repository of ``org`` as (name, its folder)."""
    prefix = f"models--{org}--"
    return sorted(
        (folder.name.removeprefix(prefix), folder)
        for folder in _folders(hf_hub_cache())
        if folder.name.startswith(prefix)
    )


def _folders(parent: Path) -> list[Path]:
    try:
        return [path for path in parent.iterdir() if path.is_dir()]
    except OSError:
        return []


@dataclass(frozen=True)
class CachedWeights:
    """Pretrained weights found in a local cache, as a spec ``analyze`` takes."""

    spec: str  # what to pass as --model
    weights: str | None  # what to pass as --weights (torchvision's enum name), if anything
    path: Path
    bytes: int


def cached_weights() -> list[CachedWeights]:
    """Every torchvision checkpoint and timm safetensors file in the local caches that names a
    model these zoos build."""
    return [*_torchvision_cached(), *_timm_cached()]


def _torchvision_cached() -> list[CachedWeights]:
    folder = torch_hub_checkpoints()
    files = {path.name: path for path in _files(folder)}
    if not files:
        return []
    import torchvision

    found = []
    for name in torchvision.models.list_models(module=torchvision.models):
        for tag, entry in torchvision.models.get_model_weights(name).__members__.items():
            path = files.get(Path(urlparse(entry.url).path).name)
            if path is not None and tag != "DEFAULT":
                found.append(CachedWeights(f"torchvision:{name}", tag, path, path.stat().st_size))
    return found


def _timm_cached() -> list[CachedWeights]:
    found = []
    for name, _folder in hf_repos("timm"):
        path = hf_cached_file(f"timm/{name}", "model.safetensors")
        if path is not None:
            found.append(CachedWeights(f"timm:{name}", None, path, path.stat().st_size))
    return found


def _files(folder: Path) -> list[Path]:
    try:
        return [path for path in folder.iterdir() if path.is_file()]
    except OSError:
        return []
