"""Which artifact files the database still names, and which it does not: what ``neuronscope gc``
may delete.

A file is referenced when its key appears anywhere in the database (a neuron's pictures, an
upload, a decomposition's result, a job's result such as a sweep shard). A pack file is
referenced while any of its entries is: the ``packed_artifact`` rows only say where entries lie,
so they name nothing by themselves, and the rows of entries nothing names are unreferenced too.
A file written in the last GRACE_SECONDS is never counted as unreferenced: a job writes its
artifacts before it commits the rows that name them.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine, inspect, select, text

from server.storage.artifacts import KEY, PARTIAL, ArtifactStore
from server.storage.schema import PackedArtifact

GRACE_SECONDS = 3600.0
_KEYS_IN_TEXT = re.compile(r"[0-9a-f]{64}\.[a-z0-9]{1,16}")


@dataclass
class Unreferenced:
    """Artifact files no row names (older than the grace period), their bytes, and the ids of
    ``packed_artifact`` rows whose entry nothing names."""

    paths: list[Path] = field(default_factory=list)
    bytes: int = 0
    packed_rows: list[int] = field(default_factory=list)


def referenced_keys(engine: Engine) -> set[str]:
    """Every artifact key that any row of any table names, in any column (JSON included), and
    every pack holding such a key."""
    keys: set[str] = set()
    with engine.connect() as connection:
        for table in inspect(connection).get_table_names():
            if table == PackedArtifact.__tablename__:
                continue
            quoted = connection.dialect.identifier_preparer.quote(table)
            for row in connection.execute(text(f"SELECT * FROM {quoted}")):
                keys.update(_KEYS_IN_TEXT.findall(" ".join(str(value) for value in row)))
    return keys | {pack for key, pack, _id in _packed_rows(engine) if key in keys}


def _packed_rows(engine: Engine) -> list[tuple[str, str, int]]:
    with engine.connect() as connection:
        columns = (PackedArtifact.key, PackedArtifact.pack_key, PackedArtifact.id)
        return [tuple(row) for row in connection.execute(select(*columns))]  # type: ignore[misc]


def unreferenced(
    store: ArtifactStore, engine: Engine, grace: float = GRACE_SECONDS
) -> Unreferenced:
    """The store's files that no row names and that are older than ``grace`` seconds."""
    named = referenced_keys(engine)
    found = Unreferenced(packed_rows=[i for key, _, i in _packed_rows(engine) if key not in named])
    cutoff = time.time() - grace
    for path in sorted(store.root.glob("??/*")):
        if path.name.startswith(PARTIAL) or not KEY.fullmatch(path.name) or path.name in named:
            continue
        status = path.stat()
        if status.st_mtime < cutoff:
            found.paths.append(path)
            found.bytes += status.st_size
    return found
