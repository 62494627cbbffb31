"""A run's inputs as registered: the cached model is reused only while its files are unchanged."""

from __future__ import annotations

import pytest

from tests.support.models import RED_DETECTOR_ARGS

ANALYSIS = (*RED_DETECTOR_ARGS, "--layers", "1,4", "--top-k", "5", "--workers", "0", "--json")


def test_a_worker_reuses_its_loaded_model_only_while_the_weights_file_is_unchanged(tmp_path):
    from analysis.models import load_model
    from analysis.safetensors_io import save_safetensors
    from server.runs.inputs import ModelCache, RunInputError
    from server.storage.schema import Model
    from tests.support.models import red_detector

    weights = tmp_path / "red.safetensors"
    save_safetensors(red_detector().state_dict(), weights)
    loaded = load_model("tests.support.models:red_detector", weights=weights, input_size=32)
    model = Model(
        id=1,
        spec=loaded.spec,
        weights_path=str(weights),
        weights_sha256=loaded.weights_sha256,
        input_size=32,
        mean=list(loaded.input.mean),
        std=list(loaded.input.std),
    )
    cache = ModelCache()
    first, layers = cache.load(model)
    assert cache.load(model)[0] is first and [layer.name for layer in layers][:2] == ["0", "1"]
    changed = red_detector().state_dict()
    changed["0.bias"] = changed["0.bias"] + 1.0
    save_safetensors(changed, weights)
    with pytest.raises(RunInputError, match="changed since they were registered"):
        cache.load(model)
