"""One neuron's page: its NF and feature visualisations, indexes and tuning curves, top images,
its composition, and neighbours; its ``.json`` twin and the API give the CLI's neuron object."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.runs.read import get_layer, layer_summary, neuron_detail, run_summary
from server.storage.artifacts import ArtifactStore
from server.storage.schema import Layer, Neuron
from server.web.compositions import composition_data, composition_waits
from server.web.deps import Channel, ChannelRef, RunId, RunRef, SessionDep, StoreDep, no_live_worker
from server.web.featureviz import featureviz_section
from server.web.layers import INDEX_LABELS
from server.web.twins import Data, Page, page_router

pages = page_router()
api = APIRouter(prefix="/api", tags=["runs"])

NEURON = Page("neuron.html", json=lambda data: data["neuron"])


def neuron_data(
    session: Session, store: ArtifactStore, run_id: int, layer_name: str, channel: int
) -> Data:
    """The CLI's neuron object, with its artifacts' keys, its neighbours and the runs that have
    the same channel of the same layer."""
    detail = neuron_detail(session, store, run_id, layer_name, channel)
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
    depth: Annotated[int, Query(ge=1, le=6)] = 3,
) -> Response:
    data = neuron_data(session, store, run_id, layer_name, channel)
    composition = composition_data(
        session, run_id, layer_name, channel, source or None, mode, depth
    )
    waiting = bool(data["fv"]["polling"] or composition_waits(composition))
    data["no_worker"] = composition["no_worker"] = no_live_worker(request, session, waiting)
    return NEURON.render(request, {**data, "comp": composition, "index_labels": INDEX_LABELS})


@api.get(
    "/runs/{run_id}/layers/{layer_name}/neurons/{channel}",
    summary="One neuron: the same object as `neuronscope neuron --json`",
)
def api_neuron(
    session: SessionDep, store: StoreDep, run_id: RunId, layer_name: str, channel: Channel
) -> dict[str, Any]:
    return neuron_detail(session, store, run_id, layer_name, channel)
