"""Image decompositions in the browser and the API (docs/algorithms.md §6).

An upload is checked and stored here (bounded in bytes and pixels; the same bytes are one
upload), then a worker decomposes it; the page polls until the job is done. A click on the image
asks which neurons fire under that pixel.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Query, Request, UploadFile
from fastapi.responses import JSONResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from analysis.resize import InputMap
from server.decompositions.read import decomposition_record, get_decomposition
from server.jobs.planning import plan_decomposition
from server.runs.read import get_layer, get_run, run_summary, top_classes
from server.storage.artifacts import ArtifactStore
from server.storage.errors import NotFoundError
from server.storage.schema import Neuron
from server.storage.uploads import UploadError, UploadLimits, store_upload
from server.web.deps import (
    MAX_ID,
    DecompositionId,
    DecompositionRef,
    RunId,
    SessionDep,
    StoreDep,
    SubmitDep,
    no_live_worker,
)
from server.web.errors import RequestError
from server.web.forms import OptionalFormText, optional_int
from server.web.security import check_write_access, forms_router, see_other
from server.web.twins import Data, Page, fragment, page_router

pages = page_router()
forms = forms_router()
api = APIRouter(prefix="/api", tags=["decomposition"])

OptionalFile = Annotated[UploadFile | None, File()]


def _record_json(data: Data) -> Data:
    """The ``.json`` twin: the decomposition's record, only the requested layer if one was."""
    record, layer = data["decomposition"], data["requested_layer"]
    if layer is None or "layers" not in record:
        return record
    return {**record, "layers": {k: v for k, v in record["layers"].items() if k == layer}}


DECOMPOSITION = Page("decomposition.html", partial="_decomposition_body.html", json=_record_json)


# ---- data ------------------------------------------------------------------------------------


def decomposition_page_data(
    session: Session,
    decomposition_id: int,
    layer: str | None,
    neuron: int | None,
    view: str = "stretched",
) -> Data:
    decomposition = get_decomposition(session, decomposition_id)
    record = decomposition_record(session, decomposition)
    run = get_run(session, decomposition.run_id)
    names = [stored.name for stored in run.layers]
    if layer is not None and layer not in names:
        raise NotFoundError(f"run {run.id} has no layer {layer!r} (it has: {', '.join(names)})")
    chosen = layer or (names[-1] if names else None)
    found = (record.get("layers") or {}).get(chosen) or {"neurons": []}
    if found["neurons"]:
        classes = top_classes(
            session, get_layer(session, run.id, chosen), [n["channel"] for n in found["neurons"]]
        )
        for entry in found["neurons"]:
            entry["top_class"] = classes.get(entry["channel"])
    selected = next((n for n in found["neurons"] if n["channel"] == neuron), None)
    return {
        "run": run_summary(run),
        "decomposition": record,
        "requested_layer": layer,
        "layer_names": names,
        "layer": chosen,
        "found": found,
        "selected": selected,
        "view": view,
        "polling": record["status"] in ("queued", "running"),
    }


def pixel_neurons(
    session: Session,
    store: ArtifactStore,
    decomposition_id: int,
    layer: str,
    x: float,
    y: float,
) -> Data:
    """The strongest neurons at pixel (x, y) of the original image: those of the map position
    whose receptive window is centred nearest to it."""
    decomposition = get_decomposition(session, decomposition_id)
    result = decomposition.result
    if not result or layer not in result["layers"]:
        raise NotFoundError(f"decomposition {decomposition_id} has no finished layer {layer!r}")
    stored = get_layer(session, decomposition.run_id, layer)
    policy = get_run(session, decomposition.run_id).params.get("resize", "whole")
    placed = InputMap.of((result["width"], result["height"]), result["input_size"], policy)
    yi, xi = placed.to_input(y, x)
    row = _nearest(yi, stored.rf_offset[0], stored.rf_stride[0], stored.rf_size[0], stored.height)
    col = _nearest(xi, stored.rf_offset[1], stored.rf_stride[1], stored.rf_size[1], stored.width)
    channels = store.load_array(result["layers"][layer]["top_channels"])[row, col]
    values = store.load_array(result["layers"][layer]["top_values"])[row, col]
    nfs = dict(
        session.execute(
            select(Neuron.channel, Neuron.nf_key).where(
                Neuron.layer_id == stored.id, Neuron.channel.in_([int(c) for c in channels])
            )
        ).all()
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


def _nearest(pixel: float, offset: int, stride: int, extent: int, count: int) -> int:
    """The map index whose window is centred nearest to ``pixel``, within the map."""
    return min(max(round((pixel - offset - extent / 2) / stride), 0), count - 1)


# ---- actions ---------------------------------------------------------------------------------


def _limits(request: Request) -> UploadLimits:
    settings = request.app.state.settings
    return UploadLimits(settings.max_upload_bytes, settings.max_upload_pixels)


def submit_decomposition(
    request: Request,
    submitter: SubmitDep,
    run_id: int,
    file: UploadFile | None,
    image_index: int | None,
) -> dict[str, Any]:
    """Store the upload (or name a dataset image) and queue its decomposition; the record."""
    data = b""
    limits = _limits(request)
    if file is not None and file.filename:
        data = file.file.read(limits.max_bytes + 1)
    if not data and image_index is None:
        raise RequestError("choose an image file to upload (or a dataset image)")
    store = request.app.state.store

    def plan(session: Session) -> tuple[dict[str, Any], list[int]]:
        run = get_run(session, run_id)
        if run.status != "done":
            raise RequestError(f"run {run_id} is {run.status}; decompose images once it is done")
        if data:
            upload = store_upload(session, store, data, file.filename or "", limits)
            source, upload_id, index = f"upload:{upload.sha256}", upload.id, None
        else:
            if not 0 <= image_index < run.dataset.image_count:
                raise RequestError(f"the dataset has images 0..{run.dataset.image_count - 1}")
            source, upload_id, index = f"image:{image_index}", None, image_index
        decomposition, job, ready = plan_decomposition(
            session, run, source, upload_id, index, {"max_overlap": 0.0}
        )
        session.flush()
        return decomposition_record(session, decomposition), [job.id] if ready else []

    try:
        return submitter.plan(plan)
    except UploadError as error:
        raise RequestError(str(error), error.status) from None


# ---- pages -----------------------------------------------------------------------------------


@forms.post("/runs/{run_id}/decompositions")
def decompose_form(
    request: Request,
    submitter: SubmitDep,
    run_id: RunId,
    file: OptionalFile = None,
    image_index: OptionalFormText = None,
    token: OptionalFormText = None,
) -> Response:
    check_write_access(request, token)
    index = optional_int(image_index, "the image")
    record = submit_decomposition(request, submitter, run_id, file, index)
    return see_other(request, f"/decompositions/{record['id']}", token)


@pages.get("/decompositions/{decomposition_id}")
def decomposition_page(
    request: Request,
    session: SessionDep,
    decomposition_id: DecompositionRef,
    layer: str | None = None,
    neuron: Annotated[int | None, Query(ge=0, le=MAX_ID)] = None,
    view: Annotated[Literal["stretched", "raw"], Query()] = "stretched",
) -> Response:
    data = decomposition_page_data(session, decomposition_id, layer, neuron, view)
    data["no_worker"] = no_live_worker(request, session, data["polling"])
    return DECOMPOSITION.render(request, data)


@pages.get("/decompositions/{decomposition_id}/at")
def pixel_partial(
    request: Request,
    session: SessionDep,
    store: StoreDep,
    decomposition_id: DecompositionId,
    layer: str,
    x: Annotated[float, Query(ge=0)],
    y: Annotated[float, Query(ge=0)],
) -> Response:
    data = pixel_neurons(session, store, decomposition_id, layer, x, y)
    return fragment(request, "_pixel_neurons.html", {"pixel": data})


# ---- the JSON API ----------------------------------------------------------------------------


@api.post(
    "/runs/{run_id}/decompositions",
    summary="Upload an image (multipart field `file`) to decompose at every analysed layer",
    status_code=202,
    responses={200: {"description": "this image was decomposed before: the finished object"}},
)
def api_decompose(
    request: Request, submitter: SubmitDep, run_id: RunId, file: UploadFile
) -> Response:
    check_write_access(request)
    record = submit_decomposition(request, submitter, run_id, file, None)
    if record["status"] == "done":
        return JSONResponse(record)
    return JSONResponse({"id": record["id"], "status": record["status"]}, status_code=202)


@api.get("/decompositions/{decomposition_id}", summary="A decomposition: status, then results")
def api_decomposition(session: SessionDep, decomposition_id: DecompositionId) -> dict[str, Any]:
    return decomposition_record(session, get_decomposition(session, decomposition_id))
