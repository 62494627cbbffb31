"""Content-addressed images and arrays: a key never changes meaning, so they are cached a year."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, Response

router = APIRouter(include_in_schema=False)

IMMUTABLE = "public, max-age=31536000, immutable"


@router.get("/artifacts/{key}")
def artifact(request: Request, key: str) -> Response:
    try:
        path = request.app.state.store.path(key)
    except ValueError:
        path = None
    if path is None or not path.is_file():
        return JSONResponse({"detail": f"no artifact {key[:80]!r}"}, status_code=404)
    return FileResponse(path, headers={"Cache-Control": IMMUTABLE})
