"""The database schema (SQLAlchemy 2.x typed models), one for SQLite and PostgreSQL.

A run is pinned by what produced it (weights hash, dataset fingerprint, parameters), so its rows
never change meaning. Images are content-addressed artifacts; rows hold their keys.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Model(Base):
    """A network: its spec, the weights that fill it, and the input it expects.

    ``identity`` hashes all of these, so the same network registered twice is one row.
    """

    __tablename__ = "model"

    id: Mapped[int] = mapped_column(primary_key=True)
    identity: Mapped[str] = mapped_column(String(64), unique=True)
    spec: Mapped[str] = mapped_column(String(500))
    weights_path: Mapped[str | None] = mapped_column(String(1000))
    weights_sha256: Mapped[str] = mapped_column(String(64))
    input_size: Mapped[int] = mapped_column(Integer)  # the height, and the width unless given
    input_width: Mapped[int | None] = mapped_column(Integer)  # set only for non-square input
    input_channels: Mapped[int] = mapped_column(Integer, default=3, server_default="3")
    mean: Mapped[list[Any]] = mapped_column(JSON)
    std: Mapped[list[Any]] = mapped_column(JSON)
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    layers: Mapped[list[Any] | None] = mapped_column(JSON)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    @property
    def input_shape(self) -> tuple[int, int]:
        """(height, width) of the model's input."""
        return self.input_size, self.input_width or self.input_size


class Dataset(Base):
    """An image folder as it was when fingerprinted."""

    __tablename__ = "dataset"

    id: Mapped[int] = mapped_column(primary_key=True)
    root: Mapped[str] = mapped_column(String(1000))
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    image_count: Mapped[int] = mapped_column(Integer)
    class_count: Mapped[int] = mapped_column(Integer)
    skipped: Mapped[list[Any]] = mapped_column(JSON, default=list)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    images: Mapped[list[DatasetImage]] = relationship(back_populates="dataset")


class DatasetImage(Base):
    __tablename__ = "dataset_image"

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("dataset.id", ondelete="CASCADE"))
    index: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(String(1000))
    label: Mapped[str | None] = mapped_column(String(200))

    dataset: Mapped[Dataset] = relationship(back_populates="images")

    __table_args__ = (UniqueConstraint("dataset_id", "index", name="uq_dataset_image_position"),)


class Run(Base):
    """One analysis: a model × a dataset × parameters. ``key`` pins all three."""

    __tablename__ = "run"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("model.id"))
    dataset_id: Mapped[int] = mapped_column(ForeignKey("dataset.id"))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    error: Mapped[str | None] = mapped_column(Text)
    stats: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    model: Mapped[Model] = relationship()
    dataset: Mapped[Dataset] = relationship()
    layers: Mapped[list[Layer]] = relationship(
        back_populates="run", order_by="Layer.position", cascade="all, delete-orphan"
    )


class Layer(Base):
    """A recorded layer with its map size and receptive-field geometry."""

    __tablename__ = "layer"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("run.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(300))
    position: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(100))
    channels: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    rf_size: Mapped[list[Any]] = mapped_column(JSON)
    rf_stride: Mapped[list[Any]] = mapped_column(JSON)
    rf_offset: Mapped[list[Any]] = mapped_column(JSON)
    # The part [r0, r1, c0, c1] of the window that its neurons' NF arrays hold (the layer's
    # reach: grey beyond it by definition); null for runs stored before 0008, whose NF arrays
    # hold the whole window.
    nf_box: Mapped[list[int] | None] = mapped_column(JSON)
    dead_count: Mapped[int] = mapped_column(Integer, default=0)
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    run: Mapped[Run] = relationship(back_populates="layers")

    __table_args__ = (UniqueConstraint("run_id", "name", name="uq_layer_run_name"),)


class Neuron(Base):
    """One channel of a layer: its NF and activation statistics."""

    __tablename__ = "neuron"

    id: Mapped[int] = mapped_column(primary_key=True)
    layer_id: Mapped[int] = mapped_column(ForeignKey("layer.id", ondelete="CASCADE"))
    channel: Mapped[int] = mapped_column(Integer)
    dead: Mapped[bool] = mapped_column(Boolean)
    mean_activation: Mapped[float] = mapped_column(Float)
    max_activation: Mapped[float] = mapped_column(Float)
    nf_key: Mapped[str | None] = mapped_column(String(80))
    nf_array_key: Mapped[str | None] = mapped_column(String(80))
    sprite_key: Mapped[str | None] = mapped_column(String(80))

    __table_args__ = (UniqueConstraint("layer_id", "channel", name="uq_neuron_layer_channel"),)


class PackedArtifact(Base):
    """An artifact kept inside a pack file: where its bytes lie (:mod:`server.storage.packs`).

    A run's Neuron Feature stage makes two small pictures a neuron; creating 30,000 files cost
    more than drawing them. It writes each layer's pictures into a few pack files instead, and
    these rows say where each key's bytes are. The same bytes may be packed twice (two runs
    with an identical picture), so a key may have more than one row; any of them will do."""

    __tablename__ = "packed_artifact"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(80))
    pack_key: Mapped[str] = mapped_column(String(80))
    offset: Mapped[int] = mapped_column(BigInteger)
    length: Mapped[int] = mapped_column(Integer)


Index("ix_packed_artifact_key", PackedArtifact.key)
Index("ix_packed_artifact_pack_key", PackedArtifact.pack_key)


class NeuronNote(Base):
    """One version of a lab's note on a neuron: a short label ("curve detector"), free text,
    who wrote it and when. An edit adds a version, so the history is kept; the newest version
    is the note (empty label and text: cleared)."""

    __tablename__ = "neuron_note"

    id: Mapped[int] = mapped_column(primary_key=True)
    neuron_id: Mapped[int] = mapped_column(ForeignKey("neuron.id", ondelete="CASCADE"))
    label: Mapped[str] = mapped_column(String(80), default="")
    text: Mapped[str] = mapped_column(Text, default="")
    author: Mapped[str] = mapped_column(String(80))
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


Index("ix_neuron_note_neuron_id", NeuronNote.neuron_id)


class TopActivation(Base):
    """The rank-th best image of a neuron: where and how strongly it fired."""

    __tablename__ = "top_activation"

    neuron_id: Mapped[int] = mapped_column(
        ForeignKey("neuron.id", ondelete="CASCADE"), primary_key=True
    )
    rank: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_index: Mapped[int] = mapped_column(BigInteger)
    value: Mapped[float] = mapped_column(Float)
    row: Mapped[int] = mapped_column(Integer)
    col: Mapped[int] = mapped_column(Integer)


Index("ix_top_activation_image", TopActivation.image_index)


# The sortable selectivity indexes every live neuron gets (docs/algorithms.md §4), in display order.
INDEX_NAMES = ("color", "orientation", "symmetry", "class", "shape")


class NeuronIndex(Base):
    """One named selectivity index of a neuron: a sortable number and what a plot needs.

    ``value`` is null for a dead neuron; ``details`` holds curves and distributions (the
    orientation tuning curve, the hue curve, the class distribution, ...).
    """

    __tablename__ = "neuron_index"

    neuron_id: Mapped[int] = mapped_column(
        ForeignKey("neuron.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    value: Mapped[float | None] = mapped_column(Float)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


Index("ix_neuron_index_name_value", NeuronIndex.name, NeuronIndex.value)


class FeatureViz(Base):
    """One feature visualisation: an image optimised to excite a unit (docs/algorithms.md §7).

    ``target`` is a layer name (``unit`` is a channel) or ``@output`` / ``@output[i]`` (``unit``
    is a class). ``params_key`` hashes every setting that changes the image, so the same request
    finds the stored result; ``variant`` numbers the images of a diverse set (0 when single).
    ``activation`` is the unit's response to the image, ``random_activation`` its mean response
    to random images of the same parameterisation.
    """

    __tablename__ = "feature_vis"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("run.id", ondelete="CASCADE"))
    target: Mapped[str] = mapped_column(String(300))
    unit: Mapped[int] = mapped_column(Integer)
    objective: Mapped[str] = mapped_column(String(40))
    method: Mapped[str] = mapped_column(String(20))
    params_key: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    variant: Mapped[int] = mapped_column(Integer, default=0)
    image_key: Mapped[str] = mapped_column(String(80))
    activation: Mapped[float] = mapped_column(Float)
    random_activation: Mapped[float] = mapped_column(Float)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (
        UniqueConstraint(
            "run_id", "target", "unit", "params_key", "variant", name="uq_feature_vis_image"
        ),
    )


class ProbeResponse(Base):
    """A run's neurons' responses to a probe set: for each of ``images`` images spread evenly
    through an image folder (any run's), each recorded channel's largest activation over its
    map. Two runs' responses to the same probe set match neurons across architectures by
    correlation. ``array_key`` names a float32 (images, channels) array whose columns are the
    layers in ``layers`` order ([name, first column, channels] each)."""

    __tablename__ = "probe_response"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("run.id", ondelete="CASCADE"))
    dataset_id: Mapped[int] = mapped_column(ForeignKey("dataset.id", ondelete="CASCADE"))
    images: Mapped[int] = mapped_column(Integer)
    array_key: Mapped[str] = mapped_column(String(80))
    layers: Mapped[list[Any]] = mapped_column(JSON)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (
        UniqueConstraint("run_id", "dataset_id", "images", name="uq_probe_response_set"),
    )


class Upload(Base):
    """An image a user uploaded, stored once under the hash of its bytes."""

    __tablename__ = "upload"

    id: Mapped[int] = mapped_column(primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    filename: Mapped[str] = mapped_column(String(300))
    image_key: Mapped[str] = mapped_column(String(80))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    mode: Mapped[str] = mapped_column(String(20))
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Decomposition(Base):
    """An image (an upload, or an image of the run's dataset) decomposed at a run's layers.

    ``source`` names the image (``upload:<sha256>`` or ``image:<index>``), so the same image is
    decomposed once per run and settings; ``result`` holds, per layer, the accepted neurons and
    the keys of the rendered images, once the job is done.
    """

    __tablename__ = "decomposition"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("run.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(String(100))
    upload_id: Mapped[int | None] = mapped_column(ForeignKey("upload.id", ondelete="CASCADE"))
    image_index: Mapped[int | None] = mapped_column(BigInteger)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    params_key: Mapped[str] = mapped_column(String(64))
    job_id: Mapped[int | None] = mapped_column(Integer)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (
        UniqueConstraint("run_id", "source", "params_key", name="uq_decomposition_image"),
    )


class Composition(Base):
    """A neuron described by a shallower layer's neurons (docs/algorithms.md §6), in one mode."""

    __tablename__ = "composition"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("run.id", ondelete="CASCADE"))
    layer: Mapped[str] = mapped_column(String(300))
    channel: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(300))
    mode: Mapped[str] = mapped_column(String(20))
    depth: Mapped[int] = mapped_column(Integer)
    result: Mapped[dict[str, Any]] = mapped_column(JSON)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (
        UniqueConstraint(
            "run_id", "layer", "channel", "source", "mode", "depth", name="uq_composition_request"
        ),
    )


# A job's life: ``waiting`` for the jobs it depends on, ``queued`` for a worker, ``running``
# (``cancelling`` once a cancel is asked), then one of the final states.
JOB_ACTIVE = ("waiting", "queued", "running", "cancelling")
JOB_FINAL = ("done", "failed", "cancelled")


class Job(Base):
    """One unit of background work, as the UI and the CLI show it.

    ``key`` identifies the work itself (so enqueueing it twice finds this row); ``lease`` names
    the current attempt, so a worker that lost its job (its heartbeat expired and another took
    it over) can tell, and stops instead of writing.
    """

    __tablename__ = "job"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(40))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("run.id", ondelete="CASCADE"))
    depends_on: Mapped[list[Any]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(20), default="queued")
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    message: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    worker: Mapped[str | None] = mapped_column(String(200))
    lease: Mapped[str | None] = mapped_column(String(32))
    heartbeat: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    queued: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    started: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


Index("ix_job_status", Job.status)
Index("ix_job_run_id", Job.run_id)


class Worker(Base):
    """A worker process as it last reported itself: who is there to take jobs, and on what."""

    __tablename__ = "worker"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    device: Mapped[str] = mapped_column(String(50))
    started: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    heartbeat: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    job_id: Mapped[int | None] = mapped_column(Integer)
    stopped: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
