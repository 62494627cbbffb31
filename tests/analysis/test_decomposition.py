"""Decompositions with known answers: hand-built networks whose parts we know exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from analysis.decomposition.composition import (
    NeuronInputs,
    ablation_relevance,
    activation_composition,
    relevance_tree,
)
from analysis.decomposition.image import decompose, paste_features
from analysis.decomposition.placement import greedy_placements
from analysis.neuron_feature import full_window
from analysis.receptive_field import ReceptiveField
from tests.support.models import colour_kernel, vertical_edge_kernel
from tests.support.probe import receptive_fields

SHALLOW, DEEP, K = "1", "2", 3


def _identity(images: torch.Tensor) -> torch.Tensor:
    return images


def composed_network() -> nn.Sequential:
    """Shallow 1×1 colour detectors (channel 2: red, 5: blue, the others: green-ish, which a
    magenta image never drives), then a 3×3 conv whose channel K is exactly the sum of shallow
    channels 2 and 5 over its window; the other deep channels mix everything at random."""
    torch.manual_seed(0)
    shallow = nn.Conv2d(3, 8, 1)
    deep = nn.Conv2d(8, 4, 3, padding=1)
    with torch.no_grad():
        for channel in range(8):
            shallow.weight[channel] = colour_kernel(-0.5 - 0.1 * channel, 1.0, -0.5)
        shallow.weight[2] = colour_kernel(1.0, -0.5, -0.5)
        shallow.weight[5] = colour_kernel(-0.5, -0.5, 1.0)
        shallow.bias.zero_()
        deep.weight[K] = 0.0
        deep.weight[K, 2] = 1.0
        deep.weight[K, 5] = 1.0
        deep.bias.zero_()
    return nn.Sequential(shallow, nn.ReLU(), deep).eval()


def magenta_top_images(count: int = 6, size: int = 24) -> NeuronInputs:
    images, rows, cols, values = [], [], [], []
    model = composed_network()
    for j in range(count):
        image = torch.full((3, size, size), 0.5)
        top, left = 4 + j % 3 * 3, 3 + j % 2 * 5
        image[:, top : top + 6, left : left + 6] = torch.tensor([0.9 - 0.05 * j, 0.1, 0.9])[
            :, None, None
        ]
        with torch.no_grad():
            deep = model(image[None])[0, K]
        value, index = deep.flatten().max(0)
        images.append(image)
        rows.append(int(index) // size)
        cols.append(int(index) % size)
        values.append(float(value))
    order = np.argsort(values)[::-1]
    return NeuronInputs(
        images=torch.stack([images[i] for i in order]),
        rows=[rows[i] for i in order],
        cols=[cols[i] for i in order],
        values=[values[i] for i in order],
    )


def test_ablation_ranks_the_two_summed_channels_first():
    model, neuron = composed_network(), magenta_top_images()
    relevance = ablation_relevance(model, _identity, neuron, K, DEEP, SHALLOW)
    first_two = set(relevance.argsort(descending=True)[:2].tolist())
    assert first_two == {2, 5}
    others = [float(relevance[i]) for i in range(8) if i not in (2, 5)]
    assert max(others) < 0.1 * min(float(relevance[2]), float(relevance[5]))


def test_activation_mode_places_the_two_summed_channels_inside_the_window():
    model, neuron = composed_network(), magenta_top_images()
    fields = receptive_fields(model, [SHALLOW, DEEP], 24)
    maxima = torch.ones(8)  # each shallow detector's best response to a saturated colour is ~1
    placements, mean = activation_composition(
        model, _identity, neuron, fields[DEEP], SHALLOW, fields[SHALLOW], maxima
    )
    strength = mean.flatten(1).max(1).values
    assert set(strength.argsort(descending=True)[:2].tolist()) == {2, 5}
    others = [float(strength[i]) for i in range(8) if i not in (2, 5)]
    assert max(others) < 0.1 * min(float(strength[2]), float(strength[5]))
    assert {p.channel for p in placements} <= {2, 5} and placements
    size = fields[DEEP].size
    assert all(p.window[0] >= 0 and p.window[1] <= size[0] for p in placements)


def test_an_image_decomposes_into_the_red_detector_left_and_the_edge_detector_right():
    conv = nn.Conv2d(3, 2, 7, padding=3, padding_mode="replicate")  # no edge at the border
    with torch.no_grad():
        conv.weight[0] = colour_kernel(1.0, -0.5, -0.5, size=7)
        conv.weight[1] = vertical_edge_kernel(7) * 3
        conv.bias.zero_()
    model = nn.Sequential(conv, nn.ReLU()).eval()
    size = 48
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    image = torch.full((3, size, size), 0.5)
    disc = (yy - 24) ** 2 + (xx - 12) ** 2 < 8**2
    image[:, disc] = torch.tensor([1.0, 0.25, 0.25])[:, None]  # as bright as the grey: no edge
    grating = 0.5 + 0.45 * torch.sign(torch.sin(xx.float() * 3.14159 / 2))
    image[:, :, 26:] = grating[None, :, 26:]
    with torch.no_grad():
        maxima = model(image[None])[0].flatten(1).max(1).values
    field = receptive_fields(model, ["1"], size)["1"]
    found = decompose(model, image[None], {"1": (field, maxima)}, max_overlap=0.0)["1"]
    left = [p.channel for p in found.placements if (p.window[2] + p.window[3]) / 2 < 20]
    right = [p.channel for p in found.placements if (p.window[2] + p.window[3]) / 2 > 30]
    assert left and right
    assert left.count(0) >= 0.8 * len(left) and right.count(1) >= 0.8 * len(right)
    assert found.placements[0].normalised == max(p.normalised for p in found.placements)
    assert found.top_channels.shape == (size, size, 2)


def test_greedy_selection_never_overlaps_at_zero_tolerance():
    field = ReceptiveField(size=(5, 5), stride=(1, 1), offset=(-2, -2))
    scores = torch.rand(3, 12, 12, generator=torch.Generator().manual_seed(0))
    chosen = greedy_placements(scores, scores, field, max_overlap=0.0)
    for i, first in enumerate(chosen):
        for second in chosen[i + 1 :]:
            rows = min(first.window[1], second.window[1]) - max(first.window[0], second.window[0])
            cols = min(first.window[3], second.window[3]) - max(first.window[2], second.window[2])
            assert rows <= 0 or cols <= 0
    assert [p.normalised for p in chosen] == sorted((p.normalised for p in chosen), reverse=True)
    loose = greedy_placements(scores, scores, field, max_overlap=0.5)
    assert len(loose) > len(chosen)


def test_pasting_puts_the_strongest_on_top_and_clips_at_the_border():
    field = ReceptiveField(size=(4, 4), stride=(2, 2), offset=(-2, -2))
    scores = torch.zeros(2, 3, 3)
    scores[0, 1, 1], scores[1, 1, 1] = 0.5, 0.9
    chosen = greedy_placements(scores, scores, field, max_overlap=1.0)
    canvas = paste_features(
        np.zeros((6, 6, 3), np.float32),
        chosen,
        {0: np.full((4, 4, 3), 0.2, np.float32), 1: np.full((4, 4, 3), 0.7, np.float32)},
    )
    assert canvas[1, 1, 0] == np.float32(0.7)  # channel 1 is stronger, so it is on top


def test_a_faint_nf_is_pasted_stretched_to_full_contrast_as_the_grid_shows_it():
    """A deep NF averages many patches into a near-grey mean (here a ring 0.02 brighter than
    its ground): pasted raw it is invisible; stretched, its ring spans black to white."""
    field = ReceptiveField(size=(8, 8), stride=(8, 8), offset=(0, 0))
    scores = torch.zeros(1, 1, 1)
    scores[0, 0, 0] = 0.9
    chosen = greedy_placements(scores, scores, field)
    rows, cols = np.mgrid[:8, :8]
    ring = np.abs(np.hypot(rows - 3.5, cols - 3.5) - 2.5) < 1.0
    faint = np.where(ring, 0.51, 0.49)[..., None].repeat(3, axis=2).astype(np.float32)
    canvas = np.zeros((8, 8, 3), np.float32)
    raw = paste_features(canvas, chosen, {0: faint})
    stretched = paste_features(canvas, chosen, {0: faint}, stretched=True)
    assert np.ptp(raw) == pytest.approx(0.02, abs=1e-6)
    assert np.array_equal(stretched[..., 0] == 1.0, ring) and stretched[~ring].max() == 0.0
    flat = paste_features(canvas, chosen, {0: np.full((8, 8, 3), 0.3, np.float32)}, stretched=True)
    assert (flat == 0.5).all()  # nothing to stretch: grey, not a division by zero


def test_pasting_nfs_kept_over_their_reach_gives_the_whole_windows_picture():
    field = ReceptiveField(size=(9, 9), stride=(3, 3), offset=(-4, -4))
    scores = torch.zeros(2, 4, 4)
    scores[0, 0, 3], scores[1, 2, 1] = 0.5, 0.9
    chosen = greedy_placements(scores, scores, field, max_overlap=1.0)
    reach = (2, 7, 3, 8)
    rng = np.random.default_rng(2)
    parts = {c: rng.random((5, 5, 3)).astype(np.float32) for c in (0, 1)}
    whole = {c: full_window(part, reach, field.size) for c, part in parts.items()}
    for canvas in (np.zeros((10, 12, 3), np.float32), np.ones((4, 5, 3), np.float32)):
        expected = paste_features(canvas, chosen, whole)
        assert np.array_equal(paste_features(canvas, chosen, parts, reach), expected)
        assert not np.array_equal(expected, canvas)
    assert (expected == 0.5).any()  # grey from outside the reach was pasted too


def test_relevance_tree_follows_the_chain_and_stops_at_dead_neurons():
    model, neuron = composed_network(), magenta_top_images()
    tree = relevance_tree(
        model,
        _identity,
        [DEEP, SHALLOW],
        K,
        lambda layer, channel: neuron if layer == DEEP else None,
        max_children=3,
    )
    assert {child.channel for child in tree.children} == {2, 5}
    assert tree.as_json()["children"][0]["layer"] == SHALLOW
