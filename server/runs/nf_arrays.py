"""The float Neuron Feature of a neuron, computed when it is first asked for, then kept.

A run stores what people look at (each neuron's display PNG and top-patch sprite) and its top-K;
it does not store the float NF at full resolution (2 MB for a late ResNet-50 neuron: 12 GB for
a whole network over 26 photos). The float NF is computed again from the stored top-K and the
run's images, exactly as the run would have (docs/algorithms.md §3, within float rounding),
the first time a researcher, a decomposition or a composition needs it, and stored as an
artifact that the neuron's row then names. A folder that changed since the run is refused
(its fingerprint), never answered with a wrong array.
"""

from __future__ import annotations

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from analysis.data import ImageFolder, scan_image_folder
from analysis.models import InputSpec
from analysis.neuron_feature import neuron_features
from server.runs.decoded import DecodedImages
from server.runs.inputs import RunInputError
from server.runs.stored import stored_field, stored_reach
from server.storage.artifacts import ArtifactStore
from server.storage.schema import Layer, Model, Neuron, Run, TopActivation


class DatasetChangedError(RunInputError):
    """The run's image folder is not what it analysed: its float NFs cannot be recomputed."""


def model_input_spec(model: Model) -> InputSpec:
    """How the model saw its images, from its registered row (no need to load it)."""
    return InputSpec(
        size=model.input_shape, mean=model.mean, std=model.std, channels=model.input_channels
    )


def run_folder(run: Run) -> ImageFolder:
    """The run's image folder as it is now, refused if it changed since the run."""
    try:
        folder = scan_image_folder(run.dataset.root)
    except ValueError as error:
        raise DatasetChangedError(
            f"the image folder of run {run.id} ({run.dataset.root}) cannot be read ({error}); "
            "its float Neuron Features can be recomputed only from the same images"
        ) from None
    if folder.fingerprint() != run.dataset.fingerprint:
        raise DatasetChangedError(
            f"the image folder of run {run.id} ({run.dataset.root}) changed since the run (files "
            "added, removed or modified), so its float Neuron Features cannot be recomputed; "
            "restore the folder, or analyse it again as a new run"
        )
    return folder


class FloatFeatures:
    """The float NFs of one run's neurons: the stored array, or one computed and stored now.

    Images decoded for one neuron are kept for the next (:class:`DecodedImages`), so a
    decomposition that needs a hundred NFs of a layer decodes each top image once."""

    def __init__(self, session: Session, store: ArtifactStore, run: Run) -> None:
        self.session = session
        self.store = store
        self.run = run
        self._decoded: DecodedImages | None = None

    def array(self, layer: Layer, neuron: Neuron) -> np.ndarray | None:
        """``neuron``'s float NF over ``stored_reach(layer)`` (None for a dead neuron)."""
        if neuron.dead:
            return None
        if neuron.nf_array_key and self.store.path(neuron.nf_array_key).is_file():
            return self.store.load_array(neuron.nf_array_key)
        feature = self._compute(layer, neuron)
        neuron.nf_array_key = self.store.put_array(feature)
        return feature

    def key(self, layer: Layer, neuron: Neuron) -> str | None:
        """The artifact key of ``neuron``'s float NF, computing it first if need be."""
        self.array(layer, neuron)
        return neuron.nf_array_key

    def _compute(self, layer: Layer, neuron: Neuron) -> np.ndarray:
        top = self.session.execute(
            select(TopActivation.value, TopActivation.image_index, TopActivation.row,
                   TopActivation.col)
            .where(TopActivation.neuron_id == neuron.id)
            .order_by(TopActivation.rank)
        ).all()  # fmt: skip
        if self._decoded is None:
            spec = model_input_spec(self.run.model)
            self._decoded = DecodedImages.of_run(run_folder(self.run), spec, self.run)
        values, images, rows, cols = (np.array([column]) for column in zip(*top, strict=True))
        found = neuron_features(
            values.astype(np.float32),  # as the sweep held them: the weights come out the same
            images.astype(np.int64),
            rows.astype(np.int64),
            cols.astype(np.int64),
            stored_field(layer),
            self._decoded.pixels,
            np.zeros(1, bool),
            reach=stored_reach(layer),
        )
        return next(feature for _channel, feature in found).mean
