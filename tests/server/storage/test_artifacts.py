"""The artifact store: content-addressed keys over exactly the bytes numpy and Pillow write."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pytest

from server.storage.artifacts import ArtifactStore


@pytest.mark.parametrize(
    "array",
    [
        np.random.default_rng(0).random((435, 435, 3), dtype=np.float32),
        np.arange(6, dtype=np.float64).reshape(2, 3),
        np.asfortranarray(np.arange(12, dtype=np.float32).reshape(3, 4)),
    ],
)
def test_arrays_are_stored_as_np_save_writes_them(tmp_path, array):
    store = ArtifactStore(tmp_path)
    key = store.put_array(array)
    expected = io.BytesIO()
    np.save(expected, np.ascontiguousarray(array), allow_pickle=False)
    stored = store.path(key).read_bytes()
    assert stored == expected.getvalue()
    assert key == f"{hashlib.sha256(stored).hexdigest()}.npy"
    assert np.array_equal(store.load_array(key), array)
    assert store.put_array(array.copy()) == key  # the same bytes are stored once
    assert not list(tmp_path.rglob(".partial-*"))


def test_keys_never_leave_the_store(tmp_path):
    store = ArtifactStore(tmp_path)
    for key in ("", "../etc/passwd", "ab/cd.png", ".partial-x"):
        with pytest.raises(ValueError, match="not an artifact key"):
            store.path(key)
