"""Neuron Features: patches aligned on unclipped windows, and a red detector's NF is red."""

from __future__ import annotations

import numpy as np

from analysis.data import load_pixels, load_rgb, scan_image_folder
from analysis.models import InputSpec
from analysis.neuron_feature import (
    GREY,
    contrast_stretched,
    cut_patch,
    display_image,
    full_window,
    neuron_features,
    sprite,
    tile_step,
    to_uint8,
)
from analysis.sweep import sweep
from tests.support.models import red_detector
from tests.support.probe import receptive_fields

SPEC = InputSpec(size=32, mean=(0, 0, 0), std=(1, 1, 1))


def test_cut_patch_fills_outside_the_image_with_grey():
    image = np.ones((4, 4, 3), dtype=np.float32)
    patch = cut_patch(image, (-1, 2, 3, 6))
    assert patch.shape == (3, 3, 3)
    inside = [[False] * 3, [True, False, False], [True, False, False]]
    assert (patch[..., 0] == 1.0).tolist() == inside
    assert np.all(patch[~np.array(inside)] == 0.5)
    sampled = cut_patch(np.arange(64, dtype=np.uint8).reshape(4, 4, 4)[..., :3], (-2, 5, 1, 6), 2)
    assert sampled[..., 0].tolist() == [[128] * 3, [4, 12, 128], [36, 44, 128], [128] * 3]


def test_red_detector_has_a_red_neuron_feature(square_folder):
    model = red_detector()
    folder = scan_image_folder(square_folder)
    result = sweep(model, folder, ["4"], SPEC, k=8, workers=0).layers["4"]
    field = receptive_fields(model, ["4"], SPEC.height)["4"]

    features = dict(
        neuron_features(
            result.values.numpy(),
            result.images.numpy(),
            result.rows.numpy(),
            result.cols.numpy(),
            field,
            lambda i: load_pixels(folder.root / folder.images[i].path, SPEC.size),
            result.dead.numpy(),
        )
    )
    labels = {folder.images[i].label for i in result.images[0].tolist()}
    assert labels == {"red"}
    centre = features[0].mean[field.size[0] // 2 - 1 : field.size[0] // 2 + 1]
    red, green, blue = centre.reshape(-1, 3).mean(0)
    assert red > 0.8 and green < 0.2 and blue < 0.2
    assert features[0].mean.shape == (*field.size, 3)
    assert len(features[0].tiles) == 8


def test_display_helpers():
    stretched = contrast_stretched(np.array([[[0.2, 0.3, 0.6]]], dtype=np.float64))
    assert stretched.tolist() == [[[0, 64, 255]]]
    sheet = sprite([np.zeros((2, 3, 3))] * 3, columns=2, gap=1)
    assert sheet.shape == (5, 7, 3)
    # An NF kept over part of its window is shown as the whole window: the grey around it
    # takes part in the stretch (here it is the darkest value) and is drawn.
    part = np.linspace(0.7, 0.9, 4 * 5 * 3, dtype=np.float32).reshape(4, 5, 3)
    reach, window = (3, 7, 1, 6), (9, 8)
    shown = display_image(part, reach, window)
    assert shown.shape == (9, 8, 3) and shown[0, 0].tolist() == [0, 0, 0]
    assert np.array_equal(shown, display_image(full_window(part, reach, window)))
    reduced = display_image(part, reach, window, limit=4)
    assert reduced.shape == (3, 3, 3)
    assert np.array_equal(reduced, display_image(full_window(part, reach, window), limit=4))
    rng = np.random.default_rng(1)  # reaches anywhere, factors that leave partial blocks
    for _ in range(40):
        height, width = rng.integers(5, 120, 2)
        r0, c0 = rng.integers(0, height), rng.integers(0, width)
        reach = (r0, rng.integers(r0 + 1, height + 1), c0, rng.integers(c0 + 1, width + 1))
        part = rng.random((reach[1] - r0, reach[3] - c0, 3)).astype(np.float32) * 0.4 + 0.3
        limit = int(rng.integers(3, 40))
        whole = full_window(part, reach, (height, width))
        shown = display_image(part, reach, (height, width), limit)
        assert np.array_equal(shown, display_image(whole, limit=limit))


def test_nf_equals_the_definition_on_jpeg_photographs(tmp_path):
    """NF = Σ_j ŵ_j · patch_j with grey outside the image (docs/algorithms.md §3), computed the
    direct way from full patches, against the accumulated one, on JPEGs whose windows overrun the
    image."""
    from PIL import Image

    from tests.support.models import random_net

    rng = np.random.default_rng(4)
    for i in range(12):
        pixels = (rng.random((38, 50, 3)) * 80 + np.linspace(0, 170, 50)[None, :, None]).astype(
            np.uint8
        )
        Image.fromarray(pixels).save(tmp_path / f"{i:02d}.jpg", quality=90)
    folder = scan_image_folder(tmp_path)
    model = random_net()
    result = sweep(model, folder, ["4"], SPEC, k=12, workers=0).layers["4"]
    field = receptive_fields(model, ["4"], SPEC.height)["4"]
    load = lambda i: load_rgb(folder.root / folder.images[i].path, SPEC.size)  # noqa: E731
    pixels = lambda i: load_pixels(folder.root / folder.images[i].path, SPEC.size)  # noqa: E731
    values, images = result.values.numpy(), result.images.numpy()
    rows, cols = result.rows.numpy(), result.cols.numpy()
    arrays = (values, images, rows, cols, field, pixels, result.dead.numpy())
    features = dict(neuron_features(*arrays))
    assert features
    # One channel per chunk, as when every image is held decoded and writes overlap: the
    # same numbers, bit for bit, and the same sprite tiles.
    one_at_a_time = dict(neuron_features(*arrays, memory_budget=1, resident_images=0))
    assert one_at_a_time.keys() == features.keys()
    for channel, feature in features.items():
        assert np.array_equal(one_at_a_time[channel].mean, feature.mean)
        assert all(map(np.array_equal, one_at_a_time[channel].tiles, feature.tiles))
    for channel, feature in features.items():
        weights = np.clip(values[channel] / values[channel, 0], 0, None).astype(np.float64)
        windows = [field.window(rows[channel, j], cols[channel, j]) for j in range(values.shape[1])]
        cut = [cut_patch(load(int(images[channel, j])), w) for j, w in enumerate(windows)]
        patches = np.stack(cut).astype(np.float64)
        ones = np.ones((SPEC.height, SPEC.width, 3), np.float32)
        inside = np.stack([cut_patch(ones, w)[..., 0] == 1.0 for w in windows]).astype(np.float64)
        mean = np.tensordot(weights / weights.sum(), patches, axes=1)
        coverage = np.tensordot(weights, inside, axes=1)
        covered = np.tensordot(weights, patches * inside[..., None], axes=1)
        coverage_mean = np.where(
            (coverage >= 0.1 * weights.sum())[..., None],
            covered / np.maximum(coverage, 1e-12)[..., None],
            0.5,
        )
        assert np.abs(feature.mean - mean).max() < 1e-6
        # Accumulated over its box only: the union of the weighted patches' parts inside the
        # image; exactly grey outside it, and drawn as the whole NF is.
        touched = np.flatnonzero(weights)
        rows_in, cols_in = np.nonzero(inside[touched].any(0))
        assert feature.box == (rows_in.min(), rows_in.max() + 1, cols_in.min(), cols_in.max() + 1)
        r0, r1, c0, c1 = feature.box
        assert np.array_equal(feature.part, feature.mean[r0:r1, c0:c1])
        outside = np.ones(field.size, bool)
        outside[r0:r1, c0:c1] = False
        assert np.all(feature.mean[outside] == GREY)
        assert np.array_equal(
            display_image(feature.part, feature.drawn, feature.window),
            display_image(feature.mean),
        )
        step = tile_step(field)
        assert all(  # sprite tiles: the uint8 patch every ``step`` pixels, grey outside
            np.array_equal(tile, to_uint8(patch[::step, ::step]))
            for tile, patch in zip(feature.tiles, cut, strict=True)
        )
        assert np.abs(feature.coverage_mean - coverage_mean).max() < 1e-6
        assert not inside.all()  # windows do overrun the image
    assert any(f.part.shape[:2] != field.size for f in features.values())  # boxes do shrink


def test_a_window_many_times_the_image_is_kept_over_its_reach_losslessly(tmp_path):
    """Five stride-2 convolutions: 63 px windows on 20 px photographs. The NF kept over the
    reach is the whole-window NF's part there, bit for bit; the rest of the window is exactly
    grey; and the display PNG is the whole window's."""
    import torch
    from PIL import Image
    from torch import nn

    torch.manual_seed(0)
    convs = [nn.Conv2d(3 if i == 0 else 4, 4, 3, stride=2, padding=1) for i in range(5)]
    model = nn.Sequential(*[m for conv in convs for m in (conv, nn.ReLU())]).eval()
    spec = InputSpec(size=20, mean=(0, 0, 0), std=(1, 1, 1))
    rng = np.random.default_rng(5)
    for i in range(6):
        Image.fromarray((rng.random((30, 30, 3)) * 255).astype(np.uint8)).save(
            tmp_path / f"{i}.jpg", quality=90
        )
    folder = scan_image_folder(tmp_path)
    result = sweep(model, folder, ["9"], spec, k=4, workers=0).layers["9"]
    field = receptive_fields(model, ["9"], spec.height)["9"]
    assert field.size == (63, 63) and result.values.shape[0] == 4
    reach = field.reach(spec.size, (1, 1))
    r0, r1, c0, c1 = reach
    assert (r1 - r0, c1 - c0) == (20, 20)
    pixels = lambda i: load_pixels(folder.root / folder.images[i].path, spec.size)  # noqa: E731
    arrays = (result.values.numpy(), result.images.numpy(), result.rows.numpy())
    arrays += (result.cols.numpy(), field, pixels, result.dead.numpy())
    whole = dict(neuron_features(*arrays))
    kept = dict(neuron_features(*arrays, reach=reach))
    assert whole and whole.keys() == kept.keys()
    for channel, feature in kept.items():
        expected = whole[channel].mean
        assert feature.mean.shape == (20, 20, 3) and expected.shape == (63, 63, 3)
        assert np.array_equal(feature.mean, expected[r0:r1, c0:c1])
        assert np.array_equal(full_window(feature.mean, reach, field.size), expected)
        outside = np.ones((63, 63), bool)
        outside[r0:r1, c0:c1] = False
        assert np.all(expected[outside] == GREY)
        assert np.array_equal(
            display_image(feature.mean, reach, field.size), display_image(expected)
        )
        assert np.array_equal(
            display_image(feature.mean, reach, field.size, limit=16),
            display_image(expected, limit=16),
        )
        assert all(map(np.array_equal, feature.tiles, whole[channel].tiles))
