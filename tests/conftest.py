"""Shared fixtures: small image folders with known content, isolated data directories, a web
client over an analysed run, and the machine's PostgreSQL. Helpers live in ``tests/support``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.images import write_square_folder
from tests.support.web import web_client


@pytest.fixture(scope="session", autouse=True)
def throwaway_default_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A test that does not name its data directory writes to a throwaway one, never to the
    user's (~/.local/share/neuronscope). Set outside ``monkeypatch``, so even a test's
    ``monkeypatch.undo()`` falls back to it."""
    before = os.environ.get("NEURONSCOPE_DATA_DIR")
    os.environ["NEURONSCOPE_DATA_DIR"] = str(tmp_path_factory.mktemp("default-data"))
    yield
    if before is None:
        del os.environ["NEURONSCOPE_DATA_DIR"]
    else:
        os.environ["NEURONSCOPE_DATA_DIR"] = before


@pytest.fixture
def square_folder(tmp_path: Path) -> Path:
    return write_square_folder(tmp_path / "squares")


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh NEURONSCOPE_DATA_DIR (SQLite database and artifacts) for CLI tests."""
    directory = tmp_path / "neuronscope-data"
    monkeypatch.setenv("NEURONSCOPE_DATA_DIR", str(directory))
    monkeypatch.delenv("NEURONSCOPE_DATABASE_URL", raising=False)
    return directory


@pytest.fixture
def analysed_dir(tmp_path: Path) -> Path:
    """A fresh data directory holding one finished run with indexes (run 1: the red detector
    over coloured squares), for a test that adds to it."""
    from tests.support.cli import analysed_data_dir

    return analysed_data_dir(tmp_path)


@pytest.fixture(scope="session")
def web_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.support.cli import analysed_data_dir

    return analysed_data_dir(tmp_path_factory.mktemp("web"))


@pytest.fixture
def client(web_data_dir: Path):
    from server.config import load_settings

    settings = load_settings({"NEURONSCOPE_DATA_DIR": str(web_data_dir)})
    with web_client(settings) as test_client:
        yield test_client


POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@pytest.fixture
def postgres_url() -> str:
    """The machine's PostgreSQL, emptied of our tables; skipped where none runs."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    engine = create_engine(POSTGRES_URL)
    try:
        with engine.begin() as connection:
            connection.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
    except OperationalError as error:
        pytest.skip(f"no PostgreSQL at 127.0.0.1:5432 ({error.orig})")
    finally:
        engine.dispose()
    return POSTGRES_URL
