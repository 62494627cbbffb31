"""Notes as plain data for the pages, the API, the CLI and exports: a neuron's note and its
history, a layer's labels, a run's notes, and a search across runs.

A note is the newest version of a neuron's notes; one whose label and text are both empty was
cleared, and is listed only in its neuron's history.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session

from server.storage.schema import Layer, Neuron, NeuronNote

MAX_RESULTS = 500  # a search answers at most this many notes, newest first
NOTE_COLUMNS = ("run", "layer", "channel", "label", "text", "author", "created")


def note_record(note: NeuronNote, run: int, layer: str, channel: int) -> dict[str, Any]:
    return {
        "run": run,
        "layer": layer,
        "channel": channel,
        "label": note.label,
        "text": note.text,
        "author": note.author,
        "created": note.created.isoformat(),
        "version": note.id,
    }


def neuron_notes(session: Session, neuron_id: int) -> list[NeuronNote]:
    """Every version of a neuron's note, newest first."""
    return list(
        session.scalars(
            select(NeuronNote)
            .where(NeuronNote.neuron_id == neuron_id)
            .order_by(NeuronNote.id.desc())
        )
    )


def note_of(session: Session, neuron: Neuron, run: int, layer: str) -> dict[str, Any]:
    """A neuron's note (null when none, or cleared) and its history, newest first."""
    versions = [
        note_record(v, run, layer, neuron.channel) for v in neuron_notes(session, neuron.id)
    ]
    current = versions[0] if versions and (versions[0]["label"] or versions[0]["text"]) else None
    return {"note": current, "history": versions}


def _current() -> Select[tuple[int]]:
    """The ids of every neuron's newest note version."""
    return select(func.max(NeuronNote.id)).group_by(NeuronNote.neuron_id)


def layer_labels(session: Session, layer_id: int) -> dict[int, str]:
    """Channel → label, for the neurons of a layer whose note has one."""
    rows = session.execute(
        select(Neuron.channel, NeuronNote.label)
        .join(NeuronNote, NeuronNote.neuron_id == Neuron.id)
        .where(Neuron.layer_id == layer_id, NeuronNote.id.in_(_current()), NeuronNote.label != "")
    )
    return {int(channel): str(label) for channel, label in rows}


def find_notes(
    session: Session,
    words: str = "",
    run_id: int | None = None,
    label: str | None = None,
    limit: int | None = MAX_RESULTS,
) -> list[dict[str, Any]]:
    """Current notes, newest first: those whose label or text contains ``words`` (any case),
    of one run, or with exactly ``label``; at most ``limit`` (None: all, for an export)."""
    query = (
        select(NeuronNote, Layer.run_id, Layer.name, Neuron.channel)
        .join(Neuron, Neuron.id == NeuronNote.neuron_id)
        .join(Layer, Layer.id == Neuron.layer_id)
        .where(NeuronNote.id.in_(_current()), or_(NeuronNote.label != "", NeuronNote.text != ""))
        .order_by(NeuronNote.id.desc())
        .limit(limit)
    )
    if words.strip():
        pattern = "%" + _escaped(words.strip()) + "%"
        query = query.where(
            or_(
                NeuronNote.label.ilike(pattern, escape="\\"),
                NeuronNote.text.ilike(pattern, escape="\\"),
            )
        )
    if run_id is not None:
        query = query.where(Layer.run_id == run_id)
    if label is not None:
        query = query.where(NeuronNote.label == label)
    return [
        note_record(note, run, layer, channel)
        for note, run, layer, channel in session.execute(query)
    ]


def label_counts(session: Session, run_id: int) -> list[tuple[str, int]]:
    """A run's labels with how many neurons carry each, most common first."""
    rows = session.execute(
        select(NeuronNote.label, func.count())
        .join(Neuron, Neuron.id == NeuronNote.neuron_id)
        .join(Layer, Layer.id == Neuron.layer_id)
        .where(Layer.run_id == run_id, NeuronNote.id.in_(_current()), NeuronNote.label != "")
        .group_by(NeuronNote.label)
        .order_by(func.count().desc(), NeuronNote.label)
    )
    return [(label, count) for label, count in rows]


def _escaped(words: str) -> str:
    """``words`` matched literally by LIKE: its own % and _ are not wildcards."""
    return words.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
