"""Settings, read once from the environment into one typed object."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
WILDCARD_ADDRESSES = ("0.0.0.0", "::", "")


@dataclass(frozen=True)
class Settings:
    """Where neuronscope keeps its database and artifacts, and what it computes on.

    ``NEURONSCOPE_DATA_DIR`` (default ``~/.local/share/neuronscope``) holds the SQLite database,
    the artifact store and the demo's cache; ``NEURONSCOPE_DATABASE_URL`` overrides the database
    (a PostgreSQL URL for a lab); ``NEURONSCOPE_DEVICE`` picks the torch device.
    """

    data_dir: Path
    database_url: str
    device: str
    heartbeat_timeout: float = 60.0
    token: str | None = None
    # Who writes with the lab token, when a note's author gives no name (NEURONSCOPE_TOKEN_NAME).
    token_name: str | None = None
    allowed_roots: tuple[Path, ...] = ()
    max_upload_bytes: int = 20 * 1024 * 1024
    max_upload_pixels: int = 40_000_000
    # Host names the dashboard answers to (a DNS-rebinding page names its own): the address it is
    # bound to, loopback, and what the operator adds with NEURONSCOPE_ALLOWED_HOSTS.
    allowed_hosts: tuple[str, ...] = LOOPBACK_HOSTS
    # Requests served at once per server process (threads, and database connections to match).
    web_threads: int = 16

    @property
    def artifact_dir(self) -> Path:
        return self.data_dir / "artifacts"

    @property
    def demo_dir(self) -> Path:
        return self.data_dir / "demo"


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    default_dir = Path.home() / ".local" / "share" / "neuronscope"
    data_dir = Path(env.get("NEURONSCOPE_DATA_DIR") or default_dir).expanduser().resolve()
    database_url = env.get("NEURONSCOPE_DATABASE_URL") or f"sqlite:///{data_dir / 'neuronscope.db'}"
    return Settings(
        data_dir=data_dir,
        database_url=database_url,
        device=env.get("NEURONSCOPE_DEVICE", "cpu"),
        heartbeat_timeout=float(env.get("NEURONSCOPE_HEARTBEAT_TIMEOUT") or 60),
        token=env.get("NEURONSCOPE_TOKEN") or None,
        token_name=(env.get("NEURONSCOPE_TOKEN_NAME") or "").strip() or None,
        max_upload_bytes=int(env.get("NEURONSCOPE_MAX_UPLOAD_BYTES") or 20 * 1024 * 1024),
        max_upload_pixels=int(env.get("NEURONSCOPE_MAX_UPLOAD_PIXELS") or 40_000_000),
        allowed_hosts=allowed_hosts(env),
        web_threads=max(1, int(env.get("NEURONSCOPE_WEB_THREADS") or 16)),
        allowed_roots=tuple(
            Path(root).expanduser().resolve()
            for root in (env.get("NEURONSCOPE_ALLOWED_ROOTS") or str(data_dir)).split(os.pathsep)
            if root
        ),
    )


def allowed_hosts(env: Mapping[str, str]) -> tuple[str, ...]:
    """Loopback names, the address ``serve`` was bound to (``NEURONSCOPE_BIND_HOST``; bound to
    every interface, this machine's own names and addresses), and NEURONSCOPE_ALLOWED_HOSTS
    (comma-separated names or addresses, without ports)."""
    hosts = list(LOOPBACK_HOSTS)
    bound = env.get("NEURONSCOPE_BIND_HOST", "127.0.0.1").strip("[]")
    if bound in WILDCARD_ADDRESSES:
        hosts += machine_names()
    else:
        hosts.append(bound)
    extra = env.get("NEURONSCOPE_ALLOWED_HOSTS") or ""
    hosts += [host.strip().strip("[]").lower() for host in extra.split(",") if host.strip()]
    return tuple(dict.fromkeys(host.lower() for host in hosts))


def machine_names() -> list[str]:
    """This machine's host name, its fully qualified name and their addresses."""
    import socket

    names = [socket.gethostname(), socket.getfqdn()]
    for name in list(names):
        with contextlib.suppress(OSError):
            names += socket.gethostbyname_ex(name)[2]
    return names
