"""A lab's notes in the browser and the API: write a neuron's label and note (each edit kept as
a version), list a run's notes, and search every run's notes by their words.

Writing needs the lab token when one is set, like every change. The author is the name the
writer gives (a form remembers it in a cookie), else the lab token's name
(``NEURONSCOPE_TOKEN_NAME``), else "anonymous".
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from server.notes.read import MAX_RESULTS, NOTE_COLUMNS, find_notes, note_of
from server.notes.write import MAX_AUTHOR, MAX_LABEL, MAX_TEXT, NoteError, add_note
from server.runs.read import get_neuron, get_run
from server.web.deps import MAX_ID, Channel, ChannelRef, RunId, RunRef, SessionDep
from server.web.errors import RequestError
from server.web.forms import OptionalFormText
from server.web.security import check_write_access, forms_router, see_other
from server.web.twins import Data, Page, page_router

pages = page_router()
forms = forms_router()
api = APIRouter(prefix="/api", tags=["notes"])

AUTHOR_COOKIE = "neuronscope_author"
MAX_WORDS = 200  # characters of a search

NOTES = Page("notes.html", rows=lambda data: data["notes"], columns=NOTE_COLUMNS)


def author_of(request: Request, given: str | None) -> str:
    """Who writes: the name given, else the one this browser gave before, else the token's."""
    for name in (given, request.cookies.get(AUTHOR_COOKIE), request.app.state.settings.token_name):
        if name and name.strip():
            return name.strip()
    return ""


def write_note(
    session: Session, run_id: int, layer: str, channel: int, label: str, text: str, author: str
) -> Data:
    """A new version of the neuron's note; the note and its history as they now are."""
    neuron = get_neuron(session, run_id, layer, channel)
    try:
        add_note(session, neuron, label, text, author)
    except NoteError as error:
        raise RequestError(str(error)) from None
    return note_of(session, neuron, run_id, layer)


@forms.post("/runs/{run_id}/layers/{layer_name}/neurons/{channel}/note")
def note_form(
    request: Request,
    session: SessionDep,
    run_id: RunRef,
    layer_name: str,
    channel: ChannelRef,
    label: OptionalFormText = None,
    text: OptionalFormText = None,
    author: OptionalFormText = None,
    token: OptionalFormText = None,
) -> Response:
    check_write_access(request, token)
    name = author_of(request, author)
    write_note(session, run_id, layer_name, channel, label or "", text or "", name)
    response = see_other(
        request, f"/runs/{run_id}/layers/{layer_name}/neurons/{channel}#note", token
    )
    if author and author.strip():
        response.set_cookie(AUTHOR_COOKIE, author.strip()[:MAX_AUTHOR], samesite="strict")
    return response


class NoteBody(BaseModel):
    label: str = Field("", max_length=MAX_LABEL, description="a short name: one line")
    text: str = Field("", max_length=MAX_TEXT, description="free text")
    author: str = Field("", max_length=MAX_AUTHOR, description="default: the token's name")


NOTE_PATH = "/runs/{run_id}/layers/{layer_name}/neurons/{channel}/note"


@api.get(NOTE_PATH, summary="A neuron's note (null when none) and every version, newest first")
def api_note(session: SessionDep, run_id: RunId, layer_name: str, channel: Channel) -> Data:
    return note_of(session, get_neuron(session, run_id, layer_name, channel), run_id, layer_name)


@api.put(
    NOTE_PATH,
    summary="Write a neuron's label and note (a new version; empty label and text clear it)",
)
def api_write_note(
    request: Request,
    session: SessionDep,
    run_id: RunId,
    layer_name: str,
    channel: Channel,
    body: NoteBody,
) -> Data:
    check_write_access(request)
    name = author_of(request, body.author)
    return write_note(session, run_id, layer_name, channel, body.label, body.text, name)


def notes_data(session: Session, words: str, run_id: int | None, label: str | None) -> Data:
    """Current notes, newest first, matching the search (all when it is empty)."""
    if len(words) > MAX_WORDS:
        raise RequestError(f"a search is at most {MAX_WORDS} characters")
    if run_id is not None:
        get_run(session, run_id)
    found = find_notes(session, words, run_id, label or None)
    return {
        "q": words,
        "run": run_id,
        "label": label or None,
        "notes": found,
        "limited": len(found) >= MAX_RESULTS,
    }


@pages.get("/notes")
def notes_page(
    request: Request,
    session: SessionDep,
    q: str = "",
    run: int | None = Query(None, ge=0, le=MAX_ID),
    label: str | None = Query(None, max_length=MAX_LABEL),
) -> Response:
    return NOTES.render(request, notes_data(session, q, run, label))


@api.get("/notes", summary="Search the lab's notes of every run by their label or text")
def api_notes(
    session: SessionDep,
    q: str = Query("", max_length=MAX_WORDS, description="words in the label or the text"),
    run: int | None = Query(None, ge=0, le=MAX_ID, description="one run's notes only"),
    label: str | None = Query(None, max_length=MAX_LABEL, description="this exact label"),
) -> dict[str, Any]:
    return notes_data(session, q, run, label)


@pages.get("/runs/{run_id}/notes")
def run_notes_page(request: Request, session: SessionDep, run_id: RunRef) -> Response:
    """A run's notes: the same page as ``/notes?run=ID`` (and ``.json``/``.csv`` twins)."""
    return NOTES.render(request, notes_data(session, "", run_id, None))
