"""``/indexes``: what every number of the tables and neuron pages means (docs/algorithms.md
§10, through :mod:`server.web.glossary`), each with the run's own neurons that score highest and
lowest on it, so a definition comes with pictures of what it picks out."""

from __future__ import annotations

from fastapi import Query, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from server.runs.read import EXTREME_COLUMNS, get_run, index_extremes, newest_run_id
from server.web.deps import MAX_ID, SessionDep
from server.web.glossary import glossary
from server.web.twins import Data, Page, page_router

pages = page_router()
INDEXES = Page("indexes.html")


def indexes_data(session: Session, run_id: int | None) -> Data:
    """Every definition, and for the ranked ones the run's extremes (the newest run's when
    none is named; none before the first run)."""
    chosen = run_id if run_id is not None else newest_run_id(session)
    run = get_run(session, chosen) if chosen is not None else None
    definitions = []
    for key, definition in glossary().items():
        entry = definition.as_json()
        if run is not None and key in EXTREME_COLUMNS:
            entry["examples"] = index_extremes(session, run.id, key)
        definitions.append(entry)
    return {
        "run": {"id": run.id, "model": run.model.spec} if run is not None else None,
        "definitions": definitions,
    }


@pages.get("/indexes")
def indexes_page(
    request: Request, session: SessionDep, run: int | None = Query(None, ge=0, le=MAX_ID)
) -> Response:
    return INDEXES.render(request, indexes_data(session, run))
