"""The ``neuronscope`` command called in the test's own process, and a data directory holding a
finished analysis, made once per test session for the tests that read one."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

from sqlalchemy import update

from server.cli.main import main
from server.config import load_settings
from server.storage.db import Database
from server.storage.schema import Dataset
from tests.support.images import write_square_folder
from tests.support.models import RED_DETECTOR_ARGS


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def red_detector_analysis(folder: Path, top_k: int) -> list[str]:
    """``analyze``'s arguments for the red detector's layers 1 and 4 over ``folder``."""
    args = ["--data", str(folder), "--layers", "1,4", "--top-k", str(top_k), "--workers", "0"]
    return ["analyze", *RED_DETECTOR_ARGS, *args, "--json"]


def analyze(capsys, folder, *extra: str) -> dict:
    code, out, err = run_cli(capsys, *red_detector_analysis(folder, 5), *extra)
    assert code == 0, err
    return json.loads(out)


@contextmanager
def environment(**values: str) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def analysed_data_dir(root: Path) -> Path:
    """A finished analysis of the red-detector network over coloured squares, in
    ``root/data`` over ``root/squares``: the test's own copy of one made once per session.

    Seventy tests start from it; analysing afresh for each cost a second apiece. The copy keeps
    the files' modification times, so the folder's fingerprint is the same, and its dataset
    is pointed at the copied folder, the one absolute path the database holds."""
    template = _analysed_template()
    shutil.copytree(template / "squares", root / "squares")
    shutil.copytree(template / "data", root / "data")
    settings = load_settings({"NEURONSCOPE_DATA_DIR": str(root / "data")})
    with Database(settings.database_url, migrate=False).session() as session:
        session.execute(update(Dataset).values(root=str((root / "squares").resolve())))
        session.commit()
    return root / "data"


@cache
def _analysed_template() -> Path:
    root = Path(tempfile.mkdtemp(prefix="neuronscope-analysed-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    folder = write_square_folder(root / "squares", per_class=8)
    with environment(NEURONSCOPE_DATA_DIR=str(root / "data")):
        code = main(red_detector_analysis(folder, 6))
    assert code == 0
    return root
