"""A neuron composed of a shallower layer's neurons (docs/algorithms.md §6), on its page and in the
API: the stored result, or a job that computes it once, asked for by a POST."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.orm import Session

from server.decompositions.read import (
    COMPOSITION_MODES,
    artifact_url,
    composition_record,
    find_composition,
)
from server.jobs.planning import plan_composition
from server.jobs.read import last_asked
from server.runs.read import get_layer, get_neuron, get_run
from server.storage.errors import NotFoundError
from server.web.deps import (
    Channel,
    ChannelRef,
    RunId,
    RunRef,
    SessionDep,
    SubmitDep,
    no_live_worker,
)
from server.web.errors import RequestError
from server.web.forms import OptionalFormText
from server.web.jobs import not_ready
from server.web.security import check_write_access, forms_router, see_other
from server.web.twins import Data, fragment, page_router

pages = page_router()
forms = forms_router()
api = APIRouter(prefix="/api", tags=["decomposition"])

Depth = Annotated[int, Query(ge=1, le=6)]


def composition_data(
    session: Session,
    run_id: int,
    layer_name: str,
    channel: int,
    source: str | None,
    mode: str,
    depth: int,
) -> Data:
    """The neuron page's "composed of" section: the stored result, or the job computing it."""
    layer = get_layer(session, run_id, layer_name)
    if not 0 <= channel < layer.channels:
        raise NotFoundError(f"layer {layer_name!r} has channels 0..{layer.channels - 1}")
    below = [stored.name for stored in layer.run.layers if stored.position < layer.position][::-1]
    if mode not in COMPOSITION_MODES:
        raise RequestError(f"mode is activation or relevance, not {mode!r}")
    if source is not None and source not in below:
        raise RequestError(f"{source!r} is not an analysed layer before {layer_name!r}")
    chosen = source or (below[0] if below else None)
    request = {
        "layer": layer_name,
        "channel": channel,
        "source": chosen,
        "mode": mode,
        "depth": depth if mode == "relevance" else 0,
    }
    stored = (
        find_composition(session, run_id, layer_name, channel, chosen, mode, request["depth"])
        if chosen
        else None
    )
    url = f"/runs/{run_id}/layers/{layer_name}/neurons/{channel}"
    root = {"layer": layer_name, "channel": channel, "url": url}
    if stored:  # the picture's top node: the composed neuron's own NF
        root["nf"] = artifact_url(get_neuron(session, run_id, layer_name, channel).nf_key)
    return {
        "run_id": run_id,
        "layer_name": layer_name,
        "channel": channel,
        "sources": below,
        "request": request,
        "root": root,
        "result": composition_record(run_id, stored) if stored else None,
        "jobs": [job] if (job := last_asked(session, run_id, "compose", request)) else [],
    }


def composition_waits(data: Data) -> bool:
    """Whether the section waits for a job: asked for, not failed, no result yet."""
    return bool(data["jobs"] and data["jobs"][0]["status"] != "failed" and not data["result"])


def queue_composition(
    submitter: SubmitDep,
    run_id: int,
    layer: str,
    channel: int,
    source: str | None,
    mode: str,
    depth: int,
) -> dict[str, Any]:
    """The stored composition, or the job that computes it (queued once)."""

    def plan(session: Session) -> tuple[dict[str, Any], list[int]]:
        data = composition_data(session, run_id, layer, channel, source, mode, depth)
        if data["result"] is not None:
            return data["result"], []
        if data["request"]["source"] is None:
            raise RequestError(f"{layer} is the first analysed layer: nothing lies below it")
        job, ready = plan_composition(session, get_run(session, run_id), data["request"])
        return {"status": "queued", "job": job.id}, [job.id] if ready else []

    return submitter.plan(plan)


@pages.get("/runs/{run_id}/layers/{layer_name}/neurons/{channel}/composition")
def composition_partial(
    request: Request,
    session: SessionDep,
    run_id: RunRef,
    layer_name: str,
    channel: ChannelRef,
    source: str | None = None,
    mode: str = "activation",
    depth: Depth = 3,
) -> Response:
    data = composition_data(session, run_id, layer_name, channel, source, mode, depth)
    data["no_worker"] = no_live_worker(request, session, composition_waits(data))
    return fragment(request, "_composition.html", {"comp": data})


@forms.post("/runs/{run_id}/layers/{layer_name}/neurons/{channel}/composition")
def compose_form(
    request: Request,
    submitter: SubmitDep,
    run_id: RunId,
    layer_name: str,
    channel: ChannelRef,
    source: OptionalFormText = None,
    mode: OptionalFormText = "activation",
    depth: OptionalFormText = "3",
    token: OptionalFormText = None,
) -> Response:
    check_write_access(request, token)
    levels = int(depth) if depth and depth.isascii() and depth.isdigit() else 3
    queue_composition(submitter, run_id, layer_name, channel, source or None, mode or "", levels)
    url = f"/runs/{run_id}/layers/{layer_name}/neurons/{channel}"
    query = f"?source={source or ''}&mode={mode}&depth={levels}#composition"
    return see_other(request, url + query, token)


@api.get(
    "/runs/{run_id}/layers/{layer_name}/neurons/{channel}/composition",
    summary="A neuron composed of a shallower layer's neurons, once computed",
    description="Read only: 200 with the result; 202 with the job while one computes it; 404 "
    "when none was asked for (POST to the same URL queues it).",
)
def api_composition(
    session: SessionDep,
    run_id: RunId,
    layer_name: str,
    channel: Channel,
    source: str | None = None,
    mode: str = "activation",
    depth: Depth = 3,
) -> Response:
    data = composition_data(session, run_id, layer_name, channel, source, mode, depth)
    if data["result"] is not None:
        return JSONResponse(data["result"])
    if data["request"]["source"] is None:
        raise RequestError(f"{layer_name} is the first analysed layer: nothing lies below it")
    return not_ready(data["jobs"][0] if data["jobs"] else None, "this composition")


@api.post(
    "/runs/{run_id}/layers/{layer_name}/neurons/{channel}/composition",
    summary="Queue a neuron's composition (200 with the result if it was computed before)",
    status_code=202,
)
def api_compose(
    request: Request,
    submitter: SubmitDep,
    run_id: RunId,
    layer_name: str,
    channel: Channel,
    source: str | None = None,
    mode: str = "activation",
    depth: Depth = 3,
) -> Response:
    check_write_access(request)
    queued = queue_composition(submitter, run_id, layer_name, channel, source, mode, depth)
    return JSONResponse(queued, status_code=202 if queued.get("status") == "queued" else 200)
