"""Feature visualisations and DeepDream in the browser and the API.

Reading shows what is stored; asking for more queues a job (a worker renders it) and the page
polls until that job is done. Like every write, asking needs the lab token when one is set.
The URLs say ``featureviz``; the ``visualize`` and ``visualizations`` ones of earlier versions
answer with a permanent redirect (308, which keeps the method and the body).
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from analysis.featureviz.targets import Method, Target
from analysis.metadata import class_names
from server.featureviz.read import featureviz_records, latest_featureviz
from server.jobs.planning import featureviz_job
from server.jobs.read import job_record
from server.jobs.state import JobSpec, submit
from server.runs.read import get_layer, get_run, run_summary
from server.storage.artifacts import ArtifactStore
from server.storage.errors import NotFoundError
from server.storage.schema import JOB_ACTIVE, Job, Upload
from server.web.deps import (
    MAX_ID,
    ChannelRef,
    RunId,
    RunRef,
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
api = APIRouter(prefix="/api", tags=["feature visualisation"])

METHODS = tuple(method.value for method in Method)
CLASSES = Page("classes.html", json=lambda data: {k: data[k] for k in ("target", "classes")})


# ---- data ------------------------------------------------------------------------------------


def active_featureviz_jobs(
    session: Session, run_id: int, layer: str | None, unit: int | None = None
) -> list[dict[str, Any]]:
    """Unfinished visualisation jobs of a layer (``None``: of the classes), or of one unit."""
    found = []
    for job in session.scalars(
        select(Job).where(
            Job.run_id == run_id, Job.kind == "featureviz", Job.status.in_(JOB_ACTIVE)
        )
    ):
        units = job.params.get("units")
        if job.params.get("layer") == layer and (unit is None or not units or unit in units):
            found.append(job_record(job))
    return found


def featureviz_section(
    session: Session, store: ArtifactStore, run_id: int, layer_name: str, channel: int
) -> Data:
    """The neuron page's feature visualisation section: newest single image, newest diverse set,
    and the jobs still rendering this neuron."""
    layer = get_layer(session, run_id, layer_name)
    if not 0 <= channel < layer.channels:
        raise NotFoundError(f"layer {layer_name!r} has channels 0..{layer.channels - 1}")
    stored = featureviz_records(session, store, run_id, layer_name, channel)
    singles = [record for record in stored if not record["diversity"]]
    diverse = [record for record in stored if record["diversity"]]
    newest_set = [r for r in diverse if r["params"] == diverse[0]["params"]] if diverse else []
    jobs = active_featureviz_jobs(session, run_id, layer_name, channel)
    return {
        "run_id": run_id,
        "layer_name": layer_name,
        "channel": channel,
        "single": singles[0] if singles else None,
        "diverse": newest_set,
        "jobs": jobs,
        "polling": bool(jobs),
    }


def classes_data(session: Session, store: ArtifactStore, run_id: int) -> Data:
    """The newest image of each class of the output that visualisations were asked of."""
    run = get_run(session, run_id)
    targets = session.scalars(
        select(Job.params).where(Job.run_id == run_id, Job.kind == "featureviz")
    ).all()
    outputs = sorted({Target(output=p.get("output")).name for p in targets if not p["layer"]})
    target = outputs[0] if outputs else Target().name
    classes = []
    for unit, key in sorted(latest_featureviz(session, run_id, target).items()):
        stored = featureviz_records(session, store, run_id, target, unit)
        classes.append({"class": unit, **next(r for r in stored if r["key"] == key)})
    jobs = active_featureviz_jobs(session, run_id, None)
    names = class_names(run.model.meta)
    for entry in classes:
        entry["name"] = names[entry["class"]] if len(names) > entry["class"] else None
    return {
        "run": run_summary(run),
        "target": target,
        "classes": classes,
        "jobs": jobs,
        "polling": bool(jobs),
    }


# ---- actions ---------------------------------------------------------------------------------


class RenderBody(BaseModel):
    """Render settings; what is left out takes the defaults of docs/algorithms.md §7."""

    steps: int | None = Field(None, ge=1, le=4096)
    size: int | None = Field(None, ge=8, le=1024)
    diversity: int | None = Field(None, ge=0, le=16, description="0: one image; 2..16 per unit")
    method: str | None = Field(None, pattern="^(" + "|".join(METHODS) + ")$")


class FeatureVizBody(RenderBody):
    layer: str | None = Field(None, max_length=300, description="a layer; null for classes")
    output: int | None = Field(None, ge=0, le=64, description="which output holds the logits")
    units: list[int] | None = Field(None, description="channels or classes (default: all)")


class DreamBody(BaseModel):
    image_index: int | None = Field(None, ge=0, le=MAX_ID, description="an image of the dataset")
    upload: str | None = Field(
        None, pattern="^[0-9a-f]{64}$", description="or the SHA-256 of an uploaded image"
    )
    layer: str = Field(max_length=300)
    octaves: int = Field(4, ge=1, le=8)
    steps: int = Field(32, ge=1, le=512)


def render_options(body: RenderBody) -> dict[str, Any]:
    """The render settings a request gave (only those: the rest take their defaults)."""
    given = body.model_dump(include=set(RenderBody.model_fields))
    return {name: value for name, value in given.items() if value is not None}


def queue_featureviz(session: Session, run_id: int, body: FeatureVizBody) -> tuple[Job, bool]:
    """Queue the rendering of a layer's channels (or the classes): checked, then one job."""
    run = get_run(session, run_id)
    if run.status != "done":
        raise RequestError(f"run {run_id} is {run.status}; visualise its neurons once it is done")
    if body.layer is not None:
        layers = {layer["name"]: layer for layer in run.model.layers or []}
        if body.layer not in layers:
            raise RequestError(f"the model of run {run_id} has no layer {body.layer!r}", 404)
        channels = layers[body.layer]["channels"]
        bad = [unit for unit in body.units or [] if not 0 <= unit < channels]
        if bad:
            raise RequestError(f"{body.layer} has channels 0..{channels - 1}, not {bad[0]}")
    if body.diversity == 1:
        raise RequestError("diversity is 0 (one image) or 2 to 16 images per unit")
    target = {"layer": body.layer, "output": body.output, "units": body.units}
    return submit(session, featureviz_job(run, target, render_options(body)))


def queue_dream(session: Session, run_id: int, body: DreamBody) -> tuple[Job, bool]:
    """DeepDream of a dataset image or of an uploaded one (the upload form's images)."""
    run = get_run(session, run_id)
    if (body.image_index is None) == (body.upload is None):
        raise RequestError("name one image: a dataset image_index or an upload")
    if body.layer not in {layer["name"] for layer in run.model.layers or []}:
        raise RequestError(f"the model of run {run_id} has no layer {body.layer!r}", 404)
    params: dict[str, Any] = {"layer": body.layer, "octaves": body.octaves, "steps": body.steps}
    if body.upload is not None:
        upload = session.scalar(select(Upload).where(Upload.sha256 == body.upload))
        if upload is None:
            raise RequestError("no such upload: upload the image first", 404)
        params["artifact"] = upload.image_key
    elif body.image_index >= run.dataset.image_count:
        raise RequestError(f"run {run_id}'s dataset has images 0..{run.dataset.image_count - 1}")
    else:
        params["image_index"] = body.image_index
    spec = JobSpec(kind="dream", identity=[run.key, params], params=params, run_id=run.id)
    return submit(session, spec)


def render_form(
    steps: str | None, size: str | None, diversity: str | None, method: str | None
) -> dict[str, Any]:
    """A form's render settings, checked as the API checks its body."""
    if method and method not in METHODS:
        raise RequestError(f"method must be one of {', '.join(METHODS)}")
    values = {
        "steps": optional_int(steps, "steps"),
        "size": optional_int(size, "the size"),
        "diversity": optional_int(diversity, "diversity"),
        "method": method or None,
    }
    try:
        return RenderBody(**values).model_dump()
    except ValueError as error:
        raise RequestError(f"bad render settings: {error}".splitlines()[0]) from None


# ---- pages -----------------------------------------------------------------------------------


@pages.get("/runs/{run_id}/layers/{layer_name}/neurons/{channel}/featureviz")
def featureviz_partial(
    request: Request,
    session: SessionDep,
    store: StoreDep,
    run_id: RunRef,
    layer_name: str,
    channel: ChannelRef,
) -> Response:
    data = featureviz_section(session, store, run_id, layer_name, channel)
    return fragment(
        request,
        "_featureviz.html",
        {"fv": data, "no_worker": no_live_worker(request, session, data["polling"])},
    )


@forms.post("/runs/{run_id}/layers/{layer_name}/featureviz")
def featureviz_form(
    request: Request,
    submitter: SubmitDep,
    run_id: RunId,
    layer_name: str,
    channel: OptionalFormText = None,
    steps: OptionalFormText = None,
    size: OptionalFormText = None,
    diversity: OptionalFormText = None,
    method: OptionalFormText = None,
    token: OptionalFormText = None,
) -> Response:
    check_write_access(request, token)
    unit = optional_int(channel, "the channel")
    body = FeatureVizBody(
        layer=layer_name,
        units=None if unit is None else [unit],
        **render_form(steps, size, diversity, method),
    )
    submitter.job(lambda session: queue_featureviz(session, run_id, body))
    base = f"/runs/{run_id}/layers/{layer_name}"
    return see_other(request, f"{base}/neurons/{unit}" if unit is not None else base, token)


@pages.get("/runs/{run_id}/classes")
def classes_page(
    request: Request, session: SessionDep, store: StoreDep, run_id: RunRef
) -> Response:
    return CLASSES.render(request, classes_data(session, store, run_id))


@forms.post("/runs/{run_id}/classes/featureviz")
def classes_form(
    request: Request,
    submitter: SubmitDep,
    run_id: RunId,
    output: OptionalFormText = None,
    steps: OptionalFormText = None,
    size: OptionalFormText = None,
    token: OptionalFormText = None,
) -> Response:
    check_write_access(request, token)
    body = FeatureVizBody(
        layer=None,
        output=optional_int(output, "the output"),
        **render_form(steps, size, None, None),
    )
    submitter.job(lambda session: queue_featureviz(session, run_id, body))
    return see_other(request, f"/runs/{run_id}/classes", token)


@forms.post("/runs/{run_id}/dreams")
def dream_form(
    request: Request,
    submitter: SubmitDep,
    run_id: RunId,
    layer: Annotated[str, Form()],
    image_index: OptionalFormText = None,
    upload: OptionalFormText = None,
    token: OptionalFormText = None,
) -> Response:
    check_write_access(request, token)
    try:
        body = DreamBody(
            image_index=optional_int(image_index, "the image"), upload=upload or None, layer=layer
        )
    except ValueError as error:
        raise RequestError(f"bad dream request: {error}".splitlines()[0]) from None
    job = submitter.job(lambda session: queue_dream(session, run_id, body))
    return see_other(request, f"/jobs/{job['id']}", token)


# ---- the JSON API ----------------------------------------------------------------------------


@api.post(
    "/runs/{run_id}/featureviz",
    summary="Queue feature visualisations of a layer's channels, or of the classes",
)
def api_featureviz(
    request: Request, submitter: SubmitDep, run_id: RunId, body: FeatureVizBody
) -> dict[str, Any]:
    check_write_access(request)
    return submitter.job(lambda session: queue_featureviz(session, run_id, body))


@api.get("/runs/{run_id}/classes", summary="The class visualisations of a run's model")
def api_classes(session: SessionDep, store: StoreDep, run_id: RunId) -> dict[str, Any]:
    data = classes_data(session, store, run_id)
    return {"target": data["target"], "classes": data["classes"], "jobs": data["jobs"]}


@api.post("/runs/{run_id}/dreams", summary="Queue DeepDream of one of the dataset's images")
def api_dream(
    request: Request, submitter: SubmitDep, run_id: RunId, body: DreamBody
) -> dict[str, Any]:
    check_write_access(request)
    return submitter.job(lambda session: queue_dream(session, run_id, body))


# ---- the URLs of earlier versions ------------------------------------------------------------


def _moved(router: APIRouter, old: str, new: str) -> None:
    """POSTs to ``old`` go to ``new`` (its path parameters filled in), method and body kept."""

    def redirect(request: Request) -> Response:
        params = {name: quote(str(value), safe="") for name, value in request.path_params.items()}
        query = f"?{request.url.query}" if request.url.query else ""
        return RedirectResponse(new.format(**params) + query, status_code=308)

    router.add_api_route(old, redirect, methods=["POST"], include_in_schema=False)


# Plain redirects: they change nothing, so they need no form's intent; the target checks it.
redirects = APIRouter(include_in_schema=False)
_moved(
    redirects,
    "/runs/{run_id}/layers/{layer_name}/visualize",
    "/runs/{run_id}/layers/{layer_name}/featureviz",
)
_moved(redirects, "/runs/{run_id}/classes/visualize", "/runs/{run_id}/classes/featureviz")
_moved(redirects, "/api/runs/{run_id}/visualizations", "/api/runs/{run_id}/featureviz")
