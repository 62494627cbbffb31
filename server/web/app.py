"""The FastAPI application factory: settings, database, queue, templates, static files, routers.

One router module per resource (``runs``, ``layers``, ``neurons``, ``jobs``, ``models``,
``datasets``, ``featureviz``, ``decompositions``, ``compositions``, ``notes``, ``compare``,
``artifacts``), each with its pages (and their ``.json``/``.csv`` twins,
:mod:`server.web.twins`), its forms and its JSON API.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from analysis.resize import ResizePolicy
from server.config import Settings, load_settings
from server.jobs.queue import JobQueue, create_huey
from server.storage.artifacts import ArtifactStore
from server.storage.db import Database
from server.web import (
    artifacts,
    compare,
    compositions,
    datasets,
    decompositions,
    featureviz,
    indexes,
    jobs,
    layers,
    models,
    neurons,
    notes,
    plots,
    runs,
)
from server.web.composition_picture import composition_picture
from server.web.errors import add_error_handlers
from server.web.glossary import glossary
from server.web.guard import RequestGuard
from server.web.layers import LayerTableCache
from server.web.security import csrf_token

WEB_DIR = Path(__file__).resolve().parents[2] / "web"
HTMX_FILE = "vendor/htmx-2.0.4.min.js"
# Pinned: a test checks the vendored file against it, so a changed file cannot slip in.
HTMX_SHA384 = "sha384-HGfztofotfshcF7+8n44JQL2oJmowVChPTg48S+jvZoztPfvwD79OC/LTtG6dMp+"
STAGE_LABELS = {
    "sweep": "sweep shards",
    "merge": "merge and Neuron Features",
    "indexes": "selectivity indexes",
    "featureviz": "feature visualisations",
    "dream": "DeepDream",
}
# In this order: a page's fixed paths (/runs/new) before the patterns that would take them.
RESOURCES = (
    runs,
    layers,
    neurons,
    jobs,
    models,
    datasets,
    featureviz,
    decompositions,
    compositions,
    notes,
    compare,
    indexes,
)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = FastAPI(
        title="neuronscope",
        summary="What has each neuron of a CNN learned: top patches, Neuron Features, indexes.",
        version="0.1.0",
    )
    app.state.settings = settings
    app.state.database = Database(settings.database_url, connections=settings.web_threads)
    app.state.store = ArtifactStore(settings.artifact_dir)
    app.state.store.sweep_partials()  # an upload killed mid-write left its temporary file
    app.state.tables = LayerTableCache()
    app.state.queue = JobQueue(create_huey(settings))
    app.state.templates = templates(settings)

    app.mount("/static", StaticFiles(directory=WEB_DIR / "static"), name="static")
    add_error_handlers(app)
    app.add_middleware(RequestGuard, settings=settings)
    app.include_router(artifacts.router)
    for resource in RESOURCES:
        for name in ("api", "forms", "pages", "redirects"):
            if hasattr(resource, name):
                app.include_router(getattr(resource, name))
    return app


def templates(settings: Settings) -> Jinja2Templates:
    """The pages' templates, with the plots and the settings every page may need."""
    found = Jinja2Templates(directory=WEB_DIR / "templates")
    found.env.auto_reload = False  # the templates ship with the code: no stat() per include
    found.env.globals.update(
        htmx_file=HTMX_FILE,
        htmx_integrity=HTMX_SHA384,
        line_plot=plots.line_plot,
        hue_plot=plots.hue_plot,
        bar_plot=plots.bar_plot,
        histogram=plots.histogram,
        overlaid_histograms=plots.overlaid_histograms,
        depth_plot=plots.depth_plot,
        composition_picture=composition_picture,
        glossary=glossary(),
        run_colours=plots.RUN_COLOURS,
        query_string=query_string,
        token_required=bool(settings.token),
        allowed_roots=[str(root) for root in settings.allowed_roots],
        stage_labels=STAGE_LABELS,
        csrf_token=csrf_token,
    )
    found.env.filters["resize_words"] = resize_words
    found.env.filters["named_label"] = named_label
    return found


def named_label(label: str, names: dict[str, str]) -> str:
    """A dataset label with the name the model's weights give it: "n01440764 · tench"."""
    return f"{label} · {names[label]}" if label in names else label


def resize_words(text: str | None) -> str:
    """A run's resize text for people: "whole image", "centre crop from 232 px, bicubic"."""
    try:
        policy = ResizePolicy.of(text or "whole")
    except ValueError:
        return str(text)
    words = "centre crop" if policy.crops else "whole image"
    if policy.resize_to is not None:
        words += f" from {policy.resize_to} px"
    return words + (f", {policy.interpolation}" if policy.interpolation != "bilinear" else "")


def query_string(pairs: list[tuple[str, str]]) -> str:
    """``?a=1&b=2`` for a list of pairs ('' when empty)."""
    return "?" + urlencode(pairs) if pairs else ""
