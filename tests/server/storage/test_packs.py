"""Pack files: many artifacts in one file, each read back by its own key, exactly its bytes or
not at all."""

from __future__ import annotations

import hashlib

import pytest

from server.storage.artifacts import ArtifactStore
from server.storage.db import Database
from server.storage.packs import PackBuffer, artifact_bytes, artifact_file, record_packed

PICTURES = [(b"\x89PNG an NF", "png"), (b"\xff\xd8 a sprite", "jpg"), (b"\x89PNG another", "png")]


@pytest.fixture
def packed(tmp_path):
    """Three pictures in one pack, recorded in a fresh database."""
    store = ArtifactStore(tmp_path / "artifacts")
    buffer = PackBuffer(store)
    keys = [buffer.add(data, suffix) for data, suffix in PICTURES]
    entries = buffer.write()
    database = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with database.session() as session:
        record_packed(session, entries)
        session.commit()
    yield store, database, keys, entries
    database.engine.dispose()


def test_each_picture_keeps_the_key_it_would_have_alone(packed):
    store, database, keys, entries = packed
    assert keys == [f"{hashlib.sha256(d).hexdigest()}.{s}" for d, s in PICTURES]
    assert [e.key for e in entries] == keys and len({e.pack_key for e in entries}) == 1
    names = "\n".join(keys).encode()  # the pack is named by its entries' keys
    assert entries[0].pack_key == f"{hashlib.sha256(names).hexdigest()}.pack"
    pack = store.path(entries[0].pack_key).read_bytes()
    assert pack == b"".join(data for data, _ in PICTURES)
    assert not any(store.path(key).exists() for key in keys)  # one file, not three
    with database.session() as session:
        assert [artifact_bytes(session, store, key) for key in keys] == [d for d, _ in PICTURES]


def test_a_buffer_is_full_at_its_limit_and_empty_after_writing(tmp_path):
    buffer = PackBuffer(ArtifactStore(tmp_path), limit=10)
    buffer.add(b"12345", "png")
    assert not buffer.full
    buffer.add(b"67890", "png")
    assert buffer.full and len(buffer.write()) == 2
    assert not buffer.full and buffer.write() == []


def test_a_damaged_or_missing_pack_gives_nothing_rather_than_wrong_bytes(packed):
    store, database, keys, entries = packed
    path = store.path(entries[0].pack_key)
    with database.session() as session:
        assert artifact_bytes(session, store, "../secret") is None
        assert artifact_bytes(session, store, f"{'0' * 64}.png") is None
        path.write_bytes(path.read_bytes().replace(b"sprite", b"SPRITE"))
        assert artifact_bytes(session, store, keys[1]) is None
        assert artifact_bytes(session, store, keys[0]) == PICTURES[0][0]  # the rest is whole
        path.unlink()
        assert artifact_bytes(session, store, keys[0]) is None


def test_a_file_is_copied_out_once_for_a_reader_that_wants_a_path(packed, monkeypatch):
    store, database, keys, _entries = packed
    with database.session() as session:
        path = artifact_file(session, store, keys[0])
        assert path == store.path(keys[0]) and path.read_bytes() == PICTURES[0][0]
        assert artifact_file(session, store, keys[0]) == path  # found as a file from now on

        def read_only(*_args):
            raise PermissionError("Read-only file system")

        monkeypatch.setattr(ArtifactStore, "put_bytes", read_only)
        assert artifact_file(session, store, keys[1]) is None  # a read-only copy: no path
        assert artifact_bytes(session, store, keys[1]) == PICTURES[1][0]  # still served
