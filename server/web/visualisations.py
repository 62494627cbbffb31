"""Feature visualisations and DeepDream in the browser and the API.

Reading shows what is stored; asking for more queues a job (a worker renders it) and the page
polls until that job is done. Like every write, asking needs the lab token when one is set.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.jobs.planning import featureviz_job
from server.jobs.state import JobSpec, submit
from server.runs.read import get_run
from server.storage.schema import Job, Upload
from server.web import actions
from server.web.actions import ActionError, check_write_access
from server.web.data import classes_data, featureviz_section
from server.web.deps import MAX_ID, RunId, SessionDep, StoreDep
from server.web.render import parse_int, render

pages = APIRouter(include_in_schema=False)
api = APIRouter(prefix="/api", tags=["feature visualisation"])

METHODS = ("gradient", "xdream")
OptionalFormText = Annotated[str | None, Form()]


class RenderBody(BaseModel):
    """Render settings; what is left out takes SPEC §7's defaults."""

    steps: int | None = Field(None, ge=1, le=4096)
    size: int | None = Field(None, ge=8, le=1024)
    diversity: int | None = Field(None, ge=0, le=16, description="0: one image; 2..16 per unit")
    method: str | None = Field(None, pattern="^(gradient|xdream)$")


class VisualiseBody(RenderBody):
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


# ---- actions ---------------------------------------------------------------------------------


def render_options(body: RenderBody) -> dict[str, Any]:
    """The render settings a request gave (only those: the rest take their defaults)."""
    given = body.model_dump(include=set(RenderBody.model_fields))
    return {name: value for name, value in given.items() if value is not None}


def queue_visualisations(session: Session, run_id: int, body: VisualiseBody) -> tuple[Job, bool]:
    """Queue the rendering of a layer's channels (or the classes): checked, then one job."""
    run = get_run(session, run_id)
    if run.status != "done":
        raise ActionError(f"run {run_id} is {run.status}; visualise its neurons once it is done")
    if body.layer is not None:
        layers = {layer["name"]: layer for layer in run.model.layers or []}
        if body.layer not in layers:
            raise ActionError(f"the model of run {run_id} has no layer {body.layer!r}", 404)
        channels = layers[body.layer]["channels"]
        bad = [unit for unit in body.units or [] if not 0 <= unit < channels]
        if bad:
            raise ActionError(f"{body.layer} has channels 0..{channels - 1}, not {bad[0]}")
    if body.diversity == 1:
        raise ActionError("diversity is 0 (one image) or 2 to 16 images per unit")
    target = {"layer": body.layer, "output": body.output, "units": body.units}
    return submit(session, featureviz_job(run, target, render_options(body)))


def queue_dream(session: Session, run_id: int, body: DreamBody) -> tuple[Job, bool]:
    """DeepDream of a dataset image or of an uploaded one (the upload form's images)."""
    run = get_run(session, run_id)
    if (body.image_index is None) == (body.upload is None):
        raise ActionError("name one image: a dataset image_index or an upload")
    if body.layer not in {layer["name"] for layer in run.model.layers or []}:
        raise ActionError(f"the model of run {run_id} has no layer {body.layer!r}", 404)
    params: dict[str, Any] = {"layer": body.layer, "octaves": body.octaves, "steps": body.steps}
    if body.upload is not None:
        upload = session.scalar(select(Upload).where(Upload.sha256 == body.upload))
        if upload is None:
            raise ActionError("no such upload: upload the image first", 404)
        params["artifact"] = upload.image_key
    elif body.image_index >= run.dataset.image_count:
        raise ActionError(f"run {run_id}'s dataset has images 0..{run.dataset.image_count - 1}")
    else:
        params["image_index"] = body.image_index
    spec = JobSpec(kind="dream", identity=[run.key, params], params=params, run_id=run.id)
    return submit(session, spec)


def _form_int(text: str | None, what: str) -> int | None:
    if text is None or not text.strip():
        return None
    if not text.strip().isdigit():
        raise ActionError(f"{what} must be a whole number, not {text!r}")
    return int(text)


def _render_form(
    steps: str | None, size: str | None, diversity: str | None, method: str | None
) -> dict[str, Any]:
    if method and method not in METHODS:
        raise ActionError(f"method must be one of {', '.join(METHODS)}")
    values = {
        "steps": _form_int(steps, "steps"),
        "size": _form_int(size, "the size"),
        "diversity": _form_int(diversity, "diversity"),
        "method": method or None,
    }
    try:
        return RenderBody(**values).model_dump()
    except ValueError as error:
        raise ActionError(f"bad render settings: {error}".splitlines()[0]) from None


# ---- pages -----------------------------------------------------------------------------------


@pages.get("/runs/{run_id}/layers/{layer_name}/neurons/{channel}/featureviz")
async def featureviz_partial(
    request: Request,
    session: SessionDep,
    store: StoreDep,
    run_id: RunId,
    layer_name: str,
    channel: str,
) -> Response:
    data = featureviz_section(session, store, run_id, layer_name, parse_int(channel, "a channel"))
    return render(request, "_featureviz.html", {"fv": data}, None)


@pages.post("/runs/{run_id}/layers/{layer_name}/visualize")
async def visualise_form(
    request: Request,
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
    unit = _form_int(channel, "the channel")
    body = VisualiseBody(
        layer=layer_name,
        units=None if unit is None else [unit],
        **_render_form(steps, size, diversity, method),
    )
    actions.submit_single(request, lambda session: queue_visualisations(session, run_id, body))
    base = f"/runs/{run_id}/layers/{layer_name}"
    return actions.see_other(request, f"{base}/neurons/{unit}" if unit is not None else base, token)


@pages.get("/runs/{run_id}/classes")
async def classes_page(
    request: Request, session: SessionDep, store: StoreDep, run_id: RunId
) -> Response:
    return render(request, "classes.html", classes_data(session, store, run_id), None)


@pages.get("/runs/{run_id}/classes.json")
async def classes_twin(
    request: Request, session: SessionDep, store: StoreDep, run_id: RunId
) -> Response:
    data = classes_data(session, store, run_id)
    return render(request, "classes.html", {k: data[k] for k in ("target", "classes")}, "json")


@pages.post("/runs/{run_id}/classes/visualize")
async def visualise_classes_form(
    request: Request,
    run_id: RunId,
    output: OptionalFormText = None,
    steps: OptionalFormText = None,
    size: OptionalFormText = None,
    token: OptionalFormText = None,
) -> Response:
    check_write_access(request, token)
    body = VisualiseBody(
        layer=None,
        output=_form_int(output, "the output"),
        **_render_form(steps, size, None, None),
    )
    actions.submit_single(request, lambda session: queue_visualisations(session, run_id, body))
    return actions.see_other(request, f"/runs/{run_id}/classes", token)


@pages.post("/runs/{run_id}/dreams")
async def dream_form(
    request: Request,
    run_id: RunId,
    layer: Annotated[str, Form()],
    image_index: OptionalFormText = None,
    upload: OptionalFormText = None,
    token: OptionalFormText = None,
) -> Response:
    check_write_access(request, token)
    try:
        body = DreamBody(
            image_index=_form_int(image_index, "the image"), upload=upload or None, layer=layer
        )
    except ValueError as error:
        raise ActionError(f"bad dream request: {error}".splitlines()[0]) from None
    job = actions.submit_single(request, lambda session: queue_dream(session, run_id, body))
    return actions.see_other(request, f"/jobs/{job['id']}", token)


# ---- the JSON API ----------------------------------------------------------------------------


@api.post(
    "/runs/{run_id}/visualizations",
    summary="Queue feature visualisations of a layer's channels, or of the classes",
)
async def api_visualise(request: Request, run_id: RunId, body: VisualiseBody) -> dict[str, Any]:
    check_write_access(request)
    return actions.submit_single(
        request, lambda session: queue_visualisations(session, run_id, body)
    )


@api.get("/runs/{run_id}/classes", summary="The class visualisations of a run's model")
async def api_classes(session: SessionDep, store: StoreDep, run_id: RunId) -> dict[str, Any]:
    data = classes_data(session, store, run_id)
    return {"target": data["target"], "classes": data["classes"], "jobs": data["jobs"]}


@api.post("/runs/{run_id}/dreams", summary="Queue DeepDream of one of the dataset's images")
async def api_dream(request: Request, run_id: RunId, body: DreamBody) -> dict[str, Any]:
    check_write_access(request)
    return actions.submit_single(request, lambda session: queue_dream(session, run_id, body))
