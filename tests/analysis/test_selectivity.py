"""Selectivity indexes with known answers, from hand-set filters (docs/algorithms.md §4)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision

from analysis.data import load_rgb, scan_image_folder
from analysis.layers import list_layers
from analysis.models import InputSpec
from analysis.selectivity.engine import perturbation_responses
from analysis.selectivity.indexes import class_index, colour_index, population_summary
from analysis.selectivity.layer import layer_indexes
from analysis.selectivity.perturbations import IDENTITY, opponent_grey
from analysis.sweep import sweep
from tests.support import models as tiny_models
from tests.support.probe import receptive_fields

# Mid-grey maps to 0, so the zero padding at image borders looks like the grey background.
SPEC = InputSpec(size=32, mean=(0.5, 0.5, 0.5), std=(1, 1, 1))


def indexes_of(model, folder_root, k=8):
    """Sweep the single-channel ``model`` over the folder and compute its indexes."""
    folder = scan_image_folder(folder_root)
    layer = next(info for info in list_layers(model, SPEC) if info.name == "1")
    topk = sweep(model, folder, ["1"], SPEC, k=k, workers=0).layers["1"]

    def load(index: int) -> np.ndarray:
        return load_rgb(folder.root / folder.images[index].path, SPEC.size)

    return layer_indexes(model, layer, topk, load, folder.labels, SPEC, batch_size=128)[0]


def test_a_red_detector_is_colour_selective_and_a_luminance_edge_is_not(square_folder):
    red = indexes_of(
        tiny_models.single_filter(tiny_models.colour_kernel(1, -0.5, -0.5, 3)), square_folder
    )
    edge = indexes_of(tiny_models.single_filter(tiny_models.vertical_edge_kernel()), square_folder)
    assert red.color > 0.5
    assert abs(edge.color) < 0.15


def test_a_vertical_edge_filter_is_orientation_selective_and_centre_surround_is_not(
    square_folder,
):
    edge = indexes_of(tiny_models.single_filter(tiny_models.vertical_edge_kernel()), square_folder)
    isotropic = indexes_of(
        tiny_models.single_filter(tiny_models.centre_surround_kernel()), square_folder
    )
    assert edge.orientation > 0.4
    assert isotropic.orientation < 0.2
    assert edge.orientation > isotropic.orientation + 0.3
    curve = dict(zip(range(15, 360, 15), edge.orientation_curve, strict=True))
    assert len(edge.orientation_curve) == 23
    assert curve[90] < 0.2  # a horizontal edge barely drives it
    assert curve[180] > 0.8  # the same edge, upside down, drives it again
    assert curve[15] > 0.3 and curve[345] > 0.3  # small rotations keep much of the response


def test_a_mirror_symmetric_blob_is_symmetric_and_a_corner_is_not(square_folder):
    blob = indexes_of(tiny_models.single_filter(tiny_models.gaussian_blob_kernel()), square_folder)
    corner = indexes_of(tiny_models.single_filter(tiny_models.corner_kernel()), square_folder)
    assert blob.symmetry > 0.95
    assert len(blob.symmetry_axes) == 4
    assert corner.symmetry < blob.symmetry - 0.25


def test_a_channel_driven_by_one_class_has_class_index_one(square_folder):
    red = indexes_of(
        tiny_models.single_filter(tiny_models.colour_kernel(1, -0.5, -0.5, 3)), square_folder
    )
    assert red.klass.index == 1.0
    assert red.klass.top_class == "red"
    assert red.klass.distribution == {"red": 1.0} and red.klass.population_code == 1


def test_class_index_counts_classes_by_weight():
    values = np.array([4.0, 3.0, 2.0, 1.0])
    mixed = class_index(values, ["a", "b", "a", "c"])
    assert mixed.index == pytest.approx((4 - 3) / 3)
    assert mixed.distribution == pytest.approx({"a": 0.6, "b": 0.3, "c": 0.1})
    assert mixed.population_code == 3
    half = class_index(values, ["a", "b", "a", "c"], threshold=0.5)
    assert half.index == pytest.approx((4 - 1) / 3)


def test_colour_index_formula_including_negative_values():
    a = np.array([2.0, 1.0])
    csi, bounded = colour_index(a, np.array([0.5, 0.5]))
    assert csi == pytest.approx(1 - 1.0 / 3.0)
    assert bounded == pytest.approx(np.mean([1 - 0.25, 1 - 0.5]))
    csi, bounded = colour_index(a, np.array([4.0, 2.0]))  # grey excites more
    assert csi == pytest.approx(-1.0) and bounded == 0.0


def test_grey_version_keeps_luminance_range_and_ordering():
    patch = torch.zeros(1, 3, 2, 2)
    patch[0, :, 0, 0] = torch.tensor([1.0, 0.0, 0.0])  # red, luminance 1/3
    patch[0, :, 0, 1] = torch.tensor([0.5, 0.5, 0.5])  # grey, luminance 1/2
    patch[0, :, 1, :] = torch.tensor([0.5, 0.5, 0.5])[:, None]
    grey = opponent_grey(patch, torch.ones(1, 2, 2))[0, 0]
    assert torch.allclose(grey[0], grey[1]) and torch.allclose(grey[1], grey[2])
    assert grey[0].min() == pytest.approx(1 / 3, abs=1e-6)
    assert grey[0].max() == pytest.approx(0.5, abs=1e-6)
    assert grey[0, 0, 0] < grey[0, 1, 1]


@pytest.mark.parametrize(
    ("architecture", "size", "layers"),
    [
        ("vgg11", (64, 64), ["4", "12"]),
        ("vgg11", (48, 80), ["4", "12"]),
        ("vgg11_bn", (64, 64), ["6", "13"]),  # batch norms folded into the convolutions
    ],
)
def test_cropped_re_reading_equals_the_full_image_forward(architecture, size, layers):
    """The engine forwards only a crop around each window (channels-last, batch norms folded);
    the unperturbed read must equal the activation of the whole image (contiguous, unfolded),
    at borders too, on square and non-square inputs."""
    torch.manual_seed(0)
    model = torchvision.models.get_model(architecture).features.eval()
    for norm in (m for m in model if isinstance(m, torch.nn.BatchNorm2d)):
        norm.running_mean.uniform_(-0.5, 0.5)
        norm.running_var.uniform_(0.5, 2.0)
    spec = InputSpec(size=size)
    rng = np.random.default_rng(0)
    images = rng.random((4, *size, 3)).astype(np.float32)
    for layer in layers:
        model.to(memory_format=torch.contiguous_format)
        field = receptive_fields(model, [layer], 64)[layer]
        with torch.no_grad():
            full = model[: int(layer) + 1](
                spec.normalise(torch.from_numpy(images).permute(0, 3, 1, 2))
            )
        height, width = full.shape[-2:]
        rows = rng.integers(0, height, (2, 3))
        cols = rng.integers(0, width, (2, 3))
        rows[0, 0], cols[0, 0] = 0, width - 1
        picks = rng.integers(0, 4, (2, 3))
        read = perturbation_responses(
            model, layer, field, [0, 1], rows, cols, picks, lambda i: images[i], spec, [IDENTITY]
        )["identity"][..., 0]
        expected = [
            [float(full[picks[c, j], c, rows[c, j], cols[c, j]]) for j in range(3)]
            for c in range(2)
        ]
        np.testing.assert_allclose(read, expected, rtol=1e-4, atol=1e-5)


def test_population_summary_histograms():
    summary = population_summary({"color": [0.05, 0.55, 0.95, -0.2, None, float("nan")]})
    color = summary["color"]
    assert sum(color["counts"]) == 4 and color["counts"][0] == 2 and color["below_zero"] == 1
    assert color["fraction_above"] == 0.5 and color["neurons"] == 4
