"""Alembic migrations: upgrade, downgrade and upgrade again leave exactly the schema of the ORM,
column by column (types, nullability, defaults on the server), with its indexes, unique
constraints and foreign keys, on SQLite and on PostgreSQL."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from server.storage.db import downgrade, upgrade
from server.storage.schema import Base


def table_names(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def schema_drift(url: str) -> list[Any]:
    """What autogenerate would write to bring the migrated database to the ORM: empty when the
    migrations build the schema the code declares."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "compare_server_default": True}
            )
            return compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()


def check_round_trip(url: str) -> None:
    upgrade(url)
    assert table_names(url) == set(Base.metadata.tables)
    assert schema_drift(url) == []
    downgrade(url, "base")
    assert table_names(url) == set()
    upgrade(url)
    assert table_names(url) == set(Base.metadata.tables)
    assert schema_drift(url) == []


def test_upgrade_downgrade_upgrade_on_sqlite(tmp_path):
    check_round_trip(f"sqlite:///{tmp_path / 'schema.db'}")


def test_upgrade_downgrade_upgrade_on_postgresql(postgres_url):
    check_round_trip(postgres_url)


def test_a_drifted_column_is_seen(tmp_path):
    """The comparison is not blind: a column the migrations did not make is reported."""
    url = f"sqlite:///{tmp_path / 'drift.db'}"
    upgrade(url)
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.exec_driver_sql("ALTER TABLE run DROP COLUMN stats")
    engine.dispose()
    drift = schema_drift(url)
    assert [(kind, column.name) for kind, *_rest, column in drift] == [("add_column", "stats")]
