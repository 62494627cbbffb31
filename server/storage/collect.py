"""Which artifact files the database still names, and which it does not: what ``neuronscope gc``
may delete.

A file is referenced when its key appears anywhere in the database (a neuron's pictures, an
upload, a decomposition's result, a job's result such as a sweep shard). A file written in the
last GRACE_SECONDS is never counted as unreferenced: a job writes its artifacts before it
commits the rows that name them.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine, inspect, text

from server.storage.artifacts import KEY, PARTIAL, ArtifactStore

GRACE_SECONDS = 3600.0
_KEYS_IN_TEXT = re.compile(r"[0-9a-f]{64}\.[a-z0-9]{1,16}")


@dataclass
class Unreferenced:
    """Artifact files no row names (older than the grace period), and their bytes."""

    paths: list[Path] = field(default_factory=list)
    bytes: int = 0


def referenced_keys(engine: Engine) -> set[str]:
    """Every artifact key that any row of any table names, in any column (JSON included)."""
    keys: set[str] = set()
    with engine.connect() as connection:
        for table in inspect(connection).get_table_names():
            quoted = connection.dialect.identifier_preparer.quote(table)
            for row in connection.execute(text(f"SELECT * FROM {quoted}")):
                keys.update(_KEYS_IN_TEXT.findall(" ".join(str(value) for value in row)))
    return keys


def unreferenced(
    store: ArtifactStore, engine: Engine, grace: float = GRACE_SECONDS
) -> Unreferenced:
    """The store's files that no row names and that are older than ``grace`` seconds."""
    named = referenced_keys(engine)
    found = Unreferenced()
    cutoff = time.time() - grace
    for path in sorted(store.root.glob("??/*")):
        if path.name.startswith(PARTIAL) or not KEY.fullmatch(path.name) or path.name in named:
            continue
        status = path.stat()
        if status.st_mtime < cutoff:
            found.paths.append(path)
            found.bytes += status.st_size
    return found
