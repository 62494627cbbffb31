"""Feature visualisations of a run's model: render what is not stored yet, store it per batch.

Each finished batch is committed at once, so the dashboard shows visualisations as they arrive and
a retried or repeated request renders only the units still missing: the same unit with the same
settings (``params_key``) is never rendered twice. Images are content-addressed PNGs.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from sqlalchemy import delete
from sqlalchemy.orm import Session

from analysis.exported import input_constraints
from analysis.featureviz.dream import dream, octave_sizes, require_octaves
from analysis.featureviz.objectives import select_output
from analysis.featureviz.targets import Target
from analysis.featureviz.units import RenderSettings, render_units
from analysis.layers import LayerInfo
from analysis.models import LoadedModel
from analysis.neuron_feature import to_uint8
from server.featureviz.read import stored_units
from server.progress import Progress
from server.storage.artifacts import ArtifactStore
from server.storage.schema import FeatureViz, Run

# The longest side a dreamt image keeps: DeepDream's cost grows with the pixels.
DREAM_MAX_SIDE = 512


class FeatureVizError(ValueError):
    """A request that cannot be rendered (unknown layer, unit out of range, bad settings)."""


@dataclass
class RenderReport:
    target: str
    rendered: int
    reused: int
    seconds: float

    def as_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "rendered": self.rendered,
            "reused": self.reused,
            "seconds": round(self.seconds, 3),
        }


def render_settings(params: dict[str, Any]) -> RenderSettings:
    """Settings from a job's or a form's parameters, defaults for what they leave out."""
    known = {key: value for key, value in params.items() if value is not None}
    try:
        settings = RenderSettings(**known)
    except (TypeError, ValueError) as error:
        raise FeatureVizError(f"bad visualisation settings: {error}") from None
    if settings.steps < 1 or not 8 <= settings.size <= 1024:
        raise FeatureVizError("steps must be at least 1 and the size from 8 to 1024 px")
    if settings.diversity == 1 or settings.diversity < 0 or settings.diversity > 16:
        raise FeatureVizError("diversity is 0 (one image) or 2 to 16 images per unit")
    return settings


def settings_key(target: Target, settings: RenderSettings) -> str:
    """What identifies a visualisation's images besides the unit: target and every setting."""
    payload = json.dumps(
        {"objective": target.objective_name, **settings.as_params()}, sort_keys=True
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def check_target(target: Target, available: list[LayerInfo]) -> None:
    if target.layer is None:
        return
    names = {layer.name for layer in available}
    if target.layer not in names:
        near = [n for n in names if n.startswith(target.layer.rsplit(".", 1)[0])][:8]
        hint = f" (similar: {', '.join(sorted(near))})" if near else ""
        raise FeatureVizError(f"the model has no layer {target.layer!r}{hint}")


def unit_count(loaded: LoadedModel, target: Target, available: list[LayerInfo]) -> int:
    """Channels of the layer, or classes of the output (found by one forward pass)."""
    check_target(target, available)
    if target.layer is not None:
        return next(layer.channels for layer in available if layer.name == target.layer)
    model = loaded.module
    device = next(model.parameters(), torch.empty(0)).device
    probe = torch.zeros(1, 3, *loaded.input.size, device=device)
    with torch.no_grad():
        try:
            logits = select_output(model(loaded.input.normalise(probe)), target.output)
        except (TypeError, IndexError, KeyError) as error:
            raise FeatureVizError(f"cannot read class logits from the output: {error}") from None
    if logits.dim() != 2:
        raise FeatureVizError(
            f"the model's output has shape {tuple(logits.shape)}, not (batch, classes): "
            "class visualisations need a vector of logits"
        )
    return int(logits.shape[1])


def check_units(units: list[int], count: int, target: Target) -> None:
    what = "channels" if target.layer is not None else "classes"
    bad = [unit for unit in units if not 0 <= unit < count]
    if bad:
        raise FeatureVizError(f"{target.name} has {what} 0..{count - 1}, not {bad[0]}")


def render_and_store(
    session: Session,
    run: Run,
    loaded: LoadedModel,
    target: Target,
    units: list[int],
    settings: RenderSettings,
    store: ArtifactStore,
    device: str,
    progress: Progress,
    batch_size: int | None = None,
) -> RenderReport:
    """Render the ``units`` of ``target`` not stored with these settings yet; commit per batch."""
    started = time.perf_counter()
    height, width = settings.view(target, loaded.input)
    if not input_constraints(loaded.module).accepts(height, width):
        raise FeatureVizError(
            f"the exported program cannot see images of {height}×{width} px: "
            f"{input_constraints(loaded.module).describe()}; choose a size or view size it takes"
        )
    key = settings_key(target, settings)
    done = stored_units(session, run.id, target.name, key)
    missing = [unit for unit in units if unit not in done]
    progress.start(f"feature visualisations of {target.name}", len(missing), "units")
    model = loaded.module.to(device)
    rendered = 0
    batches = render_units(model, target, missing, loaded.input, settings, batch_size)
    for batch in batches:
        session.execute(
            delete(FeatureViz).where(
                FeatureViz.run_id == run.id,
                FeatureViz.target == target.name,
                FeatureViz.params_key == key,
                FeatureViz.unit.in_([result.unit for result in batch]),
            )
        )
        for result in batch:
            for variant, (image, activation) in enumerate(
                zip(result.images, result.activations, strict=True)
            ):
                session.add(
                    FeatureViz(
                        run_id=run.id,
                        target=target.name,
                        unit=result.unit,
                        objective=target.objective_name,
                        method=settings.method.value,
                        params_key=key,
                        params=settings.as_params(),
                        variant=variant,
                        image_key=store.put_png(image_png(image)),
                        activation=activation,
                        random_activation=result.random_activation,
                    )
                )
        session.commit()
        rendered += len(batch)
        progress.update(rendered)
    progress.finish()
    return RenderReport(
        target.name, rendered, len(units) - len(missing), time.perf_counter() - started
    )


def image_png(image: torch.Tensor) -> np.ndarray:
    """A (3, H, W) image in [0, 1] as uint8 (H, W, 3), as shown: no contrast stretch."""
    return to_uint8(image.permute(1, 2, 0).numpy())


def read_image(path: Path, max_side: int = DREAM_MAX_SIDE) -> torch.Tensor:
    """An image file as (3, H, W) in [0, 1], RGB as the sweep reads it, longest side capped."""
    with Image.open(path) as opened:
        image = opened.convert("RGB")
        scale = max_side / max(image.size)
        if scale < 1:
            size = (max(8, round(image.width * scale)), max(8, round(image.height * scale)))
            image = image.resize(size, Image.BILINEAR)
        pixels = np.asarray(image, dtype=np.float32) / 255.0
    return torch.from_numpy(pixels).permute(2, 0, 1).contiguous()


def dream_image(
    loaded: LoadedModel,
    image: torch.Tensor,
    layer: str,
    available: list[LayerInfo],
    device: str,
    octaves: int = 4,
    steps: int = 32,
    progress: Progress | None = None,
) -> torch.Tensor:
    """DeepDream of ``image`` at ``layer`` (checked against the model's layers)."""
    check_target(Target(layer), available)
    if not 1 <= octaves <= 8 or steps < 1:
        raise FeatureVizError("octaves must be 1 to 8 and steps at least 1")
    model = loaded.module.to(device)
    require_octaves(model, octave_sizes(tuple(image.shape[-2:]), octaves))
    if progress is not None:
        progress.start(f"DeepDream at {layer}", octaves * steps, "steps")
    result = dream(
        model,
        image.to(device),
        layer,
        loaded.input,
        octaves=octaves,
        steps=steps,
        progress=(lambda done, _total: progress.update(done)) if progress else None,
    )
    if progress is not None:
        progress.finish()
    return result.cpu()
