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
    return _references(engine)[0]


def _references(engine: Engine) -> tuple[set[str], list[tuple[str, str, int]]]:
    """The keys named (as :func:`referenced_keys`) and every ``packed_artifact`` row as (key,
    pack, id). The rows are read first: a run commits its rows and the neurons naming them
    together, so any row read here has its neurons among the names read after it."""
    with engine.connect() as connection:
        columns = (PackedArtifact.key, PackedArtifact.pack_key, PackedArtifact.id)
        packed = [(key, pack, id_) for key, pack, id_ in connection.execute(select(*columns))]
        keys: set[str] = set()
        for table in inspect(connection).get_table_names():
            if table == PackedArtifact.__tablename__:
                continue
            quoted = connection.dialect.identifier_preparer.quote(table)
            for row in connection.execute(text(f"SELECT * FROM {quoted}")):
                keys.update(_KEYS_IN_TEXT.findall(" ".join(str(value) for value in row)))
    return keys | {pack for key, pack, _id in packed if key in keys}, packed


def unreferenced(
    store: ArtifactStore, engine: Engine, grace: float = GRACE_SECONDS
) -> Unreferenced:
    """The store's files that no row names and that are older than ``grace`` seconds, and the
    ``packed_artifact`` rows of entries nothing names (kept while their pack is that new)."""
    named, packed = _references(engine)
    cutoff = time.time() - grace
    found = Unreferenced(
        packed_rows=[
            i for key, pack, i in packed if key not in named and _older(store, pack, cutoff)
        ]
    )
    for path in sorted(store.root.glob("??/*")):
        if path.name.startswith(PARTIAL) or not KEY.fullmatch(path.name) or path.name in named:
            continue
        status = path.stat()
        if status.st_mtime < cutoff:
            found.paths.append(path)
            found.bytes += status.st_size
    return found


def _older(store: ArtifactStore, key: str, cutoff: float) -> bool:
    """Whether artifact ``key`` was written before ``cutoff`` (or is gone)."""
    try:
        return store.path(key).stat().st_mtime < cutoff
    except (FileNotFoundError, ValueError):
        return True
