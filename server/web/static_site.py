"""A static copy of runs for a paper or a reviewer: every page of the chosen runs rendered by the
dashboard itself, saved as plain HTML files with relative links and the images they show, so the
folder opens from disk or any static host without a server.

Pages are asked of the application in this process (an ASGI call, no network), so a static page
is exactly what the server would show. Then each page is made to stand alone:

- links to pages in the copy become relative links to their files (``.../index.html``); links
  to anything else (other runs, jobs, a sort or a filter) become plain text;
- forms are left out: they change something, need a worker (upload, decompose, render, notes)
  or ask the server to filter; a banner says so. htmx is left out too (there is nothing to ask);
- the images and style sheet are copied beside the pages (hard links where the file system
  allows), and a small script of our own sorts and filters every table in the browser.
"""

from __future__ import annotations

import asyncio
import os
import posixpath
import re
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from html import unescape as html_unescape
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.compare.read import same_architecture
from server.progress import Progress
from server.runs.read import get_run
from server.storage.artifacts import ArtifactStore
from server.storage.packs import artifact_bytes
from server.storage.schema import Neuron
from server.web.app import WEB_DIR

STATIC_FILES = ("style.css", "neuronscope.js", "static-site.js")
MARKER = ".neuronscope-export"
LARGEST_TABLE = 5000  # rows of a layer table on one static page (the dashboard's largest page)
BANNER = (
    '<p class="static-banner">A static copy made with <code>neuronscope export</code> on {date}: '
    "reading only. Uploading, decomposing and rendering need the dashboard "
    "(<code>neuronscope serve</code>), so they are left out here.</p>"
)
_FORM = re.compile(r"<form\b.*?</form>", re.S | re.I)
_HX_ATTRIBUTE = re.compile(r"\s(?:hx|data-hx)-[a-z-]+=(?:\"[^\"]*\"|'[^']*')", re.I)
_HTMX = re.compile(
    r"<script\b[^>]*src=\"/static/vendor/[^\"]*\"[^>]*></script>|<meta name=\"htmx-config\"[^>]*>",
    re.I,
)
_LINK = re.compile(r"<a\b([^>]*?)\shref=\"(/[^\"]*)\"([^>]*)>(.*?)</a>", re.S | re.I)
_SOURCE = re.compile(r"\b(src|href)=\"(/(?:artifacts|static)/[^\"?#]+)\"", re.I)


class ExportError(ValueError):
    """An export that cannot be made as asked (a run not finished, a folder in use, a page the
    dashboard refused); the message says why."""


@dataclass
class StaticSite:
    """What an export wrote: its pages, copied files, bytes and seconds."""

    out: Path
    pages: int = 0
    files: int = 0
    bytes: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class PageRequest:
    """One page of the copy: the URL asked of the dashboard, and the file it becomes."""

    path: str  # the page's path as the dashboard routes it (the link other pages use)
    query: str = ""  # asked with this query (not part of the links to it)

    @property
    def file(self) -> str:
        """``runs/3/layers/features.17/index.html`` for ``/runs/3/layers/features.17``."""
        parts = [_safe(unquote(part)) for part in self.path.strip("/").split("/") if part]
        return "/".join([*parts, "index.html"])


def _safe(segment: str) -> str:
    """A path segment as a file name: no separators, nothing hidden, nothing outside."""
    cleaned = segment.replace(os.sep, "_").replace("/", "_")
    return cleaned if cleaned not in ("", ".", "..") else f"_{cleaned}"


def site_pages(session: Session, run_ids: list[int]) -> list[PageRequest]:
    """Every page of the runs, and the comparisons between them (each pair, the earlier run
    first; neuron by neuron for pairs of the same architecture)."""
    runs = [get_run(session, run_id) for run_id in sorted(set(run_ids))]
    pages = [
        PageRequest("/", "runs=" + ",".join(map(str, run_ids))),
        PageRequest("/indexes", f"run={runs[0].id}"),
    ]
    for run in runs:
        base = f"/runs/{run.id}"
        pages += [PageRequest(base), PageRequest(f"{base}/notes")]
        for layer in run.layers:
            layer_path = f"{base}/layers/{quote(layer.name)}"
            pages.append(PageRequest(layer_path, f"_size={LARGEST_TABLE}"))
            channels = session.scalars(
                select(Neuron.channel).where(Neuron.layer_id == layer.id).order_by(Neuron.channel)
            )
            pages += [PageRequest(f"{layer_path}/neurons/{channel}") for channel in channels]
    for i, first in enumerate(runs):
        for second in runs[i + 1 :]:
            pair = f"runs={first.id},{second.id}"
            pages.append(PageRequest(f"/compare/{first.id}-{second.id}", pair))
            if same_architecture([first, second]):
                pages += [
                    PageRequest(
                        f"/compare/{first.id}-{second.id}/layers/{quote(layer.name)}",
                        f"{pair}&layer={quote(layer.name)}&_size={LARGEST_TABLE}",
                    )
                    for layer in first.layers
                ]
    return pages


def export_site(app: FastAPI, run_ids: list[int], out: Path, progress: Progress) -> StaticSite:
    """Write the static copy of ``run_ids`` into ``out`` (made, or emptied of a former copy)."""
    started = time.perf_counter()
    with app.state.database.session() as session:
        for run_id in run_ids:
            status = get_run(session, run_id).status
            if status != "done":
                raise ExportError(f"run {run_id} is {status}: export it once it is done")
        pages = site_pages(session, run_ids)
    _prepare(out)
    site = StaticSite(out)
    links = {page.path: page.file for page in pages}
    links.update(_compare_aliases(pages))
    copied: set[str] = set()
    stamp = time.strftime("%Y-%m-%d")
    progress.start("rendering pages", len(pages), "pages")
    for done, (page, html) in enumerate(_rendered(app, pages), 1):
        standalone = standalone_html(html, page.file, links, copied, stamp)
        target = out / page.file
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(standalone, encoding="utf-8")
        site.pages += 1
        progress.update(done)
    progress.finish()
    store = app.state.store
    web_static = WEB_DIR / "static"
    with app.state.database.session() as session:
        for reference in sorted(copied):
            kind, _, name = reference.strip("/").partition("/")
            target = out / kind / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if kind == "artifacts" and not store.path(name).is_file():
                _write_packed(session, store, name, target)
            else:
                _place(store.path(name) if kind == "artifacts" else web_static / name, target)
            site.files += 1
    for name in STATIC_FILES:
        _place(web_static / name, out / "static" / name)
    site.bytes = sum(path.stat().st_size for path in out.rglob("*") if path.is_file())
    site.seconds = time.perf_counter() - started
    return site


def _prepare(out: Path) -> None:
    """An empty folder for the copy: made, or emptied of a former export (marked by MARKER);
    a folder holding anything else is refused rather than overwritten."""
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} is a file: give a folder for the static copy")
    if out.is_dir() and any(out.iterdir()):
        if not (out / MARKER).is_file():
            raise ExportError(
                f"{out} is not empty and holds no former export: give a new or empty folder"
            )
        for entry in out.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("a static copy written by neuronscope export; replaced by the next\n")


def _compare_aliases(pages: list[PageRequest]) -> dict[str, str]:
    """Links to a comparison carry their runs in the query (``/compare?runs=3,7``): the pages
    of the copy answer those links too."""
    return {
        _page_key("/compare", page.query): page.file
        for page in pages
        if page.path.startswith("/compare/")
    }


def _page_key(path: str, query: str) -> str:
    """What names a page of the copy: its path, and for a comparison its runs and layer (a
    link's other parameters, a filter or a sort, are for the dashboard's own table)."""
    if path == "/indexes":  # one definitions page, with the first exported run's examples
        return path
    if path != "/compare":
        return path if not query else f"{path}?{query}"
    asked = dict(parse_qsl(query))
    kept = {name: asked[name] for name in ("runs", "layer") if name in asked}
    return f"{path}?{urlencode(kept)}"


def _place(source: Path, target: Path) -> None:
    """``source`` at ``target``: a hard link where the file system allows, else a copy."""
    if target.exists():
        target.unlink()
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _write_packed(session: Session, store: ArtifactStore, key: str, target: Path) -> None:
    """A packed artifact (a run's pictures) written out of its pack at ``target``."""
    data = artifact_bytes(session, store, key)
    if data is None:
        raise ExportError(f"artifact {key} is missing from the store: its page cannot be copied")
    target.write_bytes(data)


def _rendered(app: FastAPI, pages: list[PageRequest]) -> Iterator[tuple[PageRequest, str]]:
    """Each page's HTML as the dashboard serves it (refusing a page that is not 200). The
    application runs on an event loop of its own thread, so a caller that has a loop running
    (a notebook, a test driving a browser) can export too."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        for page in pages:
            path = "/compare" if page.path.startswith("/compare/") else page.path
            asked = asyncio.run_coroutine_threadsafe(_get(app, path, page.query), loop)
            status, body = asked.result()
            if status != 200:
                raise ExportError(f"{page.path} answered {status}: {body[:200]!r}")
            yield page, body.decode("utf-8")
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


async def _get(app: FastAPI, path: str, query: str) -> tuple[int, bytes]:
    """One GET through the ASGI application, as a browser on this machine would send it."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": unquote(path),
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), (b"accept", b"text/html")],
        "client": ("127.0.0.1", 0),
        "server": ("127.0.0.1", 80),
    }
    status = 0
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, b"".join(chunks)


def standalone_html(
    html: str, file: str, links: dict[str, str], copied: set[str], date: str
) -> str:
    """A dashboard page made to stand alone at ``file`` in the copy (see the module doc)."""
    here = str(PurePosixPath(file).parent)

    def relative(target: str) -> str:
        return posixpath.relpath(target, here)

    def link(match: re.Match[str]) -> str:
        before, url, after, text = match.groups()
        parts = urlsplit(html_unescape(url))
        target = links.get(_page_key(parts.path, parts.query))
        if target is None:  # another run, a job, a sorted or filtered view: not in the copy
            return f'<span class="offline" title="not in this static copy">{text}</span>'
        fragment = f"#{parts.fragment}" if parts.fragment else ""
        return f'<a{before} href="{relative(target)}{fragment}"{after}>{text}</a>'

    def source(match: re.Match[str]) -> str:
        attribute, url = match.groups()
        copied.add(url)
        return f'{attribute}="{relative(url.lstrip("/"))}"'

    html = _FORM.sub("", html)
    html = _HTMX.sub("", html)
    html = _HX_ATTRIBUTE.sub("", html)
    html = _SOURCE.sub(source, html)  # first: a download link to an artifact stays a link
    html = _LINK.sub(link, html)
    html = html.replace("<main>", "<main>" + BANNER.format(date=date), 1)
    script = relative("static/static-site.js")
    return html.replace("</body>", f'<script src="{script}"></script>\n</body>', 1)
