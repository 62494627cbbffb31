"""A run's model and images, loaded as they were registered; files changed since are refused.

Workers and the CLI both open runs this way, and keep the last model loaded (:class:`ModelCache`)
for the next job of the same run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analysis.data import ImageFolder, scan_image_folder
from analysis.layers import LayerInfo, list_layers
from analysis.models import LoadedModel, load_model
from server.runs.selection import select_layers
from server.storage.schema import Model, Run


class RunInputError(ValueError):
    """A run's inputs are not what was registered (files changed or disappeared since)."""


class ModelCache:
    """The last model a worker loaded, with its layer list, kept for the next job of the same run.

    Loading and hashing the weights and tracing the receptive fields can take longer than a
    shard's sweep on a GPU. The cached copy is used only while the files it came from are
    unchanged (same size and modification time), so a changed file is still refused.
    """

    def __init__(self) -> None:
        self._key: tuple[Any, ...] | None = None
        self._value: tuple[LoadedModel, list[LayerInfo]] | None = None

    def load(self, model: Model) -> tuple[LoadedModel, list[LayerInfo]]:
        key = (model.id, model.weights_sha256, _stamp(model.weights_path), _stamp(model.spec))
        if key != self._key or self._value is None:
            self._key, self._value = None, None  # free the old model before loading the next
            loaded = load_model(
                model.spec,
                weights=model.weights_path,
                input_size=model.input_shape,
                mean=tuple(model.mean),
                std=tuple(model.std),
            )
            if loaded.weights_sha256 != model.weights_sha256:
                raise RunInputError(
                    f"the weights of model {model.id} ({model.weights_path or model.spec}) "
                    "changed since they were registered; register the model again to analyse "
                    "the new weights"
                )
            self._key = key
            self._value = (loaded, list_layers(loaded.module, loaded.input))
        return self._value


def _stamp(path: str | None) -> tuple[int, int] | None:
    """Size and modification time of a file, if ``path`` names one."""
    if not path:
        return None
    try:
        stat = Path(path).stat()
    except (OSError, ValueError):
        return None
    return stat.st_size, stat.st_mtime_ns


@dataclass
class RunInputs:
    loaded: LoadedModel
    folder: ImageFolder
    available: list[LayerInfo]
    layers: list[LayerInfo]


def open_run_inputs(run: Run, models: ModelCache) -> RunInputs:
    """Load a run's model and dataset as registered, refusing files that changed since."""
    loaded, available = models.load(run.model)
    folder = scan_image_folder(run.dataset.root)
    if folder.fingerprint() != run.dataset.fingerprint:
        raise RunInputError(
            f"the image folder {run.dataset.root} changed since it was registered (files added, "
            "removed or modified); register it again to analyse it as it is now"
        )
    return RunInputs(loaded, folder, available, select_layers(available, run.params["layers"]))
