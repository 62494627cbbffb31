"""Turn "analyse this model over this dataset" into jobs.

A run becomes sweep shard jobs (independent, any worker) → one merge job (exact top-K merge, NFs,
then the layers appear in the UI) → one index job per layer (selectivity indexes and physiology).
A run's shard plan is fixed by its first submission; submitting the run again returns the same
jobs, reviving those that failed or were cancelled, and keeps what finished jobs stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from analysis.shards import plan_shards
from server.decompositions.read import params_key
from server.jobs.state import JobSpec, submit
from server.storage.schema import Dataset, Decomposition, Job, Run

SHARD_ATTEMPTS = 3


@dataclass(frozen=True)
class PlanOptions:
    """How to split the work; none of these change the run's numbers."""

    shards: int = 1
    batch_size: int = 64
    indexes: bool = True
    # Render settings of the feature visualisations of every analysed layer (None: none).
    featureviz: dict[str, Any] | None = None


def plan_analysis(session: Session, run: Run, options: PlanOptions) -> tuple[list[Job], list[int]]:
    """The run's jobs, created or found, and the ids that need a queue message (caller sends
    them after committing)."""
    jobs: list[Job] = []
    to_send: list[int] = []

    def add(spec: JobSpec) -> Job:
        job, ready = submit(session, spec)
        jobs.append(job)
        if ready:
            to_send.append(job.id)
        return job

    merge_id: tuple[int, ...] = ()
    if run.status != "done":
        shard_ids = []
        shards, batch_size = _shard_plan(session, run, options)
        for shard in shards:
            job = add(
                JobSpec(
                    kind="sweep",
                    identity=[run.key, shard.start, shard.stop, batch_size],
                    params={"start": shard.start, "end": shard.stop, "batch_size": batch_size},
                    run_id=run.id,
                    max_attempts=SHARD_ATTEMPTS,
                )
            )
            shard_ids.append(job.id)
        merge = add(
            JobSpec(
                kind="merge",
                identity=[run.key],
                run_id=run.id,
                depends_on=tuple(shard_ids),
            )
        )
        merge_id = (merge.id,)
    after_layer: dict[str, tuple[int, ...]] = dict.fromkeys(run.params["layers"], merge_id)
    if options.indexes and not (run.status == "done" and run.stats.get("indexes")):
        for layer in run.params["layers"]:
            job = add(
                JobSpec(
                    kind="indexes",
                    identity=[run.key, layer],
                    params={"layer": layer},
                    run_id=run.id,
                    depends_on=merge_id,
                )
            )
            after_layer[layer] = (job.id,)
    if options.featureviz is not None:
        for layer in run.params["layers"]:
            add(featureviz_job(run, {"layer": layer}, options.featureviz, after_layer[layer]))
    if run.status not in ("done", "running"):
        run.status = "queued"
        run.error = None
    return jobs, to_send


def featureviz_job(
    run: Run, target: dict[str, Any], settings: dict[str, Any], depends_on: tuple[int, ...] = ()
) -> JobSpec:
    """Visualisations of one layer's channels (``{"layer": name}``) or of the output's classes
    (``{"output": index or None}``), optionally only ``target["units"]``."""
    params = {
        "layer": target.get("layer"),
        "output": target.get("output"),
        "units": target.get("units"),
        "settings": settings,
    }
    return JobSpec(
        kind="featureviz",
        identity=[run.key, params],
        params=params,
        run_id=run.id,
        depends_on=depends_on,
    )


def _shard_plan(session: Session, run: Run, options: PlanOptions) -> tuple[list[range], int]:
    """The shards (and batch size) already planned for ``run``, or a new plan."""
    planned = session.scalars(select(Job.params).where(Job.run_id == run.id, Job.kind == "sweep"))
    ranges = sorted(planned, key=lambda params: params["start"])
    if ranges:
        shards = [range(params["start"], params["end"]) for params in ranges]
        return shards, ranges[0]["batch_size"]
    shards = plan_shards(run.dataset.image_count, options.shards, options.batch_size)
    return shards, options.batch_size


def plan_decomposition(
    session: Session,
    run: Run,
    source: str,
    upload_id: int | None,
    image_index: int | None,
    params: dict[str, Any],
) -> tuple[Decomposition, Job | None, bool]:
    """The decomposition of one image for ``run``, found or created, and its job (None once it
    is done: the same image is decomposed once); whether the job needs a queue message."""
    key = params_key(params)
    decomposition = session.scalar(
        select(Decomposition).where(
            Decomposition.run_id == run.id,
            Decomposition.source == source,
            Decomposition.params_key == key,
        )
    )
    if decomposition is None:
        decomposition = Decomposition(
            run_id=run.id,
            source=source,
            upload_id=upload_id,
            image_index=image_index,
            params=params,
            params_key=key,
        )
        session.add(decomposition)
        session.flush()
    if decomposition.result:
        return decomposition, None, False
    job, ready = submit(
        session,
        JobSpec(
            kind="decompose",
            identity=[run.key, source, key],
            params={"decomposition": decomposition.id},
            run_id=run.id,
        ),
    )
    decomposition.job_id = job.id
    return decomposition, job, ready


def plan_composition(session: Session, run: Run, request: dict[str, Any]) -> tuple[Job, bool]:
    """The job that composes one neuron from a shallower layer (docs/algorithms.md §6)."""
    return submit(
        session,
        JobSpec(
            kind="compose",
            identity=[run.key, request],
            params=request,
            run_id=run.id,
        ),
    )


def plan_nf_array(session: Session, run: Run, layer: str, channel: int) -> tuple[Job, bool]:
    """The job that computes one neuron's float NF from its top-K (docs/algorithms.md §3)."""
    params = {"layer": layer, "channel": channel}
    return submit(
        session,
        JobSpec(kind="nf_array", identity=[run.key, params], params=params, run_id=run.id),
    )


def plan_probe(session: Session, run: Run, dataset: Dataset, images: int) -> tuple[Job, bool]:
    """The job that records ``run``'s responses to ``images`` images of ``dataset`` (the probe
    set two runs' neurons are matched by)."""
    params = {"dataset": dataset.id, "images": images}
    return submit(
        session,
        JobSpec(
            kind="probe",
            identity=[run.key, dataset.fingerprint, images],
            params=params,
            run_id=run.id,
        ),
    )
