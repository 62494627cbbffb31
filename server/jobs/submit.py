"""Submitting work from the CLI or the web: plan jobs in one transaction, then send messages."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from server.jobs.queue import JobQueue
from server.storage.db import Database

T = TypeVar("T")
SUBMIT_TRIES = 3


def submit_work(
    database: Database, queue: JobQueue, plan: Callable[[Session], tuple[T, list[int]]]
) -> T:
    """Run ``plan`` (which creates or finds jobs and returns ``(value, ids to send)``) and send.

    Messages go out only after the commit, so a worker never receives a job it cannot see. Two
    submissions of the same work racing each other collide on the job key; the loser retries
    and finds the winner's jobs.
    """
    for attempt in range(SUBMIT_TRIES):
        try:
            with database.session() as session:
                value, to_send = plan(session)
        except IntegrityError:
            if attempt == SUBMIT_TRIES - 1:
                raise
            continue
        queue.send(to_send)
        return value
    raise AssertionError("unreachable")
