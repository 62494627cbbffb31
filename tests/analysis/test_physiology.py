"""In-silico physiology with known answers: opponent and non-opponent units
(docs/algorithms.md §5)."""

from __future__ import annotations

import numpy as np
import torch

from analysis.layers import list_layers
from analysis.models import InputSpec
from analysis.physiology import (
    GRATING_FREQUENCIES,
    electrodes,
    fractions,
    grating_stimuli,
    hue_stimuli,
    layer_physiology,
    spatial_class,
    spectral_class,
    stimulus_count,
)
from tests.support import models as tiny_models

SPEC = InputSpec(size=16, mean=(0, 0, 0), std=(1, 1, 1))


def physiology_of(model):
    layers = {info.name: info for info in list_layers(model, SPEC)}
    return layer_physiology(model, {"1": electrodes(layers["1"], layers)}, SPEC)["1"][0]


def test_stimulus_sets_have_the_specified_sizes():
    assert hue_stimuli((8, 8)).shape == (360, 3, 8, 8)
    gratings = grating_stimuli((8, 8))
    assert gratings.shape == (960, 3, 8, 8)
    assert float(gratings.min()) >= 0.0 and float(gratings.max()) <= 1.0


def test_the_stimuli_are_counted_as_they_go_through():
    model = tiny_models.single_filter(tiny_models.colour_kernel(1, 1, 1), bias=0.1)
    layers = {info.name: info for info in list_layers(model, SPEC)}
    done: list[int] = []
    layer_physiology(model, {"1": electrodes(layers["1"], layers)}, SPEC, advance=done.append)
    assert done == [128 * i for i in range(1, 11)] + [1321] and stimulus_count(SPEC) == 1321
    grey = InputSpec(size=16, mean=(0,), std=(1,), channels=1)
    assert stimulus_count(grey) == 961
    # The batch size (the run's on a CPU) changes the pace, not the responses.
    small = layer_physiology(model, {"1": electrodes(layers["1"], layers)}, SPEC, batch_size=7)
    large = layer_physiology(model, {"1": electrodes(layers["1"], layers)}, SPEC)
    assert small == large


def test_red_minus_green_with_a_positive_bias_is_spectrally_opponent():
    unit = physiology_of(tiny_models.single_filter(tiny_models.colour_kernel(1, -1, 0), bias=0.2))
    assert unit.spectral_class == "opponent"
    assert unit.hue_baseline == np.float32(0.2)
    assert unit.hue_max in range(0, 30) or unit.hue_max > 330  # reds
    assert 90 <= unit.hue_min <= 150  # greens
    # Achromatic gratings have R = G: the unit never moves from its baseline.
    assert unit.spatial_class == "unresponsive"
    assert not unit.double_opponent


def test_a_luminance_unit_is_not_opponent():
    unit = physiology_of(tiny_models.single_filter(tiny_models.colour_kernel(1, 1, 1), bias=0.1))
    assert unit.spectral_class == "non-opponent"
    assert unit.spatial_class == "non-opponent"


def test_a_colour_opponent_edge_is_double_opponent():
    # Strong red-minus-green on the left, weaker green-minus-red on the right, and a luminance
    # edge across the two: opponent to uniform hues, and to achromatic gratings.
    weights = np.zeros((3, 3, 3), dtype=np.float32)
    weights[0, :, 0], weights[1, :, 0] = 1.0, -1.0
    weights[0, :, 2], weights[1, :, 2] = -0.5, 0.5
    weights[:, :, 0] += 0.5
    weights[:, :, 2] -= 0.5

    unit = physiology_of(tiny_models.single_filter(torch.from_numpy(weights) / 9, bias=0.3))
    assert unit.spectral_class == "opponent"
    assert unit.spatial_class == "opponent"
    assert unit.double_opponent
    assert unit.preferred_frequency in GRATING_FREQUENCIES
    assert len(unit.orientation_tuning) == 10
    assert fractions([unit])["double_opponent"] == 1.0


def test_classification_rules():
    assert spectral_class(np.array([0.5, 0.5]), 0.5) == "unresponsive"
    assert spectral_class(np.array([0.2, 0.9]), 0.5) == "opponent"
    assert spectral_class(np.array([-0.2, 0.9]), -0.1) == "non-opponent"  # no spontaneous rate
    assert spatial_class(np.array([0.0, 0.3]), 0.0) == "non-opponent"
    assert spatial_class(np.array([0.0, 0.3]), 0.1) == "opponent"


def test_pre_activation_is_read_before_an_in_place_relu():
    model = tiny_models.single_filter(tiny_models.colour_kernel(1, -1, 0), bias=0.2)
    model[1] = torch.nn.ReLU(inplace=True)
    unit = physiology_of(model)
    assert unit.spectral_class == "opponent"
    assert min(unit.hue_curve) < -0.5  # green drives it below zero before rectification
