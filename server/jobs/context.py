"""What a job's handler is given: its job, storage, the analysis settings, and where to report
progress."""

from __future__ import annotations

from dataclasses import dataclass, field

from server.progress import Progress
from server.runs.inputs import ModelCache
from server.runs.stages import AnalysisSettings
from server.storage.artifacts import ArtifactStore
from server.storage.db import Database
from server.storage.schema import Job


@dataclass
class JobContext:
    """What a handler gets: its job (a detached copy), storage, and where to report progress."""

    job: Job
    database: Database
    store: ArtifactStore
    settings: AnalysisSettings
    progress: Progress
    models: ModelCache = field(default_factory=ModelCache)
