"""Settings, read once from the environment into one typed object."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


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
    allowed_roots: tuple[Path, ...] = ()
    max_upload_bytes: int = 20 * 1024 * 1024
    max_upload_pixels: int = 40_000_000

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
        max_upload_bytes=int(env.get("NEURONSCOPE_MAX_UPLOAD_BYTES") or 20 * 1024 * 1024),
        max_upload_pixels=int(env.get("NEURONSCOPE_MAX_UPLOAD_PIXELS") or 40_000_000),
        allowed_roots=tuple(
            Path(root).expanduser().resolve()
            for root in (env.get("NEURONSCOPE_ALLOWED_ROOTS") or str(data_dir)).split(os.pathsep)
            if root
        ),
    )
