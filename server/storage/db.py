"""Engine and sessions for SQLite (the embedded default) and PostgreSQL, and schema upgrades."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker

ALEMBIC_DIR = Path(__file__).resolve().parents[2] / "alembic"
# Any fixed 64-bit number, the same in every process that migrates ('nscope' in ASCII).
SCHEMA_LOCK = 0x6E73636F7065


# How long a request waits for a free connection before it is answered 503 (Retry-After).
CHECKOUT_TIMEOUT = 5.0


def make_engine(url: str, connections: int | None = None) -> Engine:
    """An engine with SQLite set up for a web process and a worker sharing one file.

    ``connections``: a pool of that many (the web's threads) plus half as many again for
    requests that still hold one while their response goes out, each waited for at most
    CHECKOUT_TIMEOUT; None keeps SQLAlchemy's defaults (the CLI and workers).
    """
    pool: dict[str, Any] = {}
    if connections is not None:
        pool = {
            "pool_size": connections,
            "max_overflow": max(1, connections // 2),
            "pool_timeout": CHECKOUT_TIMEOUT,
        }
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30}, **pool)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, **pool)


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(ALEMBIC_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the schema at ``url`` up to ``revision`` (run at every start; cheap when current).

    Servers and workers starting together all call this; a lock lets one migrate at a time.
    """
    with schema_lock(url):
        command.upgrade(alembic_config(url), revision)


@contextmanager
def schema_lock(url: str) -> Iterator[None]:
    """One process at a time changes the schema (our migrations, the queue's tables): a
    PostgreSQL advisory lock, or a file lock beside a SQLite database."""
    if url.startswith("postgresql"):
        engine = create_engine(url)
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": SCHEMA_LOCK})
                try:
                    yield
                finally:
                    connection.execute(
                        text("SELECT pg_advisory_unlock(:key)"), {"key": SCHEMA_LOCK}
                    )
        finally:
            engine.dispose()
        return
    path = url.split("///", 1)[-1] if url.startswith("sqlite") else ""
    if not path or path == ":memory:":
        yield
        return
    lock_file = Path(path).with_name(Path(path).name + ".migrate-lock")
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with lock_file.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def downgrade(url: str, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)


class Database:
    """One engine and its session factory."""

    def __init__(self, url: str, migrate: bool = True, connections: int | None = None) -> None:
        self.url = url
        if migrate:
            upgrade(url)
        self.engine = make_engine(url, connections)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on any error."""
        session = self._sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()
