"""Models in the browser and the API: the registered ones with their layers, and registering
another (a worker loads it, hashes its weights and lists its layers).

The browser may name ``torchvision:NAME`` or an exported ``.pt2`` file under an allowed root; a
``package.module:callable`` spec runs code when built, so it may only reuse one that an operator
already registered from the command line.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.config import Settings
from server.jobs.state import JobSpec, submit
from server.runs.read import list_models
from server.storage.schema import Job, Model
from server.web.deps import SessionDep, SettingsDep, SubmitDep
from server.web.errors import RequestError
from server.web.forms import FormText, OptionalFormText, optional_numbers, optional_size
from server.web.security import allowed_path, check_write_access, forms_router, see_other
from server.web.twins import Page, page_router

pages = page_router()
forms = forms_router()
api = APIRouter(prefix="/api", tags=["models"])

MODELS = Page("models.html")
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")
WEIGHTS_NAME = re.compile(r"[A-Z][A-Z0-9_]*")  # torchvision's IMAGENET1K_V2, DEFAULT
TIMM_NAME = re.compile(r"[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)?")  # resnet50, resnet50.a1_in1k


class ModelBody(BaseModel):
    spec: str = Field(max_length=500, description="torchvision:NAME, a .pt2 file, or a known spec")
    weights: str | None = Field(None, max_length=1000, description="weights file on the server")
    input_size: int | list[int] | None = Field(
        None, description="N (square) or [height, width], 8 to 4096 pixels"
    )
    mean: list[float] | None = Field(None, min_length=1, max_length=3, description="R,G,B or grey")
    std: list[float] | None = Field(None, min_length=1, max_length=3, description="R,G,B or grey")


def register_model(session: Session, settings: Settings, request: ModelBody) -> tuple[Job, bool]:
    """Queue a job that loads the model on a worker, hashes it and lists its layers."""
    spec = request.spec.strip()
    if spec.startswith("torchvision:"):
        if not spec.split(":", 1)[1].replace("_", "").isalnum():
            raise RequestError(f"{spec!r} does not name a torchvision model")
    elif spec.startswith("timm:"):
        if not TIMM_NAME.fullmatch(spec.split(":", 1)[1]):
            raise RequestError(f"{spec!r} does not name a timm model (timm:NAME or NAME.TAG)")
    elif spec.endswith(".pt2"):
        spec = str(allowed_path(settings, spec, "exported model", directory=False))
    elif ":" in spec:
        known = session.scalar(select(Model.id).where(Model.spec == spec).limit(1))
        if known is None:
            raise RequestError(
                f"{spec!r} is Python code on the server; the browser can only reuse such a "
                "model once an operator has registered it from the command line "
                "(neuronscope analyze or analyze --queue)",
                403,
            )
    else:
        raise RequestError(f"{spec!r} is not a model spec: use torchvision:NAME or a .pt2 file")
    weights = None
    named = (request.weights or "").strip()
    if spec.startswith("torchvision:") and WEIGHTS_NAME.fullmatch(named):
        weights = named  # torchvision's weights by name, from the worker's torch hub cache
    elif named:
        weights = str(allowed_path(settings, request.weights, "weights file", directory=False))
        if not weights.endswith(WEIGHT_SUFFIXES):
            raise RequestError(f"weights must be one of {', '.join(WEIGHT_SUFFIXES)}: {weights}")
    size = request.input_size
    if isinstance(size, int):
        size = [size, size]
    if size is not None and (len(size) != 2 or not all(8 <= side <= 4096 for side in size)):
        raise RequestError("the input size must be N or [height, width], 8 to 4096 pixels a side")
    for name, numbers in (("mean", request.mean), ("std", request.std)):
        if numbers is not None and len(numbers) not in (1, 3):
            raise RequestError(f"{name} needs three numbers R,G,B, or one for a greyscale model")
    if request.std is not None and min(request.std) <= 0:
        raise RequestError("std values must be positive")
    params = {
        "spec": spec,
        "weights": weights,
        "input_size": size,
        "mean": request.mean,
        "std": request.std,
    }
    return submit(
        session, JobSpec(kind="register_model", identity=params, params=params, repeatable=True)
    )


def scan_zoo(session: Session) -> tuple[Job, bool]:
    """Queue a job that lists the pretrained weights in a worker's caches (its page offers to
    register each)."""
    return submit(session, JobSpec(kind="zoo", identity=["zoo"], repeatable=True))


@forms.post("/models/zoo")
def scan_zoo_form(
    request: Request, submitter: SubmitDep, token: OptionalFormText = None
) -> Response:
    check_write_access(request, token)
    job = submitter.job(scan_zoo)
    return see_other(request, f"/jobs/{job['id']}", token)


@pages.get("/models")
def models_page(request: Request, session: SessionDep) -> Response:
    return MODELS.render(request, {"models": list_models(session)})


@forms.post("/models")
def register_model_form(
    request: Request,
    settings: SettingsDep,
    submitter: SubmitDep,
    spec: FormText,
    weights: OptionalFormText = None,
    input_size: OptionalFormText = None,
    mean: OptionalFormText = None,
    std: OptionalFormText = None,
    token: OptionalFormText = None,
) -> Response:
    check_write_access(request, token)
    body = ModelBody.model_construct(
        spec=spec,
        weights=weights,
        input_size=optional_size(input_size),
        mean=optional_numbers(mean, "mean"),
        std=optional_numbers(std, "std"),
    )
    job = submitter.job(lambda session: register_model(session, settings, body))
    return see_other(request, f"/jobs/{job['id']}", token)


@api.get("/models", summary="Registered models with their layers")
def api_models(session: SessionDep) -> list[dict[str, Any]]:
    return list_models(session)


@api.post("/models", summary="Register a model (a worker loads it): returns the job")
def api_register_model(
    request: Request, settings: SettingsDep, submitter: SubmitDep, body: ModelBody
) -> dict[str, Any]:
    check_write_access(request)
    return submitter.job(lambda session: register_model(session, settings, body))
