"""What a run will cost, measured by whoever will compute it: the CLI before an in-process run,
a worker (on its own device) when the new-run form asks before starting, and a queued run's
first job, which notes it in its progress message."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from analysis.data import ImageFolder, scan_image_folder
from analysis.featureviz.targets import Target
from analysis.featureviz.units import estimate_seconds
from analysis.layers import LayerInfo
from analysis.models import LoadedModel
from analysis.resize import ResizePolicy
from server.featureviz.render import render_settings
from server.jobs.context import JobContext
from server.runs.budget import Budget, estimate_run
from server.runs.inputs import RunInputError, RunInputs
from server.runs.selection import select_layers
from server.storage.artifacts import ArtifactStore
from server.storage.schema import Dataset, Job, Model, Run


def run_budget(
    loaded: LoadedModel,
    folder: ImageFolder,
    layers: list[LayerInfo],
    top_k: int,
    batch_size: int,
    resize: str,
    indexes: bool,
    featureviz: dict[str, Any] | None,
    store: ArtifactStore,
    device: str,
) -> Budget:
    """Each stage's estimate for ``layers`` over ``folder`` on ``device``; ``featureviz``: the
    visualisations' render settings when they are asked for."""
    loaded.module.to(device)

    def visualisations() -> float:
        settings = render_settings(featureviz or {})
        return sum(
            estimate_seconds(
                loaded.module, Target(layer.name), layer.channels, loaded.input, settings
            )
            for layer in layers
        )

    return estimate_run(
        loaded,
        folder,
        layers,
        top_k,
        batch_size,
        indexes=indexes,
        policy=ResizePolicy.of(resize),
        featureviz=visualisations if featureviz is not None else None,
        free_bytes=store.free_bytes(),
    )


def run_estimate(context: JobContext) -> dict[str, Any]:
    """The job the new-run form submits: the budget of the run its fields describe."""
    params = context.job.params
    with context.database.session() as session:
        model = session.get(Model, params["model"])
        dataset = session.get(Dataset, params["dataset"])
        if model is None or dataset is None:
            raise RunInputError("the model or the image folder was deleted since")
        context.progress.start("timing a short trial", 1, "trial")
        loaded, available = context.models.load(model)
        root = dataset.root
    folder = scan_image_folder(root)
    layers = select_layers(available, params["layers"] or None)
    budget = run_budget(
        loaded,
        folder,
        layers,
        params["top_k"],
        params["batch_size"],
        params["resize"],
        params["indexes"],
        {} if params["featureviz"] else None,
        context.store,
        context.settings.device,
    )
    context.progress.finish()
    return {
        **budget.record(),
        "device": context.settings.device,
        "layers": len(layers),
        "neurons": sum(layer.channels for layer in layers),
        "images": len(folder.images),
        "advice": budget.advice(indexes=params["indexes"], flags=False) if budget.large else [],
    }


def note_run_estimate(
    context: JobContext, run: Run, inputs: RunInputs, batch_size: int
) -> dict[str, Any]:
    """At the start of a queued run's first shard: the whole run's estimate on this worker,
    kept in view under the job's progress; its record, for the job's result."""
    with context.database.session() as session:
        kinds = set(session.scalars(select(Job.kind).where(Job.run_id == run.id)))
    budget = run_budget(
        inputs.loaded,
        inputs.folder,
        inputs.layers,
        run.params["top_k"],
        batch_size,
        run.params["resize"],
        "indexes" in kinds,
        {} if "featureviz" in kinds else None,
        context.store,
        context.settings.device,
    )
    context.progress.note(f"estimate for the run on {context.settings.device}: "
                          + budget.headline())  # fmt: skip
    return budget.record()
