"""Shared fixtures: small image folders with known content, and an isolated data directory."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

COLOURS = {"red": (1.0, 0.0, 0.0), "green": (0.0, 0.8, 0.0), "blue": (0.0, 0.0, 1.0)}


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


def write_square_folder(root: Path, per_class: int = 8, size: int = 32, seed: int = 0) -> Path:
    """One subfolder per colour; each image a coloured square at a random place on grey."""
    rng = np.random.default_rng(seed)
    for name, colour in COLOURS.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            image = np.full((size, size, 3), 0.5) + rng.normal(0, 0.02, (size, size, 3))
            side = int(rng.integers(6, 12))
            top, left = rng.integers(0, size - side, size=2)
            image[top : top + side, left : left + side] = colour
            pixels = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i:03d}.png")
    return root


def write_photo(path: Path, width: int, height: int, fmt: str = "JPEG", seed: int = 0) -> Path:
    """A smooth colour field with a sharp-edged disc (placed by ``seed``): a shifted or
    mis-scaled decode shows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    centre = np.random.default_rng(seed).uniform(0.3, 0.7, 2)
    rows, cols = np.mgrid[0:height, 0:width]
    image = np.stack([cols / width, rows / height, 0.5 + 0.0 * rows], axis=-1)
    disc = np.hypot(rows - height * centre[0], cols - width * centre[1]) < min(width, height) / 4
    image[disc] = (1.0, 0.1, 0.2)
    Image.fromarray(np.round(image * 255).astype(np.uint8)).save(path, fmt, quality=92)
    return path


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


@pytest.fixture(scope="session")
def web_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.web_fixtures import analysed_data_dir

    return analysed_data_dir(tmp_path_factory.mktemp("web"))


@pytest.fixture
def client(web_data_dir: Path):
    from fastapi.testclient import TestClient

    from server.config import load_settings
    from server.web.app import create_app

    settings = load_settings({"NEURONSCOPE_DATA_DIR": str(web_data_dir)})
    with TestClient(create_app(settings)) as test_client:
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
