"""The Neuron Feature stage's files: forked processes on a CPU write exactly what the threaded
path writes, into pack files whose entries read back as their keys say, report every neuron,
and a failure in one of them stops the stage with its reason, leaving no process behind."""

from __future__ import annotations

import hashlib
import io
import multiprocessing

import pytest
import torch
from PIL import Image

from analysis.data import scan_image_folder
from analysis.layers import list_layers
from analysis.models import InputSpec
from analysis.resize import ResizePolicy
from analysis.sweep import sweep
from server.runs import features
from server.runs.decoded import DecodedImages
from server.runs.features import compute_neuron_features, feature_processes
from server.storage.artifacts import ArtifactStore
from tests.support.images import write_photo
from tests.support.models import random_net

pytestmark = pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(), reason="the processes path forks"
)


@pytest.fixture
def swept(tmp_path):
    """Both conv layers of the random net over six JPEG photographs, K = 3."""
    folder = tmp_path / "photos"
    for index in range(6):
        write_photo(folder / f"{index}.jpg", 50 + 5 * index, 40, seed=index)
    model, spec = random_net(), InputSpec((32, 32), (0.5,) * 3, (0.25,) * 3)
    layers = [layer for layer in list_layers(model, spec) if layer.name in ("0", "3")]
    images = scan_image_folder(folder)
    decoded = DecodedImages(images, spec, ResizePolicy.WHOLE)
    result = sweep(model, images, [layer.name for layer in layers], spec, k=3, workers=0)
    return [(layer, result.layers[layer.name].trimmed()) for layer in layers], decoded


def stored_keys(files) -> dict:
    return {
        (name, channel): (neuron.nf_key, neuron.sprite_key)
        for name, neurons in files.neurons.items()
        for channel, neuron in neurons.items()
    }


def test_processes_write_the_files_the_threads_write(monkeypatch, swept, tmp_path):
    layers, decoded = swept
    live = sum(int((~topk.dead).sum()) for _layer, topk in layers)
    monkeypatch.setattr(features, "feature_processes", lambda _device, _neurons: 1)
    threaded = compute_neuron_features(layers, decoded, ArtifactStore(tmp_path / "a"))

    monkeypatch.setattr(features, "feature_processes", lambda _device, _neurons: 3)
    told: list[int] = []
    store = ArtifactStore(tmp_path / "b")
    forked = compute_neuron_features(layers, decoded, store, advance=told.append)

    assert stored_keys(forked) == stored_keys(threaded)
    assert sum(key is not None for key, _ in stored_keys(forked).values()) == live > 6
    # no file a picture: each process writes a pack a layer, and each entry is its key's bytes
    assert len(list(store.root.glob("??/*.png"))) == 0
    assert len({entry.pack_key for entry in forked.packed}) == 3 * len(layers)
    where = {entry.key: entry for entry in forked.packed}
    for nf, sprite in (keys for keys in stored_keys(forked).values() if keys[0]):
        for key in (nf, sprite):
            entry = where[key]
            data = store.read_range(entry.pack_key, entry.offset, entry.length)
            assert hashlib.sha256(data).hexdigest() == key[:64]
        assert Image.open(io.BytesIO(read(store, where[nf]))).format == "PNG"
        assert Image.open(io.BytesIO(read(store, where[sprite]))).format == "JPEG"
    assert told == sorted(told) and told[-1] == live
    assert not multiprocessing.active_children()


def read(store, entry) -> bytes:
    return store.read_range(entry.pack_key, entry.offset, entry.length)


def test_a_failed_process_stops_the_stage_with_its_reason(monkeypatch, swept, tmp_path):
    layers, decoded = swept

    def broken(self, entries):
        raise OSError("No space left on device")

    monkeypatch.setattr(features, "feature_processes", lambda _device, _neurons: 2)
    monkeypatch.setattr(ArtifactStore, "put_pack", broken)
    with pytest.raises(RuntimeError, match="OSError: No space left on device"):
        compute_neuron_features(layers, decoded, ArtifactStore(tmp_path / "store"))
    assert not multiprocessing.active_children()


def test_processes_only_on_a_cpu_with_neurons_to_share(monkeypatch):
    monkeypatch.setattr(features, "usable_cores", lambda: 4)
    assert feature_processes("cpu", 10_000) == 4
    assert feature_processes("cpu", 2 * features.MIN_CHANNELS_A_PROCESS) == 2
    assert feature_processes("cpu", 10) == 1
    if torch.cuda.is_available():
        assert feature_processes("cuda", 10_000) == 1
    assert feature_processes("meta", 10_000) == 1
