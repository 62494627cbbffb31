"""``neuronscope export``: a static copy of runs (plain HTML with relative links and the images
it shows) for a paper's readers or reviewers, openable from disk or any static host."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_commands(commands: Any) -> None:
    export = commands.add_parser(
        "export",
        help="write runs' pages, and the comparisons between them, as a static site",
    )
    export.add_argument("runs", type=int, nargs="+", help="run ids")
    export.add_argument(
        "--out", type=Path, required=True, help="the folder to write (made; a former export "
        "there is replaced)"
    )  # fmt: skip
    export.set_defaults(handler=run_export)


def run_export(args: argparse.Namespace) -> int:
    from server.cli.progress import TerminalProgress
    from server.config import load_settings
    from server.runs.disk import readable_bytes
    from server.web.app import create_app
    from server.web.static_site import export_site

    app = create_app(load_settings())
    site = export_site(app, args.runs, args.out.expanduser().resolve(), TerminalProgress())
    print(
        f"{site.pages} pages and {site.files} images, {readable_bytes(site.bytes)}, in "
        f"{site.seconds:.1f} s: open {site.out / 'index.html'}"
    )
    return 0
