"""Stored feature visualisations, as plain data: the CLI, the API and the pages show these."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.storage.artifacts import ArtifactStore
from server.storage.schema import FeatureViz


def featureviz_records(
    session: Session, store: ArtifactStore, run_id: int, target: str, unit: int
) -> list[dict[str, Any]]:
    """Every stored visualisation of one unit, newest settings first, a diverse set in order.

    ``png`` is the image's absolute path (as ``nf`` is), ``key`` its artifact key.
    """
    found = session.scalars(
        select(FeatureViz)
        .where(FeatureViz.run_id == run_id, FeatureViz.target == target, FeatureViz.unit == unit)
        .order_by(FeatureViz.id)
    ).all()
    newest = {row.params_key: row.id for row in found}  # a set's newest row: its last
    rows = sorted(found, key=lambda row: (-newest[row.params_key], row.variant))
    return [
        {
            "objective": row.objective,
            "method": row.method,
            "png": str(store.path(row.image_key)),
            "key": row.image_key,
            "steps": row.params.get("steps"),
            "size": row.params.get("size"),
            "diversity": row.params.get("diversity", 0),
            "variant": row.variant,
            "activation": row.activation,
            "random_activation": row.random_activation,
            "params": row.params,
        }
        for row in rows
    ]


def latest_featureviz(session: Session, run_id: int, target: str) -> dict[int, str]:
    """Per unit of ``target``, the image key of its newest single (non-diverse) visualisation."""
    rows = session.execute(
        select(FeatureViz.unit, FeatureViz.image_key, FeatureViz.params)
        .where(FeatureViz.run_id == run_id, FeatureViz.target == target, FeatureViz.variant == 0)
        .order_by(FeatureViz.created, FeatureViz.id)
    ).all()
    latest: dict[int, str] = {}
    for unit, key, params in rows:
        if not params.get("diversity"):
            latest[unit] = key
    return latest


def stored_units(session: Session, run_id: int, target: str, params_key: str) -> set[int]:
    return set(
        session.scalars(
            select(FeatureViz.unit).where(
                FeatureViz.run_id == run_id,
                FeatureViz.target == target,
                FeatureViz.params_key == params_key,
            )
        )
    )
