"""Image folders and photographs with known content, written for a test."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = {"red": (1.0, 0.0, 0.0), "green": (0.0, 0.8, 0.0), "blue": (0.0, 0.0, 1.0)}


def write_square_folder(root: Path, per_class: int = 8, size: int = 32, seed: int = 0) -> Path:
    """One subfolder per colour; each image a coloured square at a random place on grey."""
    rng = np.random.default_rng(seed)
    for name, colour in COLOURS.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            image = np.full((size, size, 3), 0.5) + rng.normal(0, 0.02, (size, size, 3))
            side = int(rng.integers(6, 12))
            top, left = rng.integers(0, size - side, size=2)
            image[top : top + side, left : left + side] = colour
            pixels = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i:03d}.png")
    return root


def write_photo(path: Path, width: int, height: int, fmt: str = "JPEG", seed: int = 0) -> Path:
    """A smooth colour field with a sharp-edged disc (placed by ``seed``): a shifted or
    mis-scaled decode shows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    centre = np.random.default_rng(seed).uniform(0.3, 0.7, 2)
    rows, cols = np.mgrid[0:height, 0:width]
    image = np.stack([cols / width, rows / height, 0.5 + 0.0 * rows], axis=-1)
    disc = np.hypot(rows - height * centre[0], cols - width * centre[1]) < min(width, height) / 4
    image[disc] = (1.0, 0.1, 0.2)
    Image.fromarray(np.round(image * 255).astype(np.uint8)).save(path, fmt, quality=92)
    return path


def png_bytes(image: Image.Image, fmt: str = "PNG") -> bytes:
    """The file an upload would send: ``image`` encoded as ``fmt``."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def red_left_image(mode: str = "RGB") -> Image.Image:
    """A 60 × 40 grey image with a red square at rows 10–30, columns 5–25."""
    pixels = np.full((40, 60, 3), 128, np.uint8)
    pixels[10:30, 5:25] = (230, 20, 20)
    return Image.fromarray(pixels).convert(mode)
