"""Pack files: many small artifacts written as one file, each still reached by its own key.

A whole network's Neuron Feature stage makes two small pictures a neuron (the display PNG and
the top-patch sprite), 30,000 for ResNet-50. On the ext4 disks we measured, creating a file
costs 0.3 ms, more than drawing and encoding its picture, so the stage writes each layer's
pictures into a few packs instead (:class:`PackBuffer`). A packed artifact keeps the key it
would have had alone (the hash of its bytes), so pages, JSON and links name it as before; a
``packed_artifact`` row says which pack holds it and where. Readers ask :func:`artifact_bytes`
or :func:`artifact_file`, which look for a file of that name first and in the packs after.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from server.storage.artifacts import ArtifactStore
from server.storage.schema import PackedArtifact

PACK_BYTES = 64 << 20  # a pack is written once its entries hold this much


@dataclass(frozen=True)
class PackedEntry:
    """Where one artifact's bytes lie: ``length`` bytes from ``offset`` of pack ``pack_key``."""

    key: str
    pack_key: str
    offset: int
    length: int


class PackBuffer:
    """Artifacts collected for a pack. Each entry's key is known when it is added (the hash of
    its bytes); the pack is written by :meth:`write`, which a caller runs when :attr:`full` and
    at the end, before the rows naming the keys are committed."""

    def __init__(self, store: ArtifactStore, limit: int = PACK_BYTES) -> None:
        self.store = store
        self.limit = limit
        self._entries: list[tuple[str, bytes]] = []
        self._bytes = 0

    def add(self, data: bytes, suffix: str) -> str:
        """Hold ``data`` for the pack; its key (the hash of its bytes, as if stored alone)."""
        key = f"{hashlib.sha256(data).hexdigest()}.{suffix}"
        self._entries.append((key, data))
        self._bytes += len(data)
        return key

    @property
    def full(self) -> bool:
        return self._bytes >= self.limit

    def write(self) -> list[PackedEntry]:
        """Write what is held as one pack file (nothing when empty); where each entry lies."""
        if not self._entries:
            return []
        pack_key, placed = self.store.put_pack(self._entries)
        self._entries, self._bytes = [], 0
        return [PackedEntry(key, pack_key, offset, length) for key, offset, length in placed]


def record_packed(session: Session, entries: list[PackedEntry]) -> None:
    """Name the packs' entries in the database (the caller commits, with the rows using them)."""
    if entries:
        session.execute(
            insert(PackedArtifact),
            [
                {"key": e.key, "pack_key": e.pack_key, "offset": e.offset, "length": e.length}
                for e in entries
            ],
        )


def artifact_bytes(session: Session, store: ArtifactStore, key: str) -> bytes | None:
    """The bytes of artifact ``key``: its own file, else its entry in a pack; None when
    neither exists (or the key is malformed)."""
    try:
        path = store.path(key)
    except ValueError:
        return None
    if path.is_file():
        return path.read_bytes()
    for entry in session.execute(
        select(PackedArtifact.pack_key, PackedArtifact.offset, PackedArtifact.length).where(
            PackedArtifact.key == key
        )
    ):
        try:
            data = store.read_range(entry.pack_key, entry.offset, entry.length)
        except (FileNotFoundError, ValueError):
            continue  # that pack is gone; another may hold the same bytes
        if len(data) == entry.length and hashlib.sha256(data).hexdigest() == key[:64]:
            return data
    return None


def artifact_file(session: Session, store: ArtifactStore, key: str) -> Path | None:
    """A file holding artifact ``key``, for a reader that wants a path (the CLI prints one):
    a packed artifact is copied out of its pack the first time, then found as a file. None
    when there is no such artifact, or when the store cannot be written (a dashboard serving
    a read-only copy still shows every picture; it has no path to give)."""
    try:
        path = store.path(key)
    except ValueError:
        return None
    if path.is_file():
        return path
    data = artifact_bytes(session, store, key)
    if data is None:
        return None
    try:
        store.put_bytes(data, key.rpartition(".")[2])
    except OSError:
        return None
    return path
