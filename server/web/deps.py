"""Request dependencies as annotated aliases (after FastAPI's full-stack template)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from server.artifacts import ArtifactStore
from server.web.data import LayerTableCache


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.database.session() as session:
        yield session


def get_store(request: Request) -> ArtifactStore:
    return request.app.state.store


def get_tables(request: Request) -> LayerTableCache:
    return request.app.state.tables


SessionDep = Annotated[Session, Depends(get_session)]
StoreDep = Annotated[ArtifactStore, Depends(get_store)]
TablesDep = Annotated[LayerTableCache, Depends(get_tables)]
