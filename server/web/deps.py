"""Request dependencies as annotated aliases (after FastAPI's full-stack template).

They and the handlers are ``async``: the work is short and CPU-bound (SQLite, Jinja), so it runs
on the event loop one request at a time instead of interleaving in a thread pool under the GIL,
which made every request as slow as the whole queue. Use several server processes for more
throughput (``neuronscope serve --workers N``).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Path, Request
from sqlalchemy.orm import Session

from server.storage.artifacts import ArtifactStore
from server.web.data import LayerTableCache


async def get_session(request: Request) -> AsyncIterator[Session]:
    # The request's turn on the event loop starts here: Server-Timing measures from this point.
    request.state.started = time.perf_counter()
    with request.app.state.database.session() as session:
        yield session


async def get_store(request: Request) -> ArtifactStore:
    return request.app.state.store


async def get_tables(request: Request) -> LayerTableCache:
    return request.app.state.tables


SessionDep = Annotated[Session, Depends(get_session)]
StoreDep = Annotated[ArtifactStore, Depends(get_store)]
TablesDep = Annotated[LayerTableCache, Depends(get_tables)]

# Ids fit a 32-bit signed integer (PostgreSQL's INTEGER); larger ones get a 422, not a 500.
MAX_ID = 2**31 - 1
RunId = Annotated[int, Path(ge=0, le=MAX_ID, description="run id")]
Channel = Annotated[int, Path(ge=0, le=MAX_ID, description="channel of the layer")]
JobRef = Annotated[int, Path(ge=0, le=MAX_ID, description="job id")]
