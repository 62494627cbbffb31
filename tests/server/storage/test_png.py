"""The artifact store's PNG encoder: exact pixels, and refusals for what PNG cannot hold."""

from __future__ import annotations

import numpy as np
import pytest

from server.storage.artifacts import ArtifactStore


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
