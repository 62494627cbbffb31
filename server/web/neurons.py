"""One neuron's page: its NF and feature visualisations, indexes and tuning curves, top images,
its composition, and neighbours; its ``.json`` twin and the API give the CLI's neuron object."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.jobs.planning import plan_nf_array
from server.jobs.read import job_record, last_asked
from server.runs.read import (
    get_layer,
    get_neuron,
    get_run,
    layer_summary,
    neuron_detail,
    run_summary,
)
from server.storage.artifacts import ArtifactStore
from server.storage.errors import NotFoundError
from server.storage.schema import Layer, Neuron
from server.web.compositions import Depth, composition_data, composition_waits
from server.web.deps import (
    Channel,
    ChannelRef,
    RunId,
    RunRef,
    SessionDep,
    StoreDep,
    SubmitDep,
    no_live_worker,
)
from server.web.errors import RequestError
from server.web.featureviz import featureviz_section
from server.web.forms import OptionalFormText
from server.web.jobs import not_ready
from server.web.layers import INDEX_LABELS
from server.web.notes import author_of
from server.web.security import check_write_access, forms_router, see_other
from server.web.twins import Data, Page, page_router, requested_format

pages = page_router()
forms = forms_router()
api = APIRouter(prefix="/api", tags=["runs"])

NEURON = Page("neuron.html", json=lambda data: data["neuron"])


def neuron_data(
    session: Session,
    store: ArtifactStore,
    run_id: int,
    layer_name: str,
    channel: int,
    paths: bool,
) -> Data:
    """The CLI's neuron object (its pictures' files copied out of their packs only when
    ``paths``: the JSON twin), with its artifacts' keys, its neighbours and the runs that have
    the same channel of the same layer."""
    detail = neuron_detail(session, store, run_id, layer_name, channel, paths)
    layer = get_layer(session, run_id, layer_name)
    keys = session.execute(
        select(Neuron.nf_key, Neuron.nf_array_key, Neuron.sprite_key).where(
            Neuron.layer_id == layer.id, Neuron.channel == channel
        )
    ).one()
    elsewhere = session.execute(
        select(Layer.run_id)
        .where(Layer.name == layer_name, Layer.run_id != run_id, Layer.channels > channel)
        .order_by(Layer.run_id)
    ).scalars()
    return {
        "neuron": detail,
        "run": run_summary(layer.run),
        "layer": layer_summary(layer),
        "nf_key": keys.nf_key,
        "nf_array_key": keys.nf_array_key,
        "nf_array_job": last_asked(
            session, run_id, "nf_array", {"layer": layer_name, "channel": channel}
        ),
        "sprite_key": keys.sprite_key,
        "fv": featureviz_section(session, store, run_id, layer_name, channel),
        "previous": channel - 1 if channel > 0 else None,
        "next": channel + 1 if channel + 1 < layer.channels else None,
        "other_runs": list(elsewhere),
    }


@pages.get("/runs/{run_id}/layers/{layer_name}/neurons/{channel}")
def neuron_page(
    request: Request,
    session: SessionDep,
    store: StoreDep,
    run_id: RunRef,
    layer_name: str,
    channel: ChannelRef,
    source: str | None = None,
    mode: str = "activation",
    depth: Depth = 3,
) -> Response:
    json_twin = requested_format(request) == "json"
    data = neuron_data(session, store, run_id, layer_name, channel, paths=json_twin)
    composition = composition_data(
        session, run_id, layer_name, channel, source or None, mode, depth
    )
    asked = data["nf_array_job"]
    nf_waits = bool(asked and asked["status"] != "failed")
    waiting = bool(data["fv"]["polling"] or composition_waits(composition) or nf_waits)
    data["no_worker"] = composition["no_worker"] = no_live_worker(request, session, waiting)
    data["note_author"] = author_of(request, None)
    return NEURON.render(request, {**data, "comp": composition, "index_labels": INDEX_LABELS})


@api.get(
    "/runs/{run_id}/layers/{layer_name}/neurons/{channel}",
    summary="One neuron: the same object as `neuronscope neuron --json`",
)
def api_neuron(
    session: SessionDep, store: StoreDep, run_id: RunId, layer_name: str, channel: Channel
) -> dict[str, Any]:
    return neuron_detail(session, store, run_id, layer_name, channel)


# ---- the float NF, computed when asked for ------------------------------------------------------


def queue_nf_array(submitter: SubmitDep, run_id: int, layer_name: str, channel: int) -> Data:
    """The neuron's float NF if it is stored ({"nf_array": key}), else the job that computes it
    (queued once)."""

    def plan(session: Session) -> tuple[Data, list[int]]:
        neuron = get_neuron(session, run_id, layer_name, channel)
        if neuron.dead:
            raise RequestError(f"{layer_name} channel {channel} never fires: it has no NF", 404)
        if neuron.nf_array_key:
            return {"nf_array": neuron.nf_array_key}, []
        job, ready = plan_nf_array(session, get_run(session, run_id), layer_name, channel)
        return {"status": job.status, "job": job_record(job)}, [job.id] if ready else []

    return submitter.plan(plan)


@forms.post("/runs/{run_id}/layers/{layer_name}/neurons/{channel}/nf_array")
def nf_array_form(
    request: Request,
    submitter: SubmitDep,
    run_id: RunId,
    layer_name: str,
    channel: ChannelRef,
    token: OptionalFormText = None,
) -> Response:
    check_write_access(request, token)
    queue_nf_array(submitter, run_id, layer_name, channel)
    return see_other(request, f"/runs/{run_id}/layers/{layer_name}/neurons/{channel}#nf", token)


NF_ARRAY_PATH = "/runs/{run_id}/layers/{layer_name}/neurons/{channel}/nf_array"


@api.get(
    NF_ARRAY_PATH,
    summary="The neuron's float NF (.npy), once computed",
    description="200: the float32 array over `nf_box` (grey beyond it). 202: a job computes it. "
    "409: it cannot be computed (the run's image folder changed). 404: not asked for yet: "
    "POST to this URL.",
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def api_nf_array(
    session: SessionDep, store: StoreDep, run_id: RunId, layer_name: str, channel: Channel
) -> Response:
    neuron = get_neuron(session, run_id, layer_name, channel)
    if neuron.nf_array_key and store.path(neuron.nf_array_key).is_file():
        name = f"nf-{layer_name}-{channel}.npy"
        return FileResponse(store.path(neuron.nf_array_key), filename=name)
    if neuron.dead:
        raise NotFoundError(f"{layer_name} channel {channel} never fires: it has no NF")
    job = last_asked(session, run_id, "nf_array", {"layer": layer_name, "channel": channel})
    return not_ready(job, "the float NF")


@api.post(NF_ARRAY_PATH, summary="Compute the neuron's float NF (a worker reads its top images)")
def api_compute_nf_array(
    request: Request, submitter: SubmitDep, run_id: RunId, layer_name: str, channel: Channel
) -> Response:
    check_write_access(request)
    answer = queue_nf_array(submitter, run_id, layer_name, channel)
    return JSONResponse(answer, status_code=200 if "nf_array" in answer else 202)
