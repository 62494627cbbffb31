"""The run's decoded-image holder: what the sweep hands over is reused, least recently used
images go first, and memory stays bounded."""

from __future__ import annotations

import numpy as np
import torch

import server.pipeline as pipeline
from analysis.data import ResizePolicy, load_pixels, scan_image_folder
from analysis.models import InputSpec

SPEC = InputSpec(size=16, mean=(0, 0, 0), std=(1, 1, 1))


def test_images_are_decoded_once_and_the_least_recently_used_go_first(square_folder, monkeypatch):
    folder = scan_image_folder(square_folder)
    decoded = pipeline.DecodedImages(folder, SPEC, ResizePolicy.WHOLE)
    decoded.capacity = 3
    reads: list[int] = []

    def counted(path, *args):
        reads.append(next(i for i, e in enumerate(folder.images) if folder.root / e.path == path))
        return load_pixels(path, *args)

    monkeypatch.setattr(pipeline, "load_pixels", counted)
    batch = torch.stack(
        [torch.from_numpy(load_pixels(folder.root / folder.images[i].path, 16)) for i in range(3)]
    )
    decoded.keep(batch, torch.tensor([0, 1, 2]))
    batch.zero_()  # what is held is a copy, not a view that keeps the whole batch alive
    expected = load_pixels(folder.root / folder.images[0].path, 16)
    assert np.array_equal(decoded.pixels(0), expected) and reads == []  # handed over: no decode
    decoded.pixels(3)  # full: image 1, the least recently used, goes; 0 was just used
    assert reads == [3]
    decoded.pixels(0)
    decoded.pixels(2)
    assert reads == [3]
    decoded.pixels(1)
    assert reads == [3, 1]
    assert np.array_equal(decoded.image(1), decoded.pixels(1).astype(np.float32) / 255)
    assert len(decoded._pixels) == 3
