"""Request dependencies as annotated aliases (after FastAPI's full-stack template).

They and the handlers are plain ``def``: FastAPI runs them in a thread pool, so a query, a
decode or a file read never holds the event loop. The pool has as many threads as the database
pool has connections (:mod:`server.web.guard`), so a request waits for a thread, not for a
connection while holding the loop: that waited, blocked every other request from returning its
connection, and froze the server for the pool's 30 s timeout. A request that still finds no
connection within a few seconds is answered 503 with ``Retry-After``. Use several server
processes for more throughput on more cores (``neuronscope serve --workers N``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Path, Request
from sqlalchemy.orm import Session

from server.config import Settings
from server.jobs.read import job_record, workers_alive
from server.jobs.submit import submit_work
from server.storage.artifacts import ArtifactStore
from server.storage.errors import NotFoundError
from server.storage.schema import Job

T = TypeVar("T")

# Ids fit a 32-bit signed integer (PostgreSQL's INTEGER); larger ones name nothing.
MAX_ID = 2**31 - 1


def get_session(request: Request) -> Iterator[Session]:
    # The request's turn on the event loop starts here: Server-Timing measures from this point.
    request.state.started = time.perf_counter()
    with request.app.state.database.session() as session:
        yield session


async def get_store(request: Request) -> ArtifactStore:
    return request.app.state.store


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


class Submitter:
    """Asks the workers for work: plans its jobs in one transaction, then sends their messages
    (after the commit, so a worker never receives a job it cannot see)."""

    def __init__(self, request: Request) -> None:
        self.database = request.app.state.database
        self.queue = request.app.state.queue

    def plan(self, plan: Callable[[Session], tuple[T, list[int]]]) -> T:
        """``plan`` creates or finds jobs and returns (its answer, the job ids to send)."""
        return submit_work(self.database, self.queue, plan)

    def job(self, action: Callable[[Session], tuple[Job, bool]]) -> dict[str, Any]:
        """One job: ``action`` returns it and whether it needs a message; the job's record."""

        def plan(session: Session) -> tuple[dict[str, Any], list[int]]:
            job, ready = action(session)
            return job_record(job), [job.id] if ready else []

        return self.plan(plan)


async def get_submitter(request: Request) -> Submitter:
    return Submitter(request)


def no_live_worker(request: Request, session: Session, waiting: bool) -> bool:
    """Whether a page waits for work that no live worker will do (the page then says so,
    instead of showing "running" forever)."""
    timeout = request.app.state.settings.heartbeat_timeout
    return bool(waiting) and not workers_alive(session, timeout)


SessionDep = Annotated[Session, Depends(get_session)]
StoreDep = Annotated[ArtifactStore, Depends(get_store)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
SubmitDep = Annotated[Submitter, Depends(get_submitter)]

# API paths take typed ids: a non-number or one past MAX_ID is a 422 with the reason.
RunId = Annotated[int, Path(ge=0, le=MAX_ID, description="run id")]
Channel = Annotated[int, Path(ge=0, le=MAX_ID, description="channel of the layer")]
JobId = Annotated[int, Path(ge=0, le=MAX_ID, description="job id")]
DecompositionId = Annotated[int, Path(ge=0, le=MAX_ID, description="decomposition id")]


def is_number(text: str) -> bool:
    """ASCII digits only: ``str.isdigit`` also accepts '²' and '١', which ``int`` refuses or
    reads as another number."""
    return text.isascii() and text.isdigit()


def parse_int(text: str, what: str) -> int:
    """A non-negative id from a page's URL segment; anything else names no page (404)."""
    if not is_number(text) or int(text) > MAX_ID:
        raise NotFoundError(f"{what} must be a number from 0 to {MAX_ID}, not {text!r}")
    return int(text)


def _page_id(name: str, what: str) -> Any:
    """A page's id from its path segment ``name``, as :func:`parse_int` reads it."""

    async def read(request: Request) -> int:
        return parse_int(request.path_params[name], what)

    return Depends(read)


# Page paths take ids as text and answer 404 for one that names no page, as a site does.
RunRef = Annotated[int, _page_id("run_id", "a run id")]
ChannelRef = Annotated[int, _page_id("channel", "a channel")]
JobRef = Annotated[int, _page_id("job_id", "a job id")]
DecompositionRef = Annotated[int, _page_id("decomposition_id", "a decomposition id")]
