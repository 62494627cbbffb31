"""Image ↔ model-input coordinates (analysis.resize), both policies, both ways, square and
non-square images and inputs; and the loader puts a pixel where the map says."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from analysis.data import load_pixels
from analysis.resize import InputMap, ResizePolicy

WHOLE, CROP = ResizePolicy.WHOLE, ResizePolicy.CENTER_CROP


def test_whole_squeezes_each_axis_on_its_own():
    placed = InputMap.of((400, 300), (224, 112), WHOLE)  # a 400 × 300 photo, a 224 × 112 input
    assert placed.resized == (112, 224)
    assert placed.crop == (0, 0, 112, 224)
    assert placed.to_input(150, 200) == (112.0, 56.0)
    assert placed.to_input(300, 400) == (224.0, 112.0)
    assert placed.to_original(224, 112) == (300.0, 400.0)


def test_center_crop_keeps_the_aspect_and_the_centre():
    placed = InputMap.of((400, 300), 224, CROP)  # landscape onto a square: the sides are cut
    assert placed.scale == pytest.approx(224 / 300)
    assert placed.resized == (299, 224)
    assert placed.crop == (37, 0, 261, 224)
    top, left = placed.to_input(0, 37 / placed.scale)
    assert (top, left) == pytest.approx((0.0, 0.0))
    # The image's centre lands at the input's centre, give or take the half-pixel of the crop.
    assert placed.to_input(150, 200) == pytest.approx((112.0, 112.33), abs=0.01)


def test_center_crop_onto_a_non_square_input():
    placed = InputMap.of((300, 400), (100, 200), CROP)  # portrait onto a wide input
    assert placed.scale == pytest.approx(200 / 300)
    assert placed.resized == (200, 267)
    assert placed.crop == (0, 83, 200, 183)
    assert placed.to_original(0, 0) == pytest.approx((83 * 1.5, 0.0))
    assert placed.window_to_original((0, 100, 0, 200)) == [124, 274, 0, 300]


@pytest.mark.parametrize("policy", [WHOLE, CROP])
@pytest.mark.parametrize(
    ("image_size", "input_size"),
    [((500, 375), 224), ((375, 500), (96, 160)), ((64, 64), (120, 80)), ((33, 90), 7)],
)
def test_the_two_directions_are_inverses(policy, image_size, input_size):
    placed = InputMap.of(image_size, input_size, policy)
    rng = np.random.default_rng(0)
    for y, x in rng.uniform(0, 1, (20, 2)) * (placed.height, placed.width):
        assert placed.to_original(*placed.to_input(y, x)) == pytest.approx((y, x))
    for y, x in rng.uniform(0, 1, (20, 2)) * (placed.input_height, placed.input_width):
        assert placed.to_input(*placed.to_original(y, x)) == pytest.approx((y, x))


@pytest.mark.parametrize("policy", [WHOLE, CROP])
@pytest.mark.parametrize("input_size", [(48, 48), (40, 72)])
def test_the_loader_puts_a_pixel_where_the_map_says(tmp_path, policy, input_size):
    """A white 4 × 4 block on black in a 200 × 120 image: its brightest input pixel is where
    ``to_input`` maps the block's centre, within a pixel."""
    pixels = np.zeros((120, 200, 3), np.uint8)
    pixels[70:74, 120:124] = 255
    path = tmp_path / "dot.png"
    Image.fromarray(pixels).save(path)
    loaded = load_pixels(path, input_size, policy).astype(float).sum(axis=2)
    assert loaded.shape == input_size
    row, col = np.unravel_index(np.argmax(loaded), loaded.shape)
    expected = InputMap.of((200, 120), input_size, policy).to_input(72, 122)
    assert abs(row + 0.5 - expected[0]) <= 1 and abs(col + 0.5 - expected[1]) <= 1
