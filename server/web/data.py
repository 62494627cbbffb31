"""One function per page computes its data; HTML, JSON and CSV are renderings of it."""

from __future__ import annotations

from collections import OrderedDict
from threading import Lock
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.decompositions.read import list_decompositions
from server.featureviz.read import featureviz_records, latest_featureviz
from server.jobs.read import job_record, run_stages
from server.runs.read import get_layer, get_run, layer_summary, neuron_detail, run_summary
from server.storage.artifacts import ArtifactStore
from server.storage.errors import NotFoundError
from server.storage.schema import INDEX_NAMES, JOB_ACTIVE, Job, Layer, Neuron, NeuronIndex, Run
from server.web.table_query import TableQuery, apply_query

NEURON_COLUMNS: dict[str, type] = {
    "channel": int,
    "dead": bool,
    "mean": float,
    "max": float,
    **dict.fromkeys(INDEX_NAMES, float),
    "color_bounded": float,
    "double_opponent": float,
    "top_class": str,
    "spectral_class": str,
    "spatial_class": str,
}
OUTPUT = "@output"
META_CLASSES = "neuronscope.classes"  # analysis.models.META_CLASSES (the web imports no torch)
INDEX_LABELS = {
    "color": "colour",
    "orientation": "orientation",
    "symmetry": "symmetry",
    "class": "class",
    "shape": "shape",
}


def home_data(session: Session) -> dict[str, Any]:
    runs = session.scalars(select(Run).order_by(Run.id.desc())).all()
    return {"runs": [run_summary(run) for run in runs]}


def run_data(session: Session, run_id: int) -> dict[str, Any]:
    run = get_run(session, run_id)
    layers = []
    for layer in run.layers:
        entry = layer_summary(layer)
        entry["summary"] = layer.summary or {}
        layers.append(entry)
    stages = run_stages(session, run_id)
    active = any(status in JOB_ACTIVE for stage in stages for status in stage["statuses"])
    return {
        "run": run_summary(run),
        "layers": layers,
        "stages": stages,
        "active": active,
        "decompositions": list_decompositions(session, run_id),
    }


class LayerTableCache:
    """Pivoted neuron tables of finished runs, which never change, kept in memory (LRU)."""

    def __init__(self, capacity: int = 64) -> None:
        self.capacity = capacity
        self._tables: OrderedDict[tuple[int, bool], list[dict[str, Any]]] = OrderedDict()
        self._lock = Lock()

    def rows(self, session: Session, layer: Layer) -> list[dict[str, Any]]:
        # A finished layer changes once more: when index jobs add its indexes (and summary).
        key = (layer.id, layer.summary is not None)
        with self._lock:
            if key in self._tables:
                self._tables.move_to_end(key)
                return self._tables[key]
        rows = neuron_rows(session, layer)
        if layer.run.status == "done":
            with self._lock:
                self._tables[key] = rows
                while len(self._tables) > self.capacity:
                    self._tables.popitem(last=False)
        return rows


def neuron_rows(session: Session, layer: Layer) -> list[dict[str, Any]]:
    """One row per neuron of ``layer``: statistics, every index, and the class labels."""
    table: dict[int, dict[str, Any]] = {}
    ids: dict[int, int] = {}
    for neuron in session.execute(
        select(
            Neuron.id,
            Neuron.channel,
            Neuron.dead,
            Neuron.mean_activation,
            Neuron.max_activation,
            Neuron.nf_key,
        )
        .where(Neuron.layer_id == layer.id)
        .order_by(Neuron.channel)
    ):
        ids[neuron.id] = neuron.channel
        table[neuron.channel] = {
            "channel": neuron.channel,
            "dead": neuron.dead,
            "mean": neuron.mean_activation,
            "max": neuron.max_activation,
            "nf": neuron.nf_key,
            **dict.fromkeys([*INDEX_NAMES, "color_bounded", "double_opponent"]),
            "top_class": None,
            "spectral_class": None,
            "spatial_class": None,
        }
    details = NeuronIndex.details
    for neuron_id, name, value, top_class, spectral, spatial in session.execute(
        select(
            NeuronIndex.neuron_id,
            NeuronIndex.name,
            NeuronIndex.value,
            details["top_class"].as_string(),
            details["spectral_class"].as_string(),
            details["spatial_class"].as_string(),
        )
        .join(Neuron, Neuron.id == NeuronIndex.neuron_id)
        .where(Neuron.layer_id == layer.id)
    ):
        row = table[ids[neuron_id]]
        if name == "selectivity":
            row["top_class"] = top_class
        elif name == "double_opponent":
            row["double_opponent"] = value
            row["spectral_class"], row["spatial_class"] = spectral, spatial
        else:
            row[name] = value
    return list(table.values())


def layer_data(
    session: Session, cache: LayerTableCache, run_id: int, layer_name: str, query: TableQuery
) -> dict[str, Any]:
    layer = get_layer(session, run_id, layer_name)
    page = apply_query(cache.rows(session, layer), query)
    visualisations = latest_featureviz(session, run_id, layer_name)
    return {
        "run": run_summary(layer.run),
        "layer": {**layer_summary(layer), "summary": layer.summary or {}},
        "columns": list(NEURON_COLUMNS),
        "feature_vis": visualisations,
        "rendering": bool(active_visualisation_jobs(session, run_id, layer_name)),
        **page,
    }


def neuron_data(
    session: Session, store: ArtifactStore, run_id: int, layer_name: str, channel: int
) -> dict[str, Any]:
    """The neuron page: the CLI's neuron object plus neighbours and the same channel elsewhere."""
    detail = neuron_detail(session, store, run_id, layer_name, channel)
    layer = get_layer(session, run_id, layer_name)
    keys = session.execute(
        select(Neuron.nf_key, Neuron.nf_array_key, Neuron.sprite_key).where(
            Neuron.layer_id == layer.id, Neuron.channel == channel
        )
    ).one()
    elsewhere = session.execute(
        select(Layer.run_id)
        .where(Layer.name == layer_name, Layer.run_id != run_id, Layer.channels > channel)
        .order_by(Layer.run_id)
    ).scalars()
    return {
        "neuron": detail,
        "run": run_summary(layer.run),
        "layer": layer_summary(layer),
        "nf_key": keys.nf_key,
        "nf_array_key": keys.nf_array_key,
        "sprite_key": keys.sprite_key,
        "fv": featureviz_section(session, store, run_id, layer_name, channel),
        "previous": channel - 1 if channel > 0 else None,
        "next": channel + 1 if channel + 1 < layer.channels else None,
        "other_runs": list(elsewhere),
    }


def active_visualisation_jobs(
    session: Session, run_id: int, layer: str | None, unit: int | None = None
) -> list[dict[str, Any]]:
    """Unfinished visualisation jobs of a layer (``None``: of the classes), or of one unit."""
    found = []
    for job in session.scalars(
        select(Job).where(
            Job.run_id == run_id, Job.kind == "featureviz", Job.status.in_(JOB_ACTIVE)
        )
    ):
        units = job.params.get("units")
        if job.params.get("layer") == layer and (unit is None or not units or unit in units):
            found.append(job_record(job))
    return found


def featureviz_section(
    session: Session, store: Any, run_id: int, layer_name: str, channel: int
) -> dict[str, Any]:
    """The neuron page's feature visualisation section: newest single image, newest diverse set,
    and the jobs still rendering this neuron."""
    layer = get_layer(session, run_id, layer_name)
    if not 0 <= channel < layer.channels:
        raise NotFoundError(f"layer {layer_name!r} has channels 0..{layer.channels - 1}")
    stored = featureviz_records(session, store, run_id, layer_name, channel)
    singles = [record for record in stored if not record["diversity"]]
    diverse = [record for record in stored if record["diversity"]]
    newest_set = [r for r in diverse if r["params"] == diverse[0]["params"]] if diverse else []
    jobs = active_visualisation_jobs(session, run_id, layer_name, channel)
    return {
        "run_id": run_id,
        "layer_name": layer_name,
        "channel": channel,
        "single": singles[0] if singles else None,
        "diverse": newest_set,
        "jobs": jobs,
        "polling": bool(jobs),
    }


def classes_data(session: Session, store: Any, run_id: int) -> dict[str, Any]:
    run = get_run(session, run_id)
    targets = session.scalars(
        select(Job.params).where(Job.run_id == run_id, Job.kind == "featureviz")
    ).all()
    outputs = sorted({OUTPUT + _output_suffix(p.get("output")) for p in targets if not p["layer"]})
    target = outputs[0] if outputs else OUTPUT
    latest = latest_featureviz(session, run_id, target)
    classes = []
    for unit, key in sorted(latest.items()):
        stored = featureviz_records(session, store, run_id, target, unit)
        classes.append({"class": unit, **next(r for r in stored if r["key"] == key)})
    jobs = active_visualisation_jobs(session, run_id, None)
    names = (run.model.meta or {}).get(META_CLASSES, "").split(",")
    for entry in classes:
        entry["name"] = names[entry["class"]] if len(names) > entry["class"] else None
    return {
        "run": run_summary(run),
        "target": target,
        "classes": classes,
        "jobs": jobs,
        "polling": bool(jobs),
    }


def _output_suffix(output: int | None) -> str:
    return "" if output is None else f"[{output}]"
