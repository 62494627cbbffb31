"""Register models, datasets and runs: each is found again by what identifies it."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from server.storage.schema import JOB_ACTIVE, Dataset, DatasetImage, Job, Layer, Model, Run

if TYPE_CHECKING:  # the web process uses this module and must not import torch
    from analysis.data import ImageFolder
    from analysis.layers import LayerInfo
    from analysis.models import LoadedModel


@dataclass(frozen=True)
class RunParams:
    """What, besides the model and the data, decides a run's numbers."""

    layers: tuple[str, ...]
    top_k: int
    resize: str
    jpeg_draft: bool = False  # JPEGs decoded at a reduced DCT scale (analysis.data.load_pixels)

    def __post_init__(self) -> None:
        if not self.layers:  # a run of no layer would sweep for nothing and look done
            raise ValueError("a run records at least one layer")

    def as_json(self) -> dict[str, Any]:
        """The parameters as stored and hashed into the run's key. A later option is left out
        at its default, so runs made before it existed keep their keys."""
        data = asdict(self)
        data["layers"] = list(self.layers)
        if not self.jpeg_draft:
            del data["jpeg_draft"]
        return data


def _digest(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def register_model(
    session: Session, loaded: LoadedModel, layers: list[LayerInfo] | None = None
) -> Model:
    """The model's row, found by identity or created; ``layers`` fills in its layer list."""
    spec = loaded.input
    identity = _digest(
        [loaded.spec, loaded.weights_sha256, *_input_identity(loaded), spec.mean, spec.std]
    )
    model = session.scalar(select(Model).where(Model.identity == identity))
    if model is None:
        model = Model(
            identity=identity,
            spec=loaded.spec,
            weights_path=loaded.weights_path,
            weights_sha256=loaded.weights_sha256,
            input_size=loaded.input.height,
            input_width=loaded.input.width if loaded.input.width != loaded.input.height else None,
            input_channels=loaded.input.channels,
            mean=list(loaded.input.mean),
            std=list(loaded.input.std),
            meta=dict(loaded.metadata),
        )
        session.add(model)
    if layers is not None and model.layers is None:
        from analysis.layers import default_layers

        defaults = set(default_layers(layers))
        model.layers = [
            {**layer.as_json(), "hookable": layer.hookable, "default": layer.name in defaults}
            for layer in layers
        ]
    session.flush()
    return model


def _input_identity(loaded: LoadedModel) -> list[Any]:
    """The input's part of a model's identity; a square RGB input hashes as it always did (one
    size), so models registered before non-square and greyscale input existed are found again."""
    spec = loaded.input
    size: Any = spec.height if spec.height == spec.width else list(spec.size)
    return [size] if spec.channels == 3 else [size, spec.channels]


def register_dataset(session: Session, folder: ImageFolder) -> Dataset:
    fingerprint = folder.fingerprint()
    dataset = session.scalar(select(Dataset).where(Dataset.fingerprint == fingerprint))
    if dataset is not None:
        return dataset
    dataset = Dataset(
        root=str(folder.root.resolve()),
        fingerprint=fingerprint,
        image_count=len(folder.images),
        class_count=len({label for label in folder.labels if label is not None}),
        skipped=list(folder.skipped[:1000]),
    )
    session.add(dataset)
    session.flush()
    session.execute(
        insert(DatasetImage),
        [
            {"dataset_id": dataset.id, "index": i, "path": entry.path, "label": entry.label}
            for i, entry in enumerate(folder.images)
        ],
    )
    return dataset


class RunBusyError(RuntimeError):
    """The run is already being computed by workers."""


def _has_active_jobs(session: Session, run: Run) -> bool:
    active = select(func.count()).select_from(Job)
    return bool(session.scalar(active.where(Job.run_id == run.id, Job.status.in_(JOB_ACTIVE))))


def run_key(model: Model, dataset: Dataset, params: RunParams) -> str:
    """What pins a run: the model's identity, the dataset's fingerprint and the parameters."""
    return _digest([model.identity, dataset.fingerprint, params.as_json()])


def find_or_create_run(
    session: Session, model: Model, dataset: Dataset, params: RunParams, clear: bool = True
) -> tuple[Run, bool]:
    """The run for this model × dataset × params, and whether it already holds finished results.

    A run found unfinished (failed, or interrupted) is cleared so it can be computed again, unless
    ``clear`` is false: the job planner keeps what finished jobs of the run already stored.
    """
    key = run_key(model, dataset, params)
    run = session.scalar(select(Run).where(Run.key == key))
    if run is not None and run.status == "done":
        return run, True
    if run is not None and clear and _has_active_jobs(session, run):
        raise RunBusyError(
            f"run {run.id} is being computed by queued jobs; follow them with "
            f"`neuronscope jobs --run {run.id}`, or cancel them first"
        )
    if run is None:
        run = Run(key=key, model_id=model.id, dataset_id=dataset.id, params=params.as_json())
        session.add(run)
        run.status = "pending"
    elif clear:
        session.execute(delete(Layer).where(Layer.run_id == run.id))
        run.error = None
        run.status = "pending"
    session.flush()
    return run, False
