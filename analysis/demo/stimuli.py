"""A deterministic stimulus dataset for the demo: shapes and textures on 1/f-noise backgrounds.

docs/algorithms.md §8: ten classes of shapes (disc, square, triangle, star, cross, ring, bars) and
textures (grating, checkerboard, dots) in many colours, sizes, positions and orientations. Shapes
are drawn at twice the resolution and averaged down, for smooth (antialiased) edges. The same seed
always gives the same pixels.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = (
    "disc",
    "square",
    "triangle",
    "star",
    "cross",
    "ring",
    "bars",
    "grating",
    "checkerboard",
    "dots",
)
SIZE = 64
_SUPER = 2

Canvas = tuple[np.ndarray, np.ndarray]  # rotated coordinates (u, v) about the shape's centre


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i])


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    return _hsv_to_rgb(rng.random(), rng.uniform(0.55, 1.0), rng.uniform(0.55, 1.0))


def pink_noise(rng: np.random.Generator, size: int) -> np.ndarray:
    """A (size, size) field with a 1/f amplitude spectrum, zero mean and unit deviation."""
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    amplitude = 1.0 / np.maximum(np.hypot(fy, fx), 1.0 / size)
    spectrum = amplitude * (
        rng.normal(size=amplitude.shape) + 1j * rng.normal(size=amplitude.shape)
    )
    field = np.fft.irfft2(spectrum, s=(size, size))
    return (field - field.mean()) / (field.std() + 1e-8)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    base = _hsv_to_rgb(rng.random(), rng.uniform(0.0, 0.35), rng.uniform(0.25, 0.75))
    noise = np.stack([pink_noise(rng, size) for _ in range(3)], axis=-1)
    return np.clip(base + rng.uniform(0.05, 0.15) * noise, 0.0, 1.0)


def _canvas(rng: np.random.Generator, size: int, radius: float) -> Canvas:
    """Coordinates rotated by a random angle about a random centre that keeps the shape inside."""
    margin = min(radius, size / 2 - 1)
    cy, cx = rng.uniform(margin, size - margin, size=2)
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    dy, dx = yy - cy, xx - cx
    return dx * np.cos(angle) + dy * np.sin(angle), -dx * np.sin(angle) + dy * np.cos(angle)


def _polygon(u: np.ndarray, v: np.ndarray, sides: int, radius: float) -> np.ndarray:
    """Inside a regular convex polygon of circumradius ``radius``."""
    inside = np.ones_like(u, dtype=bool)
    apothem = radius * np.cos(np.pi / sides)
    for k in range(sides):
        theta = 2 * np.pi * k / sides
        inside &= u * np.cos(theta) + v * np.sin(theta) <= apothem
    return inside


def _star(u: np.ndarray, v: np.ndarray, radius: float) -> np.ndarray:
    phi = np.arctan2(v, u)
    rho = np.hypot(u, v)
    tips = 5
    wave = np.abs(((phi * tips / (2 * np.pi)) % 1.0) * 2 - 1)  # 1 at a tip, 0 between tips
    return rho <= radius * (0.42 + 0.58 * wave)


def _shape_mask(name: str, rng: np.random.Generator, size: int) -> np.ndarray:
    radius = rng.uniform(0.18, 0.38) * size
    u, v = _canvas(rng, size, radius)
    rho = np.hypot(u, v)
    masks: dict[str, Callable[[], np.ndarray]] = {
        "disc": lambda: rho <= radius,
        "square": lambda: (np.abs(u) <= radius * 0.75) & (np.abs(v) <= radius * 0.75),
        "triangle": lambda: _polygon(u, v, 3, radius),
        "star": lambda: _star(u, v, radius),
        "cross": lambda: (
            ((np.abs(u) <= radius * 0.28) | (np.abs(v) <= radius * 0.28))
            & (np.abs(u) <= radius)
            & (np.abs(v) <= radius)
        ),
        "ring": lambda: (rho <= radius) & (rho >= radius * rng.uniform(0.5, 0.7)),
        "bars": lambda: (
            (((u / (radius * 0.5)) % 1.0) < 0.5) & (np.abs(u) <= radius) & (np.abs(v) <= radius)
        ),
    }
    return masks[name]()


def _texture(name: str, rng: np.random.Generator, size: int, background: np.ndarray) -> np.ndarray:
    first, second = _random_colour(rng), _random_colour(rng)
    radius = rng.uniform(0.35, 0.6) * size
    u, v = _canvas(rng, size, radius)
    region = (np.hypot(u, v) <= radius)[..., None]
    if name == "grating":
        period = size / rng.uniform(3, 9)
        wave = 0.5 + 0.5 * np.sin(2 * np.pi * u / period + rng.uniform(0, 2 * np.pi))
        pattern = first * wave[..., None] + second * (1 - wave[..., None])
    elif name == "checkerboard":
        check = size / rng.uniform(4, 10)
        parity = (np.floor(u / check) + np.floor(v / check)) % 2
        pattern = np.where(parity[..., None] > 0, first, second)
    else:  # dots
        dots = np.zeros((size, size), dtype=bool)
        yy, xx = np.mgrid[0:size, 0:size] + 0.5
        dot_radius = rng.uniform(0.03, 0.06) * size
        for _ in range(rng.integers(6, 16)):
            cy, cx = rng.uniform(0, size, size=2)
            dots |= np.hypot(yy - cy, xx - cx) <= dot_radius
        region = np.ones_like(region)
        pattern = np.where(dots[..., None], first, background)
    return np.where(region, pattern, background)


def render(name: str, rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    """One stimulus of class ``name`` as a float (size, size, 3) image in [0, 1]."""
    big = size * _SUPER
    background = _background(rng, big)
    if name in {"grating", "checkerboard", "dots"}:
        image = _texture(name, rng, big, background)
    else:
        mask = _shape_mask(name, rng, big)[..., None]
        image = np.where(mask, _random_colour(rng), background)
    return image.reshape(size, _SUPER, size, _SUPER, 3).mean(axis=(1, 3))


def generate(per_class: int, seed: int = 0, size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """``(images uint8 (N, size, size, 3), labels int64 (N,))``, classes interleaved."""
    rng = np.random.default_rng(seed)
    images = np.empty((per_class * len(CLASSES), size, size, 3), dtype=np.uint8)
    labels = np.empty(per_class * len(CLASSES), dtype=np.int64)
    for i in range(per_class):
        for label, name in enumerate(CLASSES):
            n = i * len(CLASSES) + label
            images[n] = np.round(render(name, rng, size) * 255).astype(np.uint8)
            labels[n] = label
    return images, labels


def write_image_folder(images: np.ndarray, labels: np.ndarray, root: Path) -> None:
    """Write one PNG per image under ``root/<class>/``; the caller publishes ``root`` atomically."""
    for name in CLASSES:
        (root / name).mkdir(parents=True, exist_ok=True)
    for n, (image, label) in enumerate(zip(images, labels, strict=True)):
        Image.fromarray(image).save(root / CLASSES[label] / f"{n:05d}.png")
