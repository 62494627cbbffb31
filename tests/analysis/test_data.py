"""Decoding files into the model's pixels (analysis/data.py)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from analysis.data import jpeg_draft_scale, load_pixels
from analysis.resize import ResizePolicy
from tests.support.images import write_photo

MODES = ["RGB", "L", "RGBA", "P", "CMYK", "LA", "I;16"]


def _reference(path, size, policy, grey) -> np.ndarray:
    """docs/algorithms.md §1's pixels through Pillow's plain conversions, always copying (a
    16-bit image first scaled to 8 bits, which Pillow's conversion would clip instead)."""
    with Image.open(path) as image:
        if image.mode == "I;16":
            image = Image.fromarray(np.round(np.asarray(image) / 257).astype(np.uint8))
        image = image.convert("L").convert("RGB") if grey else image.convert("RGB")
        height, width = size
        if policy.crops:
            scale = max(height / image.height, width / image.width)
            scaled = (round(image.width * scale), round(image.height * scale))
            image = image.resize((max(scaled[0], width), max(scaled[1], height)), Image.BILINEAR)
            left, top = (image.width - width) // 2, (image.height - height) // 2
            image = image.crop((left, top, left + width, top + height))
        else:
            image = image.resize((width, height), Image.BILINEAR)
        return np.array(image)


@pytest.mark.parametrize("policy", [ResizePolicy.WHOLE, ResizePolicy.CENTER_CROP])
@pytest.mark.parametrize("grey", [False, True])
def test_every_image_mode_decodes_to_pillows_own_conversion(tmp_path, policy, grey):
    rng = np.random.default_rng(3)
    colour = Image.fromarray(rng.integers(0, 256, (30, 45, 3), dtype=np.uint8))
    for mode in MODES:
        path = tmp_path / f"{mode.replace(';', '_')}.{'jpg' if mode == 'CMYK' else 'png'}"
        if mode == "I;16":
            wide = rng.integers(0, 65536, (30, 45), dtype=np.uint16)
            Image.fromarray(wide).save(path)  # uint16 arrays open as I;16
        else:
            colour.convert(mode).save(path)
        with Image.open(path) as opened:
            assert opened.mode == mode
        pixels = load_pixels(path, (16, 20), policy, grey)
        assert pixels.shape == (16, 20, 3) and pixels.dtype == np.uint8, mode
        assert np.array_equal(pixels, _reference(path, (16, 20), policy, grey)), mode


@pytest.mark.parametrize("suffix", ["png", "tif"])
def test_a_16_bit_greyscale_image_is_scaled_to_8_bits_not_clipped(tmp_path, suffix):
    """A 16-bit ramp (PNG, and a TIFF of 32-bit integers) reads as the same ramp in 8 bits:
    Pillow's plain conversion made every value above 255 white."""
    ramp = np.tile(np.linspace(0, 65535, 64).round().astype(np.uint16), (8, 1))
    path = tmp_path / f"ramp.{suffix}"
    Image.fromarray(ramp if suffix == "png" else ramp.astype(np.int32)).save(path)
    pixels = load_pixels(path, (8, 64)).astype(int)
    assert np.array_equal(pixels[..., 0], pixels[..., 2])
    assert abs(pixels[0, 0, 0] - 0) <= 1 and abs(pixels[0, -1, 0] - 255) <= 1
    assert np.abs(pixels[0, :, 0] - np.linspace(0, 255, 64)).max() <= 4  # the ramp, not white
    assert (pixels[0, :, 0] < 128).sum() >= 28


@pytest.mark.parametrize("policy", [ResizePolicy.WHOLE, ResizePolicy.CENTER_CROP])
def test_jpeg_draft_decodes_a_big_photo_at_reduced_scale_to_nearly_the_same_pixels(
    tmp_path, policy
):
    path = tmp_path / "photo.jpg"
    write_photo(path, 1003, 757)  # 1/8 scale (126×95) still covers 48×64, and 1003 is no multiple
    full = load_pixels(path, (48, 64), policy).astype(int)
    draft = load_pixels(path, (48, 64), policy, draft=True).astype(int)
    assert draft.shape == full.shape
    difference = np.abs(draft - full)
    assert difference.mean() < 0.5 and difference.max() < 12  # without the extent: 0.67, 26
    assert difference.any()  # a reduced scale really was decoded
    with Image.open(path) as image:
        assert image.draft(image.mode, (64, 48))[1] == (0, 0, 1003 / 8, 757 / 8)


@pytest.mark.parametrize("grey", [False, True])
def test_jpeg_draft_reads_progressive_cmyk_and_greyscale_jpegs(tmp_path, grey):
    with Image.open(write_photo(tmp_path / "photo.png", 1003, 757, "PNG")) as opened:
        photo = opened.convert("RGB")
    photo.save(tmp_path / "progressive.jpg", quality=90, progressive=True)
    photo.convert("CMYK").save(tmp_path / "cmyk.jpg", quality=90)
    photo.convert("L").save(tmp_path / "grey.jpg", quality=90)
    for name in ("progressive.jpg", "cmyk.jpg", "grey.jpg"):
        full = load_pixels(tmp_path / name, 224, grey=grey).astype(int)
        draft = load_pixels(tmp_path / name, 224, grey=grey, draft=True).astype(int)
        difference = np.abs(draft - full)
        assert difference.mean() < 0.5 and difference.max() < 12, name
        assert difference.any(), name  # decoded at half scale: 502×379 still covers 224


def test_jpeg_draft_leaves_other_formats_and_small_jpegs_as_a_full_decode(tmp_path):
    write_photo(tmp_path / "big.png", 1003, 757, "PNG")
    write_photo(tmp_path / "small.jpg", 120, 90)  # under twice the input size: no scale applies
    for name in ("big.png", "small.jpg"):
        path = tmp_path / name
        for grey in (False, True):
            full = load_pixels(path, (48, 64), grey=grey)
            assert np.array_equal(load_pixels(path, (48, 64), grey=grey, draft=True), full)


def test_the_draft_scale_is_read_from_the_header_as_libjpeg_would_apply_it(tmp_path):
    big = write_photo(tmp_path / "big.jpg", 1003, 757)
    assert jpeg_draft_scale(big, (48, 64)) == 8  # 1003 // 64 = 15, 757 // 48 = 15
    assert jpeg_draft_scale(big, (224, 224)) == 2  # 757 // 224 = 3
    assert jpeg_draft_scale(big, (48, 64), ResizePolicy.CENTER_CROP) == 8
    assert jpeg_draft_scale(big, 300, ResizePolicy.CENTER_CROP) == 2  # resized to 397×300 first
    assert jpeg_draft_scale(write_photo(tmp_path / "small.jpg", 120, 90), (48, 64)) == 1
    assert jpeg_draft_scale(tmp_path / "small.jpg", 224) == 1  # smaller than the input
    assert jpeg_draft_scale(write_photo(tmp_path / "big.png", 1003, 757, "PNG"), (48, 64)) == 1
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    assert jpeg_draft_scale(tmp_path / "broken.jpg", (48, 64)) == 1
    with Image.open(big) as image:  # the scale the decoder really takes
        image.draft(image.mode, (64, 48))
        assert image.size == (-(-1003 // 8), -(-757 // 8))
