"""``neuronscope serve``: the dashboard on 127.0.0.1:8000 unless told otherwise."""

from __future__ import annotations

import argparse
from typing import Any


def add_commands(commands: Any) -> None:
    serve = commands.add_parser("serve", help="serve the dashboard")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000)
    serve.set_defaults(handler=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    serve_dashboard(args.host, args.port)
    return 0


def serve_dashboard(host: str, port: int) -> None:
    import uvicorn

    from server.web.app import create_app

    print(f"dashboard: http://{host}:{port}/  (Ctrl-C to stop)", flush=True)
    uvicorn.run(create_app(), host=host, port=port, log_level="warning")
