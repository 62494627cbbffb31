"""``neuronscope gc``: only files that nothing names, and that are not brand new, are deleted."""

from __future__ import annotations

import json
import os
import time

from server.storage.artifacts import ArtifactStore
from tests.support.cli import run_cli

HOUR = 3600


def aged(store: ArtifactStore, key: str, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(store.path(key), (then, then))


def test_gc_deletes_unnamed_old_files_only(capsys, analysed_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("NEURONSCOPE_DATA_DIR", str(analysed_dir))
    capsys.readouterr()  # what making the analysed run printed
    store = ArtifactStore(analysed_dir / "artifacts")
    old_orphan = store.put_bytes(b"left by a deleted run", "png")
    new_orphan = store.put_bytes(b"written by a job that has not committed yet", "png")
    aged(store, old_orphan, 2 * HOUR)
    named = sorted(
        p.name for p in store.root.glob("??/*") if p.name not in (old_orphan, new_orphan)
    )
    for key in named:
        aged(store, key, 2 * HOUR)  # old, but named by the run: kept

    code, out, _ = run_cli(capsys, "gc", "--dry-run", "--json")
    assert code == 0 and json.loads(out) == {
        "files": 1, "bytes": 21, "deleted": False, "float_arrays_forgotten": 0,
    }  # fmt: skip
    assert store.path(old_orphan).exists()
    code, out, _ = run_cli(capsys, "gc")
    assert code == 0 and "deleted 1 artifact files" in out
    assert not store.path(old_orphan).exists() and store.path(new_orphan).exists()
    assert all(store.path(key).exists() for key in named)

    check_packs_go_with_the_last_entry_named(capsys, analysed_dir, store)

    code, _out, err = run_cli(capsys, "neuron", "1", "4", "0", "--nf-array", str(tmp_path / "a"))
    assert code == 0, err
    array_key = json.loads(run_cli(capsys, "neuron", "1", "4", "0", "--json")[1])["nf_array"]
    aged(store, array_key.rsplit("/", 1)[-1], 2 * HOUR)
    code, out, _ = run_cli(capsys, "gc", "--float-arrays", "--json")
    assert json.loads(out)["float_arrays_forgotten"] == 1 and json.loads(out)["files"] == 1
    assert json.loads(run_cli(capsys, "neuron", "1", "4", "0", "--json")[1])["nf_array"] is None
    code, _out, err = run_cli(capsys, "neuron", "1", "4", "0", "--nf-array", str(tmp_path / "b"))
    assert code == 0 and (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes()


def check_packs_go_with_the_last_entry_named(capsys, analysed_dir, store) -> None:
    """The run's pictures lie in pack files, kept while a neuron names any of their entries; a
    pack whose entries nothing names goes, with the rows saying where its entries lay."""
    from sqlalchemy import func, select

    from server.config import load_settings
    from server.storage.db import Database
    from server.storage.packs import PackBuffer, artifact_bytes, record_packed
    from server.storage.schema import PackedArtifact

    database = Database(load_settings().database_url)
    buffer = PackBuffer(store)
    orphans = [buffer.add(b"an NF of a deleted run", "png"), buffer.add(b"its sprite", "jpg")]
    entries = buffer.write()
    buffer.add(b"an NF whose run commits as gc runs", "png")
    fresh = buffer.write()  # a new pack: neither it nor its row is touched yet
    with database.session() as session:
        record_packed(session, entries + fresh)
        session.commit()
        assert artifact_bytes(session, store, orphans[1]) == b"its sprite"
        others = {entries[0].pack_key, fresh[0].pack_key}
        run_packs = set(session.scalars(select(PackedArtifact.pack_key))) - others
        rows = session.scalar(select(func.count()).select_from(PackedArtifact))
    assert run_packs and all(store.path(pack).exists() for pack in run_packs)
    aged(store, entries[0].pack_key, 2 * HOUR)
    code, out, _ = run_cli(capsys, "gc", "--json")
    assert code == 0 and json.loads(out)["files"] == 1
    assert not store.path(entries[0].pack_key).exists()
    assert all(store.path(pack).exists() for pack in run_packs)
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(PackedArtifact)) == rows - 2
        assert artifact_bytes(session, store, orphans[1]) is None
        assert artifact_bytes(session, store, fresh[0].key) is not None
