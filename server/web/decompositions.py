"""Image decompositions and neuron compositions in the browser and the API (SPEC §6).

An upload is checked and stored here (bounded in bytes and pixels; the same bytes are one
upload), then a worker decomposes it; the page polls until the job is done. A neuron's
composition is computed by a job on first request and stored.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, Response
from sqlalchemy.orm import Session

from server.decompositions.read import (
    composition_record,
    decomposition_record,
    find_composition,
    get_decomposition,
)
from server.jobs.planning import plan_composition, plan_decomposition
from server.jobs.read import job_record
from server.jobs.submit import submit_work
from server.runs.read import get_layer, get_run, run_summary
from server.storage.errors import NotFoundError
from server.storage.schema import JOB_ACTIVE, Job, Neuron
from server.storage.uploads import UploadError, UploadLimits, store_upload
from server.web import actions
from server.web.actions import ActionError, check_write_access
from server.web.deps import MAX_ID, RunId, SessionDep, StoreDep
from server.web.render import parse_int, render, split_format

pages = APIRouter(include_in_schema=False)
api = APIRouter(prefix="/api", tags=["decomposition"])

MODES = ("activation", "relevance")
OptionalFormText = Annotated[str | None, Form()]
OptionalFile = Annotated[UploadFile | None, File()]
PathId = Annotated[int, PathParam(ge=0, le=MAX_ID)]


# ---- data ------------------------------------------------------------------------------------


def decomposition_page_data(
    session: Session, decomposition_id: int, layer: str | None, neuron: int | None
) -> dict[str, Any]:
    decomposition = get_decomposition(session, decomposition_id)
    record = decomposition_record(session, decomposition)
    run = get_run(session, decomposition.run_id)
    names = [stored.name for stored in run.layers]
    if layer is not None and layer not in names:
        raise NotFoundError(f"run {run.id} has no layer {layer!r} (it has: {', '.join(names)})")
    chosen = layer or (names[-1] if names else None)
    found = (record.get("layers") or {}).get(chosen) or {"neurons": []}
    selected = next((n for n in found["neurons"] if n["channel"] == neuron), None)
    return {
        "run": run_summary(run),
        "decomposition": record,
        "layer_names": names,
        "layer": chosen,
        "found": found,
        "selected": selected,
        "polling": record["status"] in ("queued", "running"),
    }


def pixel_neurons(
    session: Session, store: Any, decomposition_id: int, layer: str, x: float, y: float
) -> dict[str, Any]:
    """The strongest neurons at pixel (x, y) of the original image: those of the map position
    whose receptive window is centred nearest to it."""
    decomposition = get_decomposition(session, decomposition_id)
    result = decomposition.result
    if not result or layer not in result["layers"]:
        raise NotFoundError(f"decomposition {decomposition_id} has no finished layer {layer!r}")
    stored = get_layer(session, decomposition.run_id, layer)
    size, width, height = result["input_size"], result["width"], result["height"]
    policy = decomposition_policy(session, decomposition.run_id)
    yi, xi = to_input(y, x, size, width, height, policy)
    row = _nearest(yi, stored.rf_offset[0], stored.rf_stride[0], stored.rf_size[0], stored.height)
    col = _nearest(xi, stored.rf_offset[1], stored.rf_stride[1], stored.rf_size[1], stored.width)
    channels = store.load_array(result["layers"][layer]["top_channels"])[row, col]
    values = store.load_array(result["layers"][layer]["top_values"])[row, col]
    nfs = dict(
        session.query(Neuron.channel, Neuron.nf_key)
        .filter(Neuron.layer_id == stored.id, Neuron.channel.in_([int(c) for c in channels]))
        .all()
    )
    return {
        "decomposition": decomposition_id,
        "run": decomposition.run_id,
        "layer": layer,
        "x": round(x),
        "y": round(y),
        "map_position": [row, col],
        "neurons": [
            {
                "channel": int(channel),
                "normalised": float(value),
                "nf": f"/artifacts/{nfs[int(channel)]}" if nfs.get(int(channel)) else None,
                "url": f"/runs/{decomposition.run_id}/layers/{layer}/neurons/{int(channel)}",
            }
            for channel, value in zip(channels, values, strict=True)
            if value > float("-inf")
        ],
    }


def decomposition_policy(session: Session, run_id: int) -> str:
    return get_run(session, run_id).params.get("resize", "whole")


def to_input(
    y: float, x: float, size: int | list[int], width: int, height: int, policy: str
) -> tuple[float, float]:
    """A pixel of the original image in model-input pixels (the inverse of the worker's map);
    ``size`` is the input's [height, width] (one int in decompositions stored before non-square
    input)."""
    input_h, input_w = (size, size) if isinstance(size, int) else size
    if policy == "center-crop":
        scale = max(input_h / height, input_w / width)
        left = (max(round(width * scale), input_w) - input_w) // 2
        top = (max(round(height * scale), input_h) - input_h) // 2
        return y * scale - top, x * scale - left
    return y * input_h / height, x * input_w / width


def _nearest(pixel: float, offset: int, stride: int, extent: int, count: int) -> int:
    return min(max(round((pixel - offset - extent / 2) / stride), 0), count - 1)


def composition_data(
    session: Session,
    run_id: int,
    layer_name: str,
    channel: int,
    source: str | None,
    mode: str,
    depth: int,
) -> dict[str, Any]:
    """The neuron page's "composed of" section: the stored result, or the job computing it."""
    layer = get_layer(session, run_id, layer_name)
    if not 0 <= channel < layer.channels:
        raise NotFoundError(f"layer {layer_name!r} has channels 0..{layer.channels - 1}")
    below = [stored.name for stored in layer.run.layers if stored.position < layer.position][::-1]
    if mode not in MODES:
        raise ActionError(f"mode is activation or relevance, not {mode!r}")
    if source is not None and source not in below:
        raise ActionError(f"{source!r} is not an analysed layer before {layer_name!r}")
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
    return {
        "run_id": run_id,
        "layer_name": layer_name,
        "channel": channel,
        "sources": below,
        "request": request,
        "result": composition_record(run_id, stored) if stored else None,
        "jobs": _composition_jobs(session, run_id, request),
    }


def _composition_jobs(session: Session, run_id: int, request: dict[str, Any]) -> list[dict]:
    jobs = session.query(Job).filter(
        Job.run_id == run_id, Job.kind == "compose", Job.status.in_((*JOB_ACTIVE, "failed"))
    )
    return [job_record(job) for job in jobs if job.params == request][-1:]


# ---- actions ---------------------------------------------------------------------------------


def _limits(request: Request) -> UploadLimits:
    settings = request.app.state.settings
    return UploadLimits(settings.max_upload_bytes, settings.max_upload_pixels)


async def _submit_decomposition(
    request: Request, run_id: int, file: UploadFile | None, image_index: int | None
) -> dict[str, Any]:
    """Store the upload (or name a dataset image) and queue its decomposition; the record."""
    data = b""
    if file is not None and file.filename:
        limits = _limits(request)
        data = await file.read(limits.max_bytes + 1)
    if not data and image_index is None:
        raise ActionError("choose an image file to upload (or a dataset image)")
    store = request.app.state.store

    def plan(session: Session) -> tuple[dict[str, Any], list[int]]:
        run = get_run(session, run_id)
        if run.status != "done":
            raise ActionError(f"run {run_id} is {run.status}; decompose images once it is done")
        if data:
            upload = store_upload(session, store, data, file.filename or "", _limits(request))
            source, upload_id, index = f"upload:{upload.sha256}", upload.id, None
        else:
            if not 0 <= image_index < run.dataset.image_count:
                raise ActionError(f"the dataset has images 0..{run.dataset.image_count - 1}")
            source, upload_id, index = f"image:{image_index}", None, image_index
        decomposition, job, ready = plan_decomposition(
            session, run, source, upload_id, index, {"max_overlap": 0.0}
        )
        session.flush()
        return decomposition_record(session, decomposition), [job.id] if ready else []

    try:
        return submit_work(request.app.state.database, request.app.state.queue, plan)
    except UploadError as error:
        raise ActionError(str(error), error.status) from None


# ---- pages -----------------------------------------------------------------------------------


@pages.post("/runs/{run_id}/decompositions")
async def decompose_form(
    request: Request,
    run_id: RunId,
    file: OptionalFile = None,
    image_index: OptionalFormText = None,
    token: OptionalFormText = None,
) -> Response:
    check_write_access(request, token)
    index = int(image_index) if image_index and image_index.strip().isdigit() else None
    record = await _submit_decomposition(request, run_id, file, index)
    return actions.see_other(request, f"/decompositions/{record['id']}", token)


@pages.get("/decompositions/{reference}")
async def decomposition_page(
    request: Request,
    session: SessionDep,
    reference: str,
    layer: str | None = None,
    neuron: Annotated[int | None, Query(ge=0, le=MAX_ID)] = None,
) -> Response:
    stem, fmt = split_format(reference)
    decomposition_id = parse_int(stem, "a decomposition id")
    if fmt == "json":
        record = decomposition_record(session, get_decomposition(session, decomposition_id), layer)
        return render(request, "decomposition.html", record, "json")
    data = decomposition_page_data(session, decomposition_id, layer, neuron)
    return render(request, "decomposition.html", data, None, partial="_decomposition_body.html")


@pages.get("/decompositions/{decomposition_id}/at")
async def pixel_partial(
    request: Request,
    session: SessionDep,
    store: StoreDep,
    decomposition_id: PathId,
    layer: str,
    x: Annotated[float, Query(ge=0)],
    y: Annotated[float, Query(ge=0)],
) -> Response:
    data = pixel_neurons(session, store, decomposition_id, layer, x, y)
    return render(request, "_pixel_neurons.html", {"pixel": data}, None)


@pages.get("/runs/{run_id}/layers/{layer_name}/neurons/{channel}/composition")
async def composition_partial(
    request: Request,
    session: SessionDep,
    run_id: RunId,
    layer_name: str,
    channel: str,
    source: str | None = None,
    mode: str = "activation",
    depth: Annotated[int, Query(ge=1, le=6)] = 3,
) -> Response:
    data = composition_data(
        session, run_id, layer_name, parse_int(channel, "a channel"), source, mode, depth
    )
    return render(request, "_composition.html", {"comp": data}, None)


@pages.post("/runs/{run_id}/layers/{layer_name}/neurons/{channel}/composition")
async def compose_form(
    request: Request,
    run_id: RunId,
    layer_name: str,
    channel: str,
    source: OptionalFormText = None,
    mode: OptionalFormText = "activation",
    depth: OptionalFormText = "3",
    token: OptionalFormText = None,
) -> Response:
    check_write_access(request, token)
    unit = parse_int(channel, "a channel")
    levels = int(depth) if depth and depth.isdigit() else 3
    _queue_composition(request, run_id, layer_name, unit, source or None, mode or "", levels)
    url = f"/runs/{run_id}/layers/{layer_name}/neurons/{unit}"
    query = f"?source={source or ''}&mode={mode}&depth={levels}#composition"
    return actions.see_other(request, url + query, token)


def _queue_composition(
    request: Request,
    run_id: int,
    layer: str,
    channel: int,
    source: str | None,
    mode: str,
    depth: int,
) -> dict[str, Any]:
    def plan(session: Session) -> tuple[dict[str, Any], list[int]]:
        data = composition_data(session, run_id, layer, channel, source, mode, depth)
        if data["result"] is not None:
            return data["result"], []
        if data["request"]["source"] is None:
            raise ActionError(f"{layer} is the first analysed layer: nothing lies below it")
        job, ready = plan_composition(session, get_run(session, run_id), data["request"])
        return {"status": "queued", "job": job.id}, [job.id] if ready else []

    return submit_work(request.app.state.database, request.app.state.queue, plan)


# ---- the JSON API ----------------------------------------------------------------------------


@api.post(
    "/runs/{run_id}/decompositions",
    summary="Upload an image (multipart field `file`) to decompose at every analysed layer",
    status_code=202,
    responses={200: {"description": "this image was decomposed before: the finished object"}},
)
async def api_decompose(request: Request, run_id: RunId, file: UploadFile) -> Response:
    check_write_access(request)
    record = await _submit_decomposition(request, run_id, file, None)
    if record["status"] == "done":
        return JSONResponse(record)
    return JSONResponse({"id": record["id"], "status": record["status"]}, status_code=202)


@api.get("/decompositions/{decomposition_id}", summary="A decomposition: status, then results")
async def api_decomposition(session: SessionDep, decomposition_id: PathId) -> dict[str, Any]:
    return decomposition_record(session, get_decomposition(session, decomposition_id))


@api.get(
    "/runs/{run_id}/layers/{layer_name}/neurons/{channel}/composition",
    summary="A neuron composed of a shallower layer's neurons (queued on first request)",
)
async def api_composition(
    request: Request,
    session: SessionDep,
    run_id: RunId,
    layer_name: str,
    channel: PathId,
    source: str | None = None,
    mode: str = "activation",
    depth: Annotated[int, Query(ge=1, le=6)] = 3,
) -> Response:
    data = composition_data(session, run_id, layer_name, channel, source, mode, depth)
    if data["result"] is not None:
        return JSONResponse(data["result"])
    check_write_access(request)
    queued = _queue_composition(request, run_id, layer_name, channel, source, mode, depth)
    return JSONResponse(queued, status_code=200 if queued.get("status") == "done" else 202)
