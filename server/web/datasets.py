"""Image folders in the browser and the API: the registered ones, and registering another under
an allowed root (a worker scans and fingerprints it)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from server.config import Settings
from server.jobs.state import JobSpec, submit
from server.runs.read import list_datasets
from server.storage.schema import Job
from server.web.deps import SessionDep, SettingsDep, SubmitDep
from server.web.forms import FormText, OptionalFormText
from server.web.security import allowed_path, check_write_access, forms_router, see_other
from server.web.twins import Page, page_router

pages = page_router()
forms = forms_router()
api = APIRouter(prefix="/api", tags=["image folders"])

DATASETS = Page("datasets.html")


class DatasetBody(BaseModel):
    path: str = Field(max_length=1000, description="an image folder on the server")


def register_dataset(session: Session, settings: Settings, raw_path: str) -> tuple[Job, bool]:
    """Queue a job that scans and fingerprints an image folder."""
    root = str(allowed_path(settings, raw_path, "image folder", directory=True))
    params = {"root": root}
    return submit(
        session,
        JobSpec(kind="register_dataset", identity=params, params=params, repeatable=True),
    )


@pages.get("/datasets")
def datasets_page(request: Request, session: SessionDep) -> Response:
    return DATASETS.render(request, {"datasets": list_datasets(session)})


@forms.post("/datasets")
def register_dataset_form(
    request: Request,
    settings: SettingsDep,
    submitter: SubmitDep,
    path: FormText,
    token: OptionalFormText = None,
) -> Response:
    check_write_access(request, token)
    job = submitter.job(lambda session: register_dataset(session, settings, path))
    return see_other(request, f"/jobs/{job['id']}", token)


@api.get("/datasets", summary="Registered image folders")
def api_datasets(session: SessionDep) -> list[dict[str, Any]]:
    return list_datasets(session)


@api.post("/datasets", summary="Register an image folder (a worker scans it): returns the job")
def api_register_dataset(
    request: Request, settings: SettingsDep, submitter: SubmitDep, body: DatasetBody
) -> dict[str, Any]:
    check_write_access(request)
    return submitter.job(lambda session: register_dataset(session, settings, body.path))
