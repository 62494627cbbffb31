"""The FastAPI application factory: settings, database, templates, static files, routers."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from server.config import Settings, load_settings
from server.jobs.queue import JobQueue, create_huey
from server.storage.artifacts import ArtifactStore
from server.storage.db import Database
from server.storage.errors import NotFoundError
from server.storage.uploads import UploadError
from server.web import plots
from server.web.actions import ActionError
from server.web.data import LayerTableCache
from server.web.table_query import QueryError

WEB_DIR = Path(__file__).resolve().parents[2] / "web"
HTMX_FILE = "vendor/htmx-2.0.4.min.js"
# Pinned: a test checks the vendored file against it, so a changed file cannot slip in.
HTMX_SHA384 = "sha384-HGfztofotfshcF7+8n44JQL2oJmowVChPTg48S+jvZoztPfvwD79OC/LTtG6dMp+"
IMMUTABLE = "public, max-age=31536000, immutable"
STAGE_LABELS = {
    "sweep": "sweep shards",
    "merge": "merge and Neuron Features",
    "indexes": "selectivity indexes",
    "featureviz": "feature visualisations",
    "dream": "DeepDream",
}


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = FastAPI(
        title="neuronscope",
        summary="What has each neuron of a CNN learned: top patches, Neuron Features, indexes.",
        version="0.1.0",
    )
    app.state.settings = settings
    app.state.database = Database(settings.database_url)
    app.state.store = ArtifactStore(settings.artifact_dir)
    app.state.tables = LayerTableCache()
    app.state.queue = JobQueue(create_huey(settings))
    templates = Jinja2Templates(directory=WEB_DIR / "templates")
    templates.env.globals.update(
        htmx_file=HTMX_FILE,
        htmx_integrity=HTMX_SHA384,
        line_plot=plots.line_plot,
        hue_plot=plots.hue_plot,
        bar_plot=plots.bar_plot,
        histogram=plots.histogram,
        query_string=query_string,
        token_required=bool(settings.token),
        allowed_roots=[str(root) for root in settings.allowed_roots],
        stage_labels=STAGE_LABELS,
    )
    app.state.templates = templates

    @app.middleware("http")
    async def server_timing(request: Request, call_next):
        """Report the time spent serving each request (``Server-Timing: app;dur=ms``).

        It runs from the request's turn on the event loop (set by the session dependency) to the
        rendered response (set by ``render``): the queries and the rendering, without time queued
        behind other requests or spent sending bytes; benchmarks/web.py reports the clients'
        latency, which includes both, beside it.
        """
        arrived = time.perf_counter()
        response = await call_next(request)
        started = getattr(request.state, "started", arrived)
        finished = getattr(request.state, "rendered", None) or time.perf_counter()
        response.headers["Server-Timing"] = f"app;dur={(finished - started) * 1000:.1f}"
        return response

    app.mount("/static", StaticFiles(directory=WEB_DIR / "static"), name="static")

    @app.get("/artifacts/{key}", include_in_schema=False)
    def artifact(key: str) -> Response:
        """Content-addressed images: a key never changes meaning, so cache it for a year."""
        try:
            path = app.state.store.path(key)
        except ValueError:
            path = None
        if path is None or not path.is_file():
            return JSONResponse({"detail": f"no artifact {key!r}"}, status_code=404)
        return FileResponse(path, headers={"Cache-Control": IMMUTABLE})

    @app.exception_handler(NotFoundError)
    def not_found(request: Request, error: NotFoundError) -> Response:
        return error_response(request, 404, str(error))

    @app.exception_handler(QueryError)
    def bad_query(request: Request, error: QueryError) -> Response:
        return error_response(request, 400, str(error))

    @app.exception_handler(UploadError)
    def refused_upload(request: Request, error: UploadError) -> Response:
        return error_response(request, error.status, str(error))

    @app.exception_handler(ActionError)
    def refused(request: Request, error: ActionError) -> Response:
        return error_response(request, error.status, str(error))

    from server.web import api, decompositions, pages, visualisations, work

    app.include_router(api.router)
    app.include_router(work.api)
    app.include_router(visualisations.api)
    app.include_router(visualisations.pages)
    app.include_router(decompositions.api)
    app.include_router(decompositions.pages)
    app.include_router(work.pages)  # before pages: /runs/new is not a run id
    app.include_router(pages.router)
    return app


def error_response(request: Request, status: int, message: str) -> Response:
    """A readable error: JSON for the API and .json twins, a small page otherwise."""
    path = request.url.path
    if path.startswith("/api/") or path.endswith(".json"):
        return JSONResponse({"detail": message}, status_code=status)
    if path.endswith(".csv"):
        return Response(f"error: {message}\n", status_code=status, media_type="text/plain")
    templates: Jinja2Templates = request.app.state.templates
    return templates.TemplateResponse(
        request, "error.html", {"status": status, "message": message}, status_code=status
    )


def query_string(pairs: list[tuple[str, str]]) -> str:
    """``?a=1&b=2`` for a list of pairs ('' when empty)."""
    return "?" + urlencode(pairs) if pairs else ""
