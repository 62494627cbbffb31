"""How an image being optimised is represented (docs/algorithms.md §7, after Lucid/Lucent's
``param``).

A parameterisation is a set of leaf tensors plus a function that turns them into a batch of RGB
images in [0, 1]. The Fourier parameterisation scales each frequency by 1/f^decay, so plain
gradient steps change low frequencies as readily as high ones (a pixel basis lets the high
frequencies, which networks respond to strongly, win and gives noisy images). Colour
decorrelation makes the three channels roughly independent, as natural images' colours are not.
Both come from Olah et al., "Feature Visualization", Distill 2017.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

# The square root of ImageNet's colour correlation (Lucid), normalised by its largest column norm.
_COLOR_CORRELATION_SQRT = torch.tensor(
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]]
)
COLOR_CORRELATION = _COLOR_CORRELATION_SQRT / _COLOR_CORRELATION_SQRT.norm(dim=0).max()
# Keeps the logit of an initial image finite.
_EPSILON = 1e-4


def decorrelate_colors(images: torch.Tensor) -> torch.Tensor:
    """Map decorrelated channels (N, 3, H, W) to correlated RGB, before the sigmoid."""
    matrix = COLOR_CORRELATION.to(images)
    return torch.einsum("ij,njhw->nihw", matrix, images)


def correlate_colors(images: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`decorrelate_colors` (used to start from a real image)."""
    inverse = torch.linalg.inv(COLOR_CORRELATION.double()).to(images)
    return torch.einsum("ij,njhw->nihw", inverse, images)


def frequency_scale(height: int, width: int, decay: float = 1.0) -> torch.Tensor:
    """Per-frequency scale 1 / max(f, 1/size)^decay of an (height, width // 2 + 1) spectrum.

    ``f`` is the frequency in cycles per pixel; the floor 1/size keeps the DC term finite.
    """
    fy = torch.fft.fftfreq(height)[:, None]
    fx = torch.fft.rfftfreq(width)[None, :]
    frequency = torch.sqrt(fx * fx + fy * fy)
    return 1.0 / frequency.clamp(min=1.0 / max(height, width)) ** decay


@dataclass
class FourierImage:
    """A batch of images as scaled, colour-decorrelated Fourier coefficients.

    ``coefficients`` is (N, 3, H, W // 2 + 1, 2), the real and imaginary parts of an
    orthonormal real spectrum; ``images()`` is sigmoid(decorrelate(irfft(scale · c) / 4)).
    """

    coefficients: torch.Tensor
    scale: torch.Tensor
    height: int
    width: int

    def parameters(self) -> list[torch.Tensor]:
        return [self.coefficients]

    def images(self) -> torch.Tensor:
        return self.images_of(self.coefficients)

    def images_of(self, coefficients: torch.Tensor) -> torch.Tensor:
        """Images of any batch of coefficients (the gradient-free search scores populations)."""
        spectrum = torch.view_as_complex(coefficients.contiguous()) * self.scale
        spatial = torch.fft.irfft2(spectrum, s=(self.height, self.width), norm="ortho") / 4
        return torch.sigmoid(decorrelate_colors(spatial))


@dataclass
class PixelImage:
    """A batch of images as per-pixel, colour-decorrelated logits: sigmoid(decorrelate(p))."""

    logits: torch.Tensor

    def parameters(self) -> list[torch.Tensor]:
        return [self.logits]

    def images(self) -> torch.Tensor:
        return torch.sigmoid(decorrelate_colors(self.logits))


ImageParam = FourierImage | PixelImage


def fourier_image(
    batch: int,
    height: int,
    width: int | None = None,
    decay: float = 1.0,
    sd: float = 0.01,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
) -> FourierImage:
    """Random Fourier images: coefficients N(0, sd²), as in docs/algorithms.md §7 (sd 0.01,
    decay 1)."""
    width = width or height
    shape = (batch, 3, height, width // 2 + 1, 2)
    coefficients = torch.randn(shape, generator=generator) * sd
    scale = frequency_scale(height, width, decay)
    return FourierImage(
        coefficients.to(device).requires_grad_(True), scale.to(device), height, width
    )


def _logits_of(images: torch.Tensor) -> torch.Tensor:
    """The pre-sigmoid, decorrelated values whose image is ``images`` (N, 3, H, W) in [0, 1]."""
    clipped = images.float().clamp(_EPSILON, 1 - _EPSILON)
    return correlate_colors(torch.log(clipped) - torch.log1p(-clipped))


def fourier_from_images(images: torch.Tensor, decay: float = 1.0) -> FourierImage:
    """Fourier coefficients that render exactly ``images`` (to float precision), to start from
    a real image (DeepDream, accentuation) while keeping the Fourier basis's smooth steps."""
    height, width = images.shape[-2:]
    scale = frequency_scale(height, width, decay).to(images.device)
    spectrum = torch.fft.rfft2(_logits_of(images) * 4, norm="ortho") / scale
    coefficients = torch.view_as_real(spectrum).contiguous()
    return FourierImage(coefficients.requires_grad_(True), scale, height, width)


def pixels_from_images(images: torch.Tensor) -> PixelImage:
    """A pixel parameterisation that renders exactly ``images``."""
    return PixelImage(_logits_of(images).contiguous().requires_grad_(True))


def spectrum_energy(images: torch.Tensor) -> torch.Tensor:
    """Mean power of each radial frequency band of the luminance of ``images`` (for tests and
    diagnostics): entry k holds frequencies in [k, k + 1) cycles per image."""
    luminance = images.mean(1)
    power = torch.fft.rfft2(luminance - luminance.mean((-2, -1), keepdim=True)).abs() ** 2
    height, width = luminance.shape[-2:]
    fy = torch.fft.fftfreq(height)[:, None] * height
    fx = torch.fft.rfftfreq(width)[None, :] * width
    band = torch.sqrt(fx * fx + fy * fy).floor().long().to(images.device)
    bands = math.ceil(min(height, width) / 2)
    energy = torch.zeros(bands, dtype=power.dtype, device=images.device)
    counts = torch.zeros(bands, dtype=power.dtype, device=images.device)
    inside = band < bands
    energy.index_add_(0, band[inside], power.mean(0)[inside])
    counts.index_add_(0, band[inside], torch.ones_like(power[0][inside]))
    return energy / counts.clamp(min=1)
