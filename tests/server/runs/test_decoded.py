"""The run's decoded-image holder: what the sweep hands over is reused, least recently used
images go first, and memory stays bounded; a run's decoding choices reach every stage."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

from analysis.data import load_pixels, scan_image_folder
from analysis.models import InputSpec
from analysis.resize import ResizePolicy
from analysis.sweep import sweep
from server.runs import decoded as decoded_images
from tests.support.images import write_photo
from tests.support.models import random_net

SPEC = InputSpec(size=16, mean=(0, 0, 0), std=(1, 1, 1))


def test_images_are_decoded_once_and_the_least_recently_used_go_first(square_folder, monkeypatch):
    folder = scan_image_folder(square_folder)
    decoded = decoded_images.DecodedImages(folder, SPEC, ResizePolicy.WHOLE)
    decoded.capacity = 3
    reads: list[int] = []

    def counted(path, *args):
        reads.append(next(i for i, e in enumerate(folder.images) if folder.root / e.path == path))
        return load_pixels(path, *args)

    monkeypatch.setattr(decoded_images, "load_pixels", counted)
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


def test_a_draft_run_decodes_at_reduced_scale_in_the_sweep_and_after_it(tmp_path):
    """The sweep and the later stages must see the same pixels, so the draft choice is the
    run's: images the holder decodes again are drafted too."""
    paths = [write_photo(tmp_path / "big" / f"{i}.jpg", 1003, 757, seed=i) for i in range(3)]
    folder = scan_image_folder(tmp_path / "big")
    kept: dict[int, np.ndarray] = {}

    def keep(pixels: torch.Tensor, indices: torch.Tensor) -> None:
        kept.update(zip(indices.tolist(), pixels.numpy(), strict=True))

    sweep(random_net(), folder, ["4"], SPEC, k=2, workers=0, draft=True, keep=keep)
    run = SimpleNamespace(params={"resize": "whole", "jpeg_draft": True})
    decoded = decoded_images.DecodedImages.of_run(folder, SPEC, run)  # holds nothing: decodes again
    for index, path in enumerate(paths):
        drafted = load_pixels(path, 16, draft=True)
        assert np.array_equal(kept[index], drafted)
        assert np.array_equal(decoded.pixels(index), drafted)
        assert not np.array_equal(drafted, load_pixels(path, 16))
    plain = SimpleNamespace(params={"resize": "center-crop", "top_k": 5})  # a run made before
    assert decoded_images.run_decoding(plain) == (ResizePolicy.CENTER_CROP, False)
