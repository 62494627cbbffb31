"""The Huey queue: SqliteHuey beside the SQLite database, PostgresHuey on a lab's PostgreSQL.

Messages are JSON, not pickles: anyone who can write to the queue's table could otherwise run
code in every worker. A message carries one thing, the id of a job row.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from huey import PostgresHuey, SqliteHuey
from huey.api import Huey
from huey.registry import Message
from huey.serializer import Serializer
from sqlalchemy.engine import make_url

from server.config import Settings
from server.storage.db import schema_lock

QUEUE_NAME = "neuronscope"
TASK_NAME = "run_job"
_DATETIME_FIELDS = ("eta", "expires_resolved")


class JsonMessageSerializer(Serializer):
    """Huey messages as JSON; anything that is not plain data is refused, never pickled."""

    def _serialize(self, data: Any) -> bytes:
        if not isinstance(data, Message):
            return json.dumps({"value": data}).encode()
        fields = data._asdict()
        for name in ("on_complete", "on_error", "chord_config"):
            if fields[name] is not None:
                raise ValueError(f"neuronscope queue messages carry no {name}")
        for name in _DATETIME_FIELDS:
            if isinstance(fields[name], datetime):
                fields[name] = fields[name].isoformat()
        fields["args"] = list(fields["args"])
        return json.dumps({"message": fields}).encode()

    def _deserialize(self, data: bytes) -> Any:
        payload = json.loads(data)
        if "message" not in payload:
            return payload["value"]
        fields = payload["message"]
        for name in _DATETIME_FIELDS:
            if isinstance(fields.get(name), str):
                fields[name] = datetime.fromisoformat(fields[name])
        fields["args"] = tuple(fields["args"])
        return Message(**fields)


def create_huey(settings: Settings) -> Huey:
    """The queue for ``settings``: in the database when it is PostgreSQL, else a SQLite file."""
    options: dict[str, Any] = {"results": False, "serializer": JsonMessageSerializer()}
    url = make_url(settings.database_url)
    if url.get_backend_name() == "postgresql":
        dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        with schema_lock(settings.database_url):  # it creates its tables if they are missing
            return PostgresHuey(QUEUE_NAME, dsn=dsn, **options)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return SqliteHuey(QUEUE_NAME, filename=str(settings.data_dir / "queue.db"), **options)


class JobQueue:
    """Sends "job N is ready" messages, and (in a worker) routes them to ``handler``."""

    def __init__(self, huey: Huey, handler: Callable[[int], None] | None = None) -> None:
        self.huey = huey
        receive = handler or _handled_elsewhere

        def deliver(job_id: int) -> None:
            # Defined here so that every process registers the task under the same name.
            receive(job_id)

        self._task = huey.task(name=TASK_NAME)(deliver)

    def send(self, job_ids: Iterable[int]) -> None:
        for job_id in job_ids:
            self._task(int(job_id))

    def pending_job_ids(self) -> set[int]:
        """Job ids that have a message waiting in the queue."""
        pending = set()
        for raw in self.huey.storage.enqueued_items():
            message = self.huey.serializer.deserialize(raw)
            if isinstance(message, Message) and message.args:
                pending.add(int(message.args[0]))
        return pending


def _handled_elsewhere(job_id: int) -> None:
    raise RuntimeError(f"job {job_id} reached a process that is not a worker")
