"""Alembic migrations: upgrade, downgrade and upgrade again leave the schema of the models."""

from __future__ import annotations

from sqlalchemy import create_engine, inspect

from server.storage.db import downgrade, upgrade
from server.storage.schema import Base


def table_names(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def check_round_trip(url: str) -> None:
    upgrade(url)
    assert table_names(url) == set(Base.metadata.tables)
    downgrade(url, "base")
    assert table_names(url) == set()
    upgrade(url)
    assert table_names(url) == set(Base.metadata.tables)


def test_upgrade_downgrade_upgrade_on_sqlite(tmp_path):
    check_round_trip(f"sqlite:///{tmp_path / 'schema.db'}")


def test_upgrade_downgrade_upgrade_on_postgresql(postgres_url):
    check_round_trip(postgres_url)
