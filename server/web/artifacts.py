"""Content-addressed images and arrays: a key never changes meaning, so they are cached a year."""

from __future__ import annotations

import mimetypes

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from server.storage.packs import artifact_bytes

router = APIRouter(include_in_schema=False)

IMMUTABLE = "public, max-age=31536000, immutable"


@router.get("/artifacts/{key}")
def artifact(request: Request, key: str) -> Response:
    """The artifact's own file, or its bytes from the pack that holds it (a run's pictures)."""
    store = request.app.state.store
    try:
        path = store.path(key)
    except ValueError:
        return _missing(key)
    if path.is_file():
        return FileResponse(path, headers={"Cache-Control": IMMUTABLE})
    with request.app.state.database.session() as session:
        data = artifact_bytes(session, store, key)
    if data is None:
        return _missing(key)
    media_type = mimetypes.guess_type(key)[0] or "application/octet-stream"
    return Response(data, media_type=media_type, headers={"Cache-Control": IMMUTABLE})


def _missing(key: str) -> Response:
    return JSONResponse({"detail": f"no artifact {key[:80]!r}"}, status_code=404)
