"""The ``neuronscope`` command called in the test's own process, and a data directory holding a
finished analysis, made once per test session for the tests that read one."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from server.cli.main import main
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
    """Analyse the red-detector network over coloured squares into ``root/data``."""
    data_dir = root / "data"
    folder = write_square_folder(root / "squares", per_class=8)
    with environment(NEURONSCOPE_DATA_DIR=str(data_dir)):
        code = main(red_detector_analysis(folder, 6))
    assert code == 0
    return data_dir
