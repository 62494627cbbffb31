"""``neuronscope serve``: the dashboard on 127.0.0.1:8000 unless told otherwise."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

MAX_DEFAULT_PROCESSES = 4


def add_commands(commands: Any) -> None:
    serve = commands.add_parser("serve", help="serve the dashboard")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--workers",
        type=int,
        default=None,
        help=f"server processes (default: one per usable core, at most {MAX_DEFAULT_PROCESSES})",
    )
    serve.add_argument(
        "--log-level",
        choices=("warning", "info"),
        default="warning",
        help="warning (default): start-up, refusals of the server itself and errors; info: "
        "also one access line per request (client, method, path, status)",
    )
    serve.set_defaults(handler=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    if args.workers is not None and args.workers < 1:
        print("neuronscope serve: --workers must be at least 1", file=sys.stderr)
        return 2
    serve_dashboard(args.host, args.port, args.workers or default_processes(), args.log_level)
    return 0


def default_processes() -> int:
    """One server process per usable core, at most MAX_DEFAULT_PROCESSES: a process serves on
    one core at a time (Python's GIL), and on two cores one process missed the load goal of
    benchmarks/load.py (p95 195 ms) where two met it (92 ms)."""
    from analysis.machine import usable_cores

    return min(usable_cores(), MAX_DEFAULT_PROCESSES)


def serve_dashboard(host: str, port: int, workers: int = 1, log_level: str = "warning") -> None:
    import uvicorn

    from server.config import load_settings
    from server.storage.db import upgrade

    # The app (in every server process) answers to the address it is bound to: see
    # server.config.allowed_hosts.
    os.environ["NEURONSCOPE_BIND_HOST"] = host
    settings = load_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.database_url)  # once, before the worker processes start
    print(f"dashboard: http://{host}:{port}/  (Ctrl-C to stop)", flush=True)
    if host not in ("127.0.0.1", "localhost", "::1"):
        names = ", ".join(settings.allowed_hosts)
        print(f"answering to the host names {names} (add more: NEURONSCOPE_ALLOWED_HOSTS)")
    uvicorn.run(
        "server.web.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        lifespan="off",  # the app has no start-up or shut-down hooks
    )
