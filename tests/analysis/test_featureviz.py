"""Feature visualisation with known answers: hand-built filters must get the images they want."""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch import nn

from analysis.featureviz import genetic, objectives, param, render, transform, units
from analysis.featureviz.dream import dream
from analysis.models import InputSpec
from tests.support.models import colour_kernel, red_detector, single_filter, vertical_edge_kernel

RAW = InputSpec(size=32, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


def _render_channel(model: nn.Module, layer: str, unit: int, size: int = 32, steps: int = 96):
    spec = InputSpec(size=size, mean=RAW.mean, std=RAW.std)
    images = param.fourier_image(1, size, generator=torch.Generator().manual_seed(0))
    return render.render(model, objectives.channel(layer, unit), images, spec, steps=steps)


def test_red_detector_visualisation_is_red():
    result = _render_channel(red_detector().eval(), "1", 0)
    pixels = result.images[0] * 255
    assert (pixels[0] - pixels[1]).mean() > 40
    assert (pixels[0] - pixels[2]).mean() > 40


def test_vertical_edge_detector_visualisation_has_horizontal_frequencies():
    result = _render_channel(single_filter(vertical_edge_kernel(7)), "1", 0, size=48)
    luminance = result.images[0].mean(0)
    power = torch.fft.fft2(luminance - luminance.mean()).abs() ** 2
    fy = torch.fft.fftfreq(48).abs()[:, None].expand(48, 48)
    fx = torch.fft.fftfreq(48).abs()[None, :].expand(48, 48)
    # Vertical stripes vary along x: their energy sits on horizontal frequencies.
    assert power[fx > fy].sum() >= 2 * power[fy > fx].sum()


def test_visualisations_drive_their_units_far_above_random_images():
    model = red_detector().eval()
    found = [
        unit
        for batch in units.render_units(
            model, units.Target("1"), [0, 1], RAW, units.RenderSettings(steps=64, size=32)
        )
        for unit in batch
    ]
    red, luminance = found
    assert red.activations[0] > 100 * max(red.random_activation, 1e-3)
    # Random Fourier images are mid-grey, so a luminance unit starts at half its range already.
    assert luminance.activations[0] > luminance.random_activation + 0.1


def test_dead_relus_are_revived_by_the_redirected_gradient():
    # R − (G + B)/2 − 0.05 is below zero on a grey start: an ordinary ReLU gives no gradient.
    model = single_filter(colour_kernel(1.0, -0.5, -0.5, size=3), bias=-0.05)
    spec = InputSpec(size=16, mean=RAW.mean, std=RAW.std)

    def activation(redirect_steps: int) -> float:
        images = param.fourier_image(1, 16, generator=torch.Generator().manual_seed(0))
        objective = objectives.channel("1", 0)
        result = render.render(
            model, objective, images, spec, steps=48, redirect_steps=redirect_steps
        )
        return float(result.scores[0])

    # Without the redirect the unit never fires; with it the unit comes alive (and then grows
    # slowly: Adam's step-size estimate still remembers the large redirected gradients).
    assert activation(0) == 0.0
    assert activation(16) > 0.0


def test_diverse_images_differ_and_each_still_drives_the_unit():
    model = red_detector().eval()
    settings = units.RenderSettings(steps=48, size=32, diversity=3)
    (batch,) = units.render_units(model, units.Target("4"), [0], RAW, settings)
    (unit,) = batch
    assert unit.images.shape == (3, 3, 32, 32)
    for i in range(3):
        for j in range(i + 1, 3):
            assert (unit.images[i] - unit.images[j]).abs().mean() > 0.05
    assert min(unit.activations) > 10 * max(unit.random_activation, 1e-3)


def test_fourier_spectrum_follows_the_decay():
    for decay in (1.0, 2.0):
        images = param.fourier_image(64, 64, decay=decay, generator=torch.Generator())
        spectrum = torch.view_as_complex(images.coefficients.detach()) * images.scale
        spatial = torch.fft.irfft2(spectrum, s=(64, 64), norm="ortho")
        energy = param.spectrum_energy(spatial)
        bands = torch.arange(2, 30)
        slope = torch.linalg.lstsq(
            torch.stack([bands.float().log(), torch.ones(len(bands))], 1),
            energy[bands].log()[:, None],
        ).solution[0, 0]
        # Amplitude ∝ 1/f^decay, so power ∝ 1/f^(2·decay).
        assert abs(float(slope) + 2 * decay) < 0.3


def test_fourier_from_images_reproduces_the_image():
    image = torch.rand(2, 3, 24, 40, generator=torch.Generator().manual_seed(3)) * 0.9 + 0.05
    assert torch.allclose(param.fourier_from_images(image).images(), image, atol=1e-4)
    assert torch.allclose(param.pixels_from_images(image).images(), image, atol=1e-4)


def test_warp_draws_per_image_and_pads_with_grey_or_mirror():
    warp = transform.RobustnessTransform(pad=12, jitter=8)
    theta = warp.matrices(4, (32, 32), torch.Generator().manual_seed(0))
    assert all(not torch.allclose(theta[0], theta[i]) for i in range(1, 4))
    white = torch.ones(4, 3, 32, 32)
    out = warp(white, (32, 32), torch.Generator().manual_seed(0))
    corners = out[:, :, 0, 0]
    assert torch.allclose(corners, torch.full_like(corners, 0.5), atol=0.2)  # grey, never black
    assert out.min() >= 0.5 - 1e-6
    mirrored = transform.RobustnessTransform(padding=transform.Padding.REFLECT)
    assert torch.allclose(mirrored(white, (20, 20)), torch.ones(4, 3, 20, 20), atol=1e-5)


def test_objectives_compose_with_arithmetic():
    activations = {
        "a": torch.tensor([[[[1.0, 3.0]], [[2.0, 2.0]]], [[[5.0, 5.0]], [[0.0, 4.0]]]]),
        objectives.IMAGE: torch.zeros(2, 3, 2, 2),
    }
    composed = objectives.channel("a", 0) - 2 * objectives.channel("a", 1, image=1) + 1
    assert composed(activations).tolist() == [2.0 + 1, 5.0 - 4 + 1]
    assert (objectives.channel("a", 1) / 2)(activations).tolist() == [1.0, 1.0]
    assert objectives.channels("a", [1, 0])(activations).tolist() == [2.0, 5.0]
    assert objectives.neuron("a", 0, 0, 1)(activations).tolist() == [3.0, 5.0]
    assert objectives.l1()(activations).tolist() == [0.5, 0.5]
    assert composed.layers == frozenset({"a"})
    with pytest.raises(TypeError):
        objectives.channel("a", 0) * objectives.channel("a", 1)


class _TwoHeads(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)
        with torch.no_grad():
            self.conv.weight[0] = colour_kernel(1.0, 0.0, -1.0)
            self.conv.weight[1] = colour_kernel(-1.0, 0.0, 1.0)
            self.conv.bias.zero_()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.conv(x).mean((2, 3))
        return torch.zeros_like(logits), logits


def test_class_visualisation_reads_the_chosen_output_of_a_tuple():
    model = _TwoHeads().eval()
    settings = units.RenderSettings(steps=96, size=16)
    target = units.Target(layer=None, output=1)
    (batch,) = units.render_units(model, target, [0, 1], RAW, settings)
    red, blue = (unit.images[0] * 255 for unit in batch)
    assert (red[0] - red[2]).mean() > 40 and (blue[2] - blue[0]).mean() > 40
    assert target.name == "@output[1]"


def test_model_is_left_exactly_as_it_was_even_after_an_error():
    model = red_detector().train()
    model[3].weight.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [p.requires_grad for p in model.parameters()]

    def broken(_activations: objectives.Activations) -> torch.Tensor:
        raise RuntimeError("objective failed")

    failing = objectives.Objective(broken, frozenset({"1"}), "broken")
    for objective in (objectives.channel("4", 0), failing):
        images = param.fourier_image(1, 32)
        with contextlib.suppress(RuntimeError):
            render.render(model, objective, images, RAW, steps=20)
        assert model.training and all(m.training for m in model.modules())
        assert [p.requires_grad for p in model.parameters()] == flags
        assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
        assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
        assert all(p.grad is None for p in model.parameters())


def test_genetic_search_raises_a_non_differentiable_score_well_above_random():
    def redness(images: torch.Tensor) -> torch.Tensor:
        # The share of clearly red pixels: a step function, with no useful gradient.
        red = (images[:, 0] > images[:, 1] + 0.2) & (images[:, 0] > images[:, 2] + 0.2)
        return red.float().flatten(1).mean(1)

    template = param.fourier_image(1, 16)
    random_images = param.fourier_image(20, 16, sd=0.5, generator=torch.Generator()).images()
    found = genetic.evolve(redness, template, units=2, generations=40, seed=0)
    assert found.images.shape == (2, 3, 16, 16)
    assert float(found.scores.min()) > float(redness(random_images.detach()).mean()) + 0.3
    assert torch.all(found.history[:, -1] >= found.history[:, 0])


def test_deepdream_amplifies_the_layer_and_keeps_the_image_size():
    model = red_detector().eval()
    image = torch.full((3, 30, 44), 0.5)
    image[0, 10:20, 10:30] = 0.7
    dreamt = dream(model, image, "1", RAW, octaves=3, steps=48)
    assert dreamt.shape == image.shape

    def energy(picture: torch.Tensor) -> float:
        return float(
            render.evaluate(model, objectives.deepdream("1"), picture[None], RAW, False, (30, 44))[
                0
            ]
        )

    assert energy(dreamt) > 2 * energy(image)


def test_a_greyscale_model_is_shown_grey_images():
    from tests.support.models import darkness_detector

    grey = InputSpec(size=16, mean=(0.0,), std=(1.0,), channels=1)
    (found,) = next(
        units.render_units(
            darkness_detector(), units.Target("1"), [0], grey, units.RenderSettings(steps=48)
        )
    )
    image = found.images[0]
    assert torch.equal(image[0], image[1]) and torch.equal(image[0], image[2])
    # The darkness unit's image is darker than the mid-grey it started from.
    assert image.mean() < 0.45 and found.activations[0] > found.random_activation
