"""The ``neuronscope`` command: parse arguments, dispatch, and turn known errors into one line.

Heavy imports (torch) happen inside the commands that need them, so ``neuronscope runs`` starts
quickly.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from analysis.allocator import reuse_freed_memory
from server.cli import (
    analyze,
    browse,
    compare,
    decompose,
    demo,
    export,
    featureviz,
    gc,
    jobs,
    serve,
    zoo,
)

EXIT_FAILURE = 1
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a writer whose reader left


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="neuronscope",
        description="Find what every neuron of a CNN has learned, over your own images.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    analyze.add_commands(commands)
    browse.add_commands(commands)
    compare.add_commands(commands)
    decompose.add_commands(commands)
    demo.add_commands(commands)
    export.add_commands(commands)
    jobs.add_commands(commands)
    serve.add_commands(commands)
    featureviz.add_commands(commands)
    gc.add_commands(commands)
    zoo.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    reuse_freed_memory()  # the analysis frees and reallocates large blocks all the time
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args) or 0
    except KeyboardInterrupt:
        print("neuronscope: interrupted", file=sys.stderr)
        return 130
    except _user_errors() as error:
        message = error.args[0] if error.args else str(error)
        print(f"neuronscope: error: {message}", file=sys.stderr)
        return EXIT_FAILURE


def _user_errors() -> tuple[type[BaseException], ...]:
    """Errors whose message is meant for the user, not a traceback."""
    from analysis.data import DatasetError
    from analysis.exported import ProgramInputError
    from analysis.layers import LayerListingError
    from analysis.models import ModelError
    from server.decompositions.composition import DecompositionError
    from server.featureviz.render import FeatureVizError
    from server.runs.disk import StorageError
    from server.runs.inputs import RunInputError
    from server.runs.register import RunBusyError
    from server.runs.selection import LayerSelectionError
    from server.storage.errors import NotFoundError
    from server.storage.uploads import UploadError
    from server.web.static_site import ExportError

    return (
        DatasetError,
        ModelError,
        ProgramInputError,
        LayerListingError,
        LayerSelectionError,
        StorageError,
        NotFoundError,
        RunBusyError,
        RunInputError,
        FeatureVizError,
        DecompositionError,
        UploadError,
        ExportError,
        FileNotFoundError,
    )


def run() -> NoReturn:
    """The console entry point: :func:`main` with the working directory importable, then
    leave at once.

    Tearing down an interpreter that imported torch and torchvision takes 0.8–1.2 s on this
    project's 2-core VM and achieves nothing: by the time ``main`` returns, every command has
    committed, written and closed what it produced. So the streams and logging are flushed and
    the process ends. An exception ``main`` does not turn into a message still propagates, with
    its traceback, through the normal exit.
    """
    working = str(Path.cwd())
    if working not in sys.path:  # as with `python -m`: `--model mymodels:net` finds
        sys.path.insert(0, working)  # ./mymodels.py; a console script alone would not
    try:
        code = main()
    except BrokenPipeError:  # the reader (`| head`) left: nothing more to say, no traceback
        code = EXIT_BROKEN_PIPE
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BrokenPipeError, ValueError):  # reader gone, stream closed
            stream.flush()
    logging.shutdown()
    os._exit(code)


if __name__ == "__main__":
    run()
