"""What the browser and the JSON API may change: register models and image folders, start runs,
cancel jobs. Each action checks its input, then submits jobs; workers do the work.

Paths name files on the server, so they must lie under an allowed root
(``NEURONSCOPE_ALLOWED_ROOTS``). A ``package.module:callable`` model spec runs code when built,
so the browser may only reuse one that an operator already registered from the command line.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.config import Settings
from server.jobs.planning import PlanOptions, plan_analysis
from server.jobs.read import get_job, job_record
from server.jobs.state import JobSpec, request_cancel, submit
from server.jobs.submit import submit_work
from server.runs.read import get_run
from server.runs.register import RunParams, find_or_create_run
from server.storage.schema import Dataset, Job, Model

TOKEN_COOKIE = "neuronscope_token"
MAX_TOP_K = 10_000
MAX_SHARDS = 4096
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")
RESIZE_POLICIES = ("whole", "center-crop")


class ActionError(ValueError):
    """A refused change; ``status`` is the HTTP status, the message says what to fix."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def see_other(request: Request, url: str, token: str | None) -> Response:
    """See the result of a form (POST → 303 → GET); a token typed into the form is remembered."""
    response = RedirectResponse(url, status_code=303)
    if token and request.app.state.settings.token:
        response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
    return response


def check_write_access(request: Request, offered: str | None = None) -> None:
    """Changes need the lab token when one is set, and must come from this site's own pages.

    The token may come as ``Authorization: Bearer``, a form field or the cookie a form sets.
    A cross-site form post (an ``Origin`` that is not this host) is refused even without a token.
    """
    origin = request.headers.get("origin")
    if origin and origin.split("://", 1)[-1] != request.headers.get("host"):
        raise ActionError(f"refused a change requested from another site ({origin})", 403)
    expected = request.app.state.settings.token
    if not expected:
        return
    header = request.headers.get("authorization", "")
    candidates = [offered, request.cookies.get(TOKEN_COOKIE)]
    if header.lower().startswith("bearer "):
        candidates.append(header[7:].strip())
    if not any(c and hmac.compare_digest(c.encode(), expected.encode()) for c in candidates):
        raise ActionError(
            "this server needs the lab token (NEURONSCOPE_TOKEN) to change anything; "
            "enter it in the form, or send it as 'Authorization: Bearer TOKEN'",
            403,
        )


def allowed_path(settings: Settings, raw: str, what: str, directory: bool) -> Path:
    """``raw`` resolved (symlinks followed), existing, and under an allowed root."""
    if not raw or not raw.strip():
        raise ActionError(f"give the {what}'s path on the server")
    path = Path(raw.strip()).expanduser()
    if not path.is_absolute():
        raise ActionError(f"the {what} path must be absolute, not {raw!r}")
    path = path.resolve()
    if not any(path.is_relative_to(root) for root in settings.allowed_roots):
        roots = ", ".join(str(root) for root in settings.allowed_roots)
        raise ActionError(
            f"{path} is outside the folders this server may read ({roots}); "
            "the operator can add folders with NEURONSCOPE_ALLOWED_ROOTS",
            403,
        )
    if directory and not path.is_dir():
        raise ActionError(f"no folder {path}")
    if not directory and not path.is_file():
        raise ActionError(f"no file {path}")
    return path


@dataclass(frozen=True)
class ModelRequest:
    spec: str
    weights: str | None = None
    input_size: int | list[int] | None = None  # N, or [height, width]
    mean: list[float] | None = None
    std: list[float] | None = None


def register_model(session: Session, settings: Settings, request: ModelRequest) -> tuple[Job, bool]:
    """Queue a job that loads the model on a worker, hashes it and lists its layers."""
    spec = request.spec.strip()
    if spec.startswith("torchvision:"):
        if not spec.split(":", 1)[1].replace("_", "").isalnum():
            raise ActionError(f"{spec!r} does not name a torchvision model")
    elif spec.endswith(".pt2"):
        spec = str(allowed_path(settings, spec, "exported model", directory=False))
    elif ":" in spec:
        known = session.scalar(select(Model.id).where(Model.spec == spec).limit(1))
        if known is None:
            raise ActionError(
                f"{spec!r} is Python code on the server; the browser can only reuse such a "
                "model once an operator has registered it from the command line "
                "(neuronscope analyze or analyze --queue)",
                403,
            )
    else:
        raise ActionError(f"{spec!r} is not a model spec: use torchvision:NAME or a .pt2 file")
    weights = None
    if request.weights and request.weights.strip():
        weights = str(allowed_path(settings, request.weights, "weights file", directory=False))
        if not weights.endswith(WEIGHT_SUFFIXES):
            raise ActionError(f"weights must be one of {', '.join(WEIGHT_SUFFIXES)}: {weights}")
    size = request.input_size
    if isinstance(size, int):
        size = [size, size]
    if size is not None and (len(size) != 2 or not all(8 <= side <= 4096 for side in size)):
        raise ActionError("the input size must be N or [height, width], 8 to 4096 pixels a side")
    for name, numbers in (("mean", request.mean), ("std", request.std)):
        if numbers is not None and len(numbers) not in (1, 3):
            raise ActionError(f"{name} needs three numbers R,G,B, or one for a greyscale model")
    if request.std is not None and min(request.std) <= 0:
        raise ActionError("std values must be positive")
    params = {
        "spec": spec,
        "weights": weights,
        "input_size": size,
        "mean": request.mean,
        "std": request.std,
    }
    spec = JobSpec(kind="register_model", identity=params, params=params, repeatable=True)
    return submit(session, spec)


def register_dataset(session: Session, settings: Settings, raw_path: str) -> tuple[Job, bool]:
    """Queue a job that scans and fingerprints an image folder."""
    root = str(allowed_path(settings, raw_path, "image folder", directory=True))
    params = {"root": root}
    return submit(
        session,
        JobSpec(kind="register_dataset", identity=params, params=params, repeatable=True),
    )


@dataclass(frozen=True)
class RunRequest:
    model: int
    dataset: int
    layers: list[str]
    top_k: int = 100
    resize: str = "whole"
    jpeg_draft: bool = False  # JPEGs decoded at a reduced DCT scale: faster, pixels differ a bit
    shards: int = 1
    batch_size: int = 64
    indexes: bool = True
    featureviz: bool = False  # a visualisation of every neuron, after the indexes


def start_run(session: Session, request: RunRequest) -> tuple[int, list[Job], list[int]]:
    """Create (or find) the run and plan its jobs; returns the run id, its jobs, ids to send."""
    model = session.get(Model, request.model)
    if model is None or not model.layers:
        raise ActionError(f"no registered model {request.model}", 404)
    dataset = session.get(Dataset, request.dataset)
    if dataset is None:
        raise ActionError(f"no registered image folder {request.dataset}", 404)
    if not 1 <= request.top_k <= MAX_TOP_K:
        raise ActionError(f"top-K must be between 1 and {MAX_TOP_K}")
    if not 1 <= request.shards <= MAX_SHARDS or not 1 <= request.batch_size <= 4096:
        raise ActionError(f"shards must be 1 to {MAX_SHARDS} and the batch size 1 to 4096")
    if request.resize not in RESIZE_POLICIES:
        raise ActionError(f"resize must be one of {', '.join(RESIZE_POLICIES)}")
    known = {layer["name"]: layer for layer in model.layers}
    chosen = request.layers or [layer["name"] for layer in model.layers if layer["default"]]
    for name in chosen:
        if name not in known:
            raise ActionError(f"model {model.id} has no layer {name!r}")
        if not known[name]["hookable"]:
            raise ActionError(f"layer {name!r} runs several times per forward pass")
    order = list(known)
    layers = tuple(sorted(set(chosen), key=order.index))
    run, _finished = find_or_create_run(
        session,
        model,
        dataset,
        RunParams(layers, request.top_k, request.resize, request.jpeg_draft),
        clear=False,
    )
    options = PlanOptions(
        request.shards, request.batch_size, request.indexes, {} if request.featureviz else None
    )
    jobs, to_send = plan_analysis(session, run, options)
    session.flush()
    return run.id, jobs, to_send


def resume_run(session: Session, run_id: int) -> tuple[int, list[Job], list[int]]:
    """Queue a failed or cancelled run again: its failed and cancelled jobs are revived, its
    finished ones kept (the same plan: shards, batch size, indexes and feature visualisations
    if it had them)."""
    run = get_run(session, run_id)
    if run.status not in ("failed", "cancelled"):
        raise ActionError(f"run {run_id} is {run.status}; only a failed or cancelled run resumes")
    kinds = set(session.scalars(select(Job.kind).where(Job.run_id == run_id)))
    if not kinds:
        raise ActionError(f"run {run_id} was computed on the command line; run it there again")
    visualised = session.scalars(
        select(Job.params).where(Job.run_id == run_id, Job.kind == "featureviz")
    ).all()
    whole_layers = [params for params in visualised if params["layer"] and not params["units"]]
    options = PlanOptions(
        indexes="indexes" in kinds,
        featureviz=whole_layers[0]["settings"] if whole_layers else None,
    )
    jobs, to_send = plan_analysis(session, run, options)
    session.flush()
    return run.id, jobs, to_send


def cancel_job(session: Session, job_id: int) -> dict[str, Any]:
    job = get_job(session, job_id)
    request_cancel(session, job)
    session.flush()
    session.refresh(job)
    return job_record(job)


def submit_single(request: Request, action: Any) -> dict[str, Any]:
    """Run a one-job action in its own transaction and send its message."""
    app = request.app

    def plan(session: Session) -> tuple[dict[str, Any], list[int]]:
        job, ready = action(session)
        return job_record(job), [job.id] if ready else []

    return submit_work(app.state.database, app.state.queue, plan)
