"""``neuronscope serve``: the dashboard on 127.0.0.1:8000 unless told otherwise."""

from __future__ import annotations

import argparse
import os
from typing import Any


def add_commands(commands: Any) -> None:
    serve = commands.add_parser("serve", help="serve the dashboard")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1, help="server processes (default 1)")
    serve.set_defaults(handler=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    serve_dashboard(args.host, args.port, args.workers)
    return 0


def serve_dashboard(host: str, port: int, workers: int = 1) -> None:
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
        log_level="warning",
        lifespan="off",  # the app has no start-up or shut-down hooks
    )
