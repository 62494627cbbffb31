"""What a run holds, as plain data (dicts) that the CLI, the JSON API and the pages render.

Nothing here imports torch: the web process reads through these.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from analysis.metadata import META_RESIZE, META_SOURCE, class_names, label_names
from server.featureviz.read import featureviz_records
from server.notes.read import note_of
from server.storage.artifacts import ArtifactStore
from server.storage.errors import NotFoundError
from server.storage.packs import artifact_file
from server.storage.schema import (
    INDEX_NAMES,
    Dataset,
    DatasetImage,
    Layer,
    Model,
    Neuron,
    NeuronIndex,
    Run,
    TopActivation,
)


def run_summary(run: Run, layers: list[Layer] | None = None) -> dict[str, Any]:
    layers = run.layers if layers is None else layers
    return {
        "id": run.id,
        "status": run.status,
        "model": run.model.spec,
        "weights": run.model.weights_path,
        "weights_sha256": run.model.weights_sha256,
        "input_size": run.model.input_size,
        "input_shape": list(run.model.input_shape),
        "input_channels": run.model.input_channels,
        "mean": run.model.mean,
        "std": run.model.std,
        "weights_source": (run.model.meta or {}).get(META_SOURCE),
        "dataset": run.dataset.root,
        "images": run.dataset.image_count,
        "layers": [layer.name for layer in layers] or list(run.params.get("layers", [])),
        "top_k": run.params.get("top_k"),
        "resize": run.params.get("resize"),
        "jpeg_draft": bool(run.params.get("jpeg_draft", False)),
        "neurons": sum(layer.channels for layer in layers),
        "dead": sum(layer.dead_count for layer in layers),
        "created": run.created.isoformat(),
        "finished": run.finished.isoformat() if run.finished else None,
        "error": run.error,
        "stats": run.stats,
        "summaries": {layer.name: layer.summary for layer in layers if layer.summary},
    }


def list_runs(session: Session) -> list[dict[str, Any]]:
    runs = session.scalars(select(Run).order_by(Run.id)).all()
    return [run_summary(run) for run in runs]


def newest_run_id(session: Session) -> int | None:
    """The most recently created run's id (None before the first)."""
    return session.scalar(select(Run.id).order_by(Run.id.desc()).limit(1))


def get_run(session: Session, run_id: int) -> Run:
    run = session.get(Run, run_id)
    if run is None:
        raise NotFoundError(f"no run {run_id}")
    return run


def get_layer(session: Session, run_id: int, name: str) -> Layer:
    layer = session.scalar(select(Layer).where(Layer.run_id == run_id, Layer.name == name))
    if layer is None:
        known = session.scalars(select(Layer.name).where(Layer.run_id == run_id)).all()
        get_run(session, run_id)
        raise NotFoundError(f"run {run_id} has no layer {name!r} (it has: {', '.join(known)})")
    return layer


def get_neuron(session: Session, run_id: int, layer_name: str, channel: int) -> Neuron:
    layer = get_layer(session, run_id, layer_name)
    neuron = session.scalar(
        select(Neuron).where(Neuron.layer_id == layer.id, Neuron.channel == channel)
    )
    if neuron is None:
        raise NotFoundError(
            f"layer {layer_name!r} has channels 0..{layer.channels - 1}, not {channel}"
        )
    return neuron


def layer_summary(layer: Layer) -> dict[str, Any]:
    return {
        "name": layer.name,
        "type": layer.type,
        "channels": layer.channels,
        "map_size": [layer.height, layer.width],
        "rf_size": layer.rf_size,
        "rf_stride": layer.rf_stride,
        "rf_offset": layer.rf_offset,
        "dead": layer.dead_count,
    }


def neuron_detail(
    session: Session,
    store: ArtifactStore,
    run_id: int,
    layer_name: str,
    channel: int,
    paths: bool = True,
) -> dict[str, Any]:
    """Everything known about one neuron, as ``neuronscope neuron --json`` prints it.

    ``nf`` and ``sprite`` are paths of files: a picture kept in a pack is copied out the first
    time. A caller that shows the pictures by key (the HTML page) passes ``paths=False`` and
    gets a path only where a file already exists, so rendering every page of a run (a static
    export) does not copy its pictures out."""
    layer = get_layer(session, run_id, layer_name)
    neuron = get_neuron(session, run_id, layer_name, channel)
    run = layer.run
    rows = session.execute(
        select(
            TopActivation.rank,
            TopActivation.value,
            TopActivation.row,
            TopActivation.col,
            TopActivation.image_index,
            DatasetImage.path,
            DatasetImage.label,
        )
        .join(
            DatasetImage,
            (DatasetImage.index == TopActivation.image_index)
            & (DatasetImage.dataset_id == run.dataset_id),
        )
        .where(TopActivation.neuron_id == neuron.id)
        .order_by(TopActivation.rank)
    ).all()
    (oy, ox), (sy, sx), (hy, hx) = layer.rf_offset, layer.rf_stride, layer.rf_size
    return {
        "run": run_id,
        "layer": layer.name,
        "channel": channel,
        "dead": neuron.dead,
        "mean_activation": neuron.mean_activation,
        "max_activation": neuron.max_activation,
        "nf": _file(session, store, neuron.nf_key, paths),
        "nf_array": str(store.path(neuron.nf_array_key)) if neuron.nf_array_key else None,
        # nf_box: the part [r0, r1, c0, c1] of the window that nf_array holds; grey beyond it
        "nf_box": layer.nf_box or [0, hy, 0, hx],
        "sprite": _file(session, store, neuron.sprite_key, paths),
        # window: the unclipped input window [r0, r1, c0, c1] (see analysis.receptive_field)
        "top": [
            {
                "rank": rank,
                "image": path,
                "image_index": index,
                "label": label,
                "value": value,
                "row": row,
                "col": col,
                "window": [oy + row * sy, oy + row * sy + hy, ox + col * sx, ox + col * sx + hx],
            }
            for rank, value, row, col, index, path, label in rows
        ],
        "indexes": neuron_indexes(session, neuron.id),
        # the lab's note on this neuron (null when none) and every version, newest first
        **note_of(session, neuron, run_id, layer.name),
        "feature_vis": featureviz_records(session, store, run_id, layer.name, channel),
        # the dataset's labels that the model's weights name ("n01440764": "tench")
        "label_names": _named_labels(run, [row.label for row in rows]),
    }


def _named_labels(run: Run, labels: list[str | None]) -> dict[str, str]:
    """The names the run's model gives those of ``labels`` that are its class ids (the class
    index's top class and distribution are over these same labels)."""
    names = label_names(run.model.meta)
    return {label: names[label] for label in set(labels) if label in names}


def neuron_indexes(session: Session, neuron_id: int) -> dict[str, Any]:
    """Index values by name (null for a dead neuron) and their merged plot details.

    Empty until indexes have been computed for the run.
    """
    rows = session.scalars(select(NeuronIndex).where(NeuronIndex.neuron_id == neuron_id)).all()
    if not rows:
        return {}
    indexes: dict[str, Any] = {}
    details: dict[str, Any] = {}
    for row in rows:
        if row.name != "selectivity":
            indexes[row.name] = row.value
        details.update(row.details or {})
    indexes["double_opponent"] = bool(indexes.get("double_opponent"))
    indexes["details"] = details
    return indexes


def rank_neurons(
    session: Session, run_id: int, layer_name: str, by: str, descending: bool = False
) -> list[dict[str, Any]]:
    """A layer's neurons sorted by one index (dead neurons, with null values, last)."""
    layer = get_layer(session, run_id, layer_name)
    names = set(session.scalars(select(NeuronIndex.name).distinct()).all())
    sortable = sorted(names - {"selectivity"})
    if by not in sortable:
        known = ", ".join(sortable) or "none computed yet: run analyze without --no-indexes"
        raise NotFoundError(f"no index {by!r} (sortable indexes: {known})")
    rows = session.execute(
        select(
            Neuron.channel, Neuron.dead, Neuron.max_activation, NeuronIndex.name, NeuronIndex.value
        )
        .join(NeuronIndex, NeuronIndex.neuron_id == Neuron.id)
        .where(Neuron.layer_id == layer.id, NeuronIndex.name != "selectivity")
    ).all()
    table: dict[int, dict[str, Any]] = {}
    for channel, dead, best, name, value in rows:
        entry = table.setdefault(channel, {"channel": channel, "dead": dead, "max": best})
        entry[name] = value
    ordered = sorted(
        table.values(),
        key=lambda e: (e.get(by) is None, -(e.get(by) or 0) if descending else (e.get(by) or 0)),
    )
    return ordered


def top_classes(session: Session, layer: Layer, channels: list[int]) -> dict[int, str]:
    """The top class (a dataset label) of those ``channels`` of ``layer`` that have one, with
    the name the run's model gives it where its weights name the label ("n01440764 · tench")."""
    names = label_names(layer.run.model.meta)
    found = session.execute(
        select(Neuron.channel, NeuronIndex.details["top_class"].as_string())
        .join(NeuronIndex, NeuronIndex.neuron_id == Neuron.id)
        .where(
            Neuron.layer_id == layer.id,
            Neuron.channel.in_(channels),
            NeuronIndex.name == "selectivity",
        )
    )
    return {
        channel: f"{label} · {names[label]}" if label in names else label
        for channel, label in found
        if label
    }


def neuron_table(session: Session, layer: Layer) -> list[dict[str, Any]]:
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


EXTREME_COLUMNS = (*INDEX_NAMES, "color_bounded", "max", "mean")


def index_extremes(
    session: Session, run_id: int, column: str, count: int = 3
) -> dict[str, list[dict[str, Any]]]:
    """The ``count`` live neurons of a run (any layer) with the highest and the lowest value of
    one layer-table column, each with its layer, channel, value and NF: the examples that show
    what the column means on the run a researcher is reading."""
    if column not in EXTREME_COLUMNS:
        raise NotFoundError(f"no ranked column {column!r} (ranked: {', '.join(EXTREME_COLUMNS)})")
    columns = (Layer.name, Neuron.channel, Neuron.nf_key)
    base = (
        select(*columns)
        .select_from(Neuron)
        .join(Layer, Layer.id == Neuron.layer_id)
        .where(Layer.run_id == run_id)
    )
    if column in ("max", "mean"):
        value = Neuron.max_activation if column == "max" else Neuron.mean_activation
        base = base.add_columns(value).where(~Neuron.dead)
    else:
        value = NeuronIndex.value
        base = (
            base.add_columns(value)
            .join(NeuronIndex, NeuronIndex.neuron_id == Neuron.id)
            .where(NeuronIndex.name == column, value.is_not(None))
        )

    def ranked(order: Any) -> list[dict[str, Any]]:
        rows = session.execute(base.order_by(order, Layer.position, Neuron.channel).limit(count))
        return [
            {"layer": layer, "channel": channel, "value": number, "nf": nf}
            for layer, channel, nf, number in rows
        ]

    return {"highest": ranked(value.desc()), "lowest": ranked(value.asc())}


def list_models(session: Session) -> list[dict[str, Any]]:
    """Registered models, newest first, with their layer lists."""
    models = session.scalars(select(Model).order_by(Model.id.desc())).all()
    return [
        {
            "id": model.id,
            "spec": model.spec,
            "weights": model.weights_path,
            "weights_sha256": model.weights_sha256,
            "input_size": model.input_size,
            "input_shape": list(model.input_shape),
            "input_channels": model.input_channels,
            "mean": model.mean,
            "std": model.std,
            "resize": (model.meta or {}).get(META_RESIZE, "whole"),
            "weights_source": (model.meta or {}).get(META_SOURCE),
            "classes": len(class_names(model.meta)),
            "layers": model.layers or [],
            "created": model.created.isoformat(),
        }
        for model in models
    ]


def list_datasets(session: Session) -> list[dict[str, Any]]:
    """Registered image folders, newest first."""
    datasets = session.scalars(select(Dataset).order_by(Dataset.id.desc())).all()
    return [
        {
            "id": dataset.id,
            "root": dataset.root,
            "images": dataset.image_count,
            "classes": dataset.class_count,
            "fingerprint": dataset.fingerprint,
            "created": dataset.created.isoformat(),
        }
        for dataset in datasets
    ]


def _file(session: Session, store: ArtifactStore, key: str | None, copy: bool) -> str | None:
    """The path of a file holding artifact ``key``: copied out of its pack when ``copy``, else
    only where a file already exists."""
    if not key:
        return None
    if copy:
        path = artifact_file(session, store, key)
        return str(path) if path else None
    return str(store.path(key)) if store.path(key).is_file() else None
