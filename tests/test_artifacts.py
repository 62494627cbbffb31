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


def test_freed_memory_is_kept_for_reuse_on_glibc():
    import platform

    from analysis.allocator import reuse_freed_memory

    glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert reuse_freed_memory() is glibc


@pytest.mark.parametrize(
    ("shape", "mode"),
    [
        ((37, 53, 3), "RGB"),
        ((9, 4), "L"),
        ((6, 5, 1), "L"),
        ((8, 3, 4), "RGBA"),
        ((1, 1, 3), "RGB"),
    ],
)
def test_png_files_decode_to_the_exact_pixels(tmp_path, shape, mode):
    from PIL import Image

    pixels = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    pixels[: shape[0] // 2] = 255 - pixels[: shape[0] // 2]  # rows far apart: the Up filter wraps
    key = ArtifactStore(tmp_path).put_png(pixels)
    with Image.open(tmp_path / key[:2] / key) as image:
        image.load()  # verifies every chunk's CRC and the zlib stream
        assert image.mode == mode
        assert np.array_equal(
            np.asarray(image),
            pixels.reshape(image.height, image.width, -1).squeeze(-1) if mode == "L" else pixels,
        )


def test_png_refuses_what_it_cannot_encode(tmp_path):
    from server.storage.png import encode_png

    for bad in (
        np.zeros((4, 4, 3), np.float32),
        np.zeros((4, 4, 2), np.uint8),
        np.zeros((0, 3), np.uint8),
    ):
        with pytest.raises(ValueError, match="cannot encode"):
            encode_png(bad)
