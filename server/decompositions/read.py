"""Stored image decompositions and neuron compositions, as plain data (no torch: the web reads
these). Rendered images are given as artifact URLs, so the API, the pages and the CLI's
``--json`` show one and the same object.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.storage.errors import NotFoundError
from server.storage.schema import Composition, Decomposition, Job, Upload

# How a neuron may be composed of a shallower layer's neurons (docs/algorithms.md §6).
COMPOSITION_MODES = ("activation", "relevance")


def params_key(params: dict[str, Any]) -> str:
    """What identifies a decomposition's settings (with its run and image)."""
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()


def artifact_url(key: str | None) -> str | None:
    return f"/artifacts/{key}" if key else None


def get_decomposition(session: Session, decomposition_id: int) -> Decomposition:
    found = session.get(Decomposition, decomposition_id)
    if found is None:
        raise NotFoundError(f"no decomposition {decomposition_id}")
    return found


def decomposition_record(
    session: Session, decomposition: Decomposition, layer: str | None = None
) -> dict[str, Any]:
    """A decomposition as the API, the page and ``neuronscope decompose --json`` show it: its
    status (its job's), and once done, per layer the accepted neurons (windows in the image's
    own pixels) and the URLs of the rendered images; ``layer`` keeps only that layer."""
    job = session.get(Job, decomposition.job_id) if decomposition.job_id else None
    status = "done" if decomposition.result else (job.status if job else "queued")
    if status in ("waiting", "cancelling"):
        status = "queued" if status == "waiting" else "running"
    upload = session.get(Upload, decomposition.upload_id) if decomposition.upload_id else None
    record: dict[str, Any] = {
        "id": decomposition.id,
        "run": decomposition.run_id,
        "status": status,
        "source": decomposition.source,
        "filename": upload.filename if upload else None,
        "image_index": decomposition.image_index,
        "job": decomposition.job_id,
        "progress": job.progress if job else (1.0 if decomposition.result else 0.0),
        "error": (job.error or "").split("\n", 1)[0] or None if status == "failed" else None,
        "created": decomposition.created.isoformat(),
    }
    result = decomposition.result
    if not result:
        return record
    record.update(
        width=result["width"],
        height=result["height"],
        image=artifact_url(result["image"]),
        original=artifact_url(upload.image_key) if upload else artifact_url(result["image"]),
        layers={
            name: {
                "map_size": found["map_size"],
                # The NFs contrast-stretched where the decomposition has them (made since
                # they were added), else the raw means; the raw means either way.
                "composite": artifact_url(found.get("composite_stretched", found["composite"])),
                "composite_raw": artifact_url(found["composite"]),
                "stretched": "composite_stretched" in found,
                "neurons": [
                    {
                        **{k: n[k] for k in ("channel", "value", "normalised", "window")},
                        "nf": artifact_url(n["nf"]),
                        "heatmap": artifact_url(n["heatmap"]),
                        "url": f"/runs/{decomposition.run_id}/layers/{name}/neurons/{n['channel']}",
                    }
                    for n in found["neurons"]
                ],
            }
            for name, found in result["layers"].items()
            if layer is None or name == layer
        },
    )
    return record


def list_decompositions(session: Session, run_id: int, limit: int = 50) -> list[dict[str, Any]]:
    """A run's decompositions, newest first."""
    found = session.scalars(
        select(Decomposition)
        .where(Decomposition.run_id == run_id)
        .order_by(Decomposition.id.desc())
        .limit(limit)
    )
    return [
        {
            key: value
            for key, value in decomposition_record(session, decomposition).items()
            if key != "layers"
        }
        for decomposition in found
    ]


def find_composition(
    session: Session, run_id: int, layer: str, channel: int, source: str, mode: str, depth: int
) -> Composition | None:
    return session.scalar(
        select(Composition).where(
            Composition.run_id == run_id,
            Composition.layer == layer,
            Composition.channel == channel,
            Composition.source == source,
            Composition.mode == mode,
            Composition.depth == depth,
        )
    )


def composition_record(run_id: int, composition: Composition) -> dict[str, Any]:
    """A stored composition with URLs: each neuron (and tree node) links to its page."""
    result = dict(composition.result)

    def linked(node: dict[str, Any]) -> dict[str, Any]:
        return {
            **node,
            "nf": artifact_url(node.get("nf")),
            "url": f"/runs/{run_id}/layers/{node['layer']}/neurons/{node['channel']}",
            "children": [linked(child) for child in node.get("children", [])],
        }

    if "tree" in result:
        result["tree"] = linked(result["tree"])
    if "neurons" in result:
        result["neurons"] = [linked(n) for n in result["neurons"]]
        result["image"] = artifact_url(result.get("image"))
        result["image_raw"] = artifact_url(result.get("image_raw"))
    return {
        "status": "done",
        "layer": composition.layer,
        "channel": composition.channel,
        **result,
    }
