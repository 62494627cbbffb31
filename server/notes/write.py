"""Writing a note: checked, then added as a new version (the older ones stay as its history)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from server.storage.schema import Neuron, NeuronNote

MAX_LABEL = 80
MAX_TEXT = 10_000
MAX_AUTHOR = 80
ANONYMOUS = "anonymous"


class NoteError(ValueError):
    """A note that cannot be kept as given; the message says what to change."""


def add_note(session: Session, neuron: Neuron, label: str, text: str, author: str) -> NeuronNote:
    """A new version of ``neuron``'s note (empty label and text clear it)."""
    label, text, author = label.strip(), text.strip(), author.strip() or ANONYMOUS
    if "\n" in label or "\r" in label:
        raise NoteError("a label is one line; write more in the note's text")
    if len(label) > MAX_LABEL:
        raise NoteError(f"a label is at most {MAX_LABEL} characters, not {len(label)}")
    if len(text) > MAX_TEXT:
        raise NoteError(f"a note's text is at most {MAX_TEXT} characters, not {len(text)}")
    if len(author) > MAX_AUTHOR or "\n" in author:
        raise NoteError(f"an author's name is one line of at most {MAX_AUTHOR} characters")
    if "\x00" in label + text + author:
        raise NoteError("a note cannot hold NUL characters")
    note = NeuronNote(neuron_id=neuron.id, label=label, text=text, author=author)
    session.add(note)
    session.flush()
    return note
