"""An exported program (``.pt2``) analysed like the module it came from, in every stage: its
input constraints are read once, crops grow to a size it takes, a batch below its minimum is
padded, and what it cannot take is refused in one line before the stage starts."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from server.config import load_settings
from tests.support.cli import run_cli
from tests.support.jobs import run_results
from tests.support.models import two_convolutions

AUTO = torch.export.Dim.AUTO
DYNAMIC = ({0: AUTO, 2: AUTO, 3: AUTO},)
# Pictures (whose pixels may differ by a rounding) and links (which name the run).
SKIPPED = {"nf", "nf_array", "sprite", "heatmap", "url", "run", "feature_vis", "note", "history"}


def photo(path: Path, size: int, seed: int) -> Path:
    """Smooth random colours (8 × 8 noise, upsampled): no two images alike anywhere, so no two
    channels reach their dataset maximum at one place by coincidence."""
    noise = np.random.default_rng(seed).random((8, 8, 3))
    picture = Image.fromarray(np.round(noise * 255).astype(np.uint8)).resize((size, size))
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path)
    return path


def photos(root: Path, count: int = 12, size: int = 64) -> Path:
    for i in range(count):
        photo(root / f"class{i % 2}" / f"{i:02d}.png", size, seed=i)
    return root


def export(model: torch.nn.Module, path: Path, shapes=DYNAMIC, size: int = 64) -> Path:
    example = torch.rand(2, 3, size, size)
    torch.export.save(torch.export.export(model, (example,), dynamic_shapes=shapes), path)
    return path


def assert_close(actual, expected, where: str = "", rel: float = 1e-4) -> None:
    """The same structure, numbers equal to float tolerance (the program's kernels may add in
    another order; ``rel``, and a tenth of it absolute), everything else equal."""
    if isinstance(expected, dict):
        assert actual.keys() == expected.keys(), where
        for key in expected:
            if key not in SKIPPED:
                assert_close(actual[key], expected[key], f"{where}.{key}", rel)
    elif isinstance(expected, list):
        assert len(actual) == len(expected), where
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_close(a, e, f"{where}[{i}]", rel)
    elif isinstance(expected, float) and not isinstance(expected, bool):
        if math.isnan(expected):
            assert math.isnan(actual), where
        else:
            assert actual == pytest.approx(expected, rel=rel, abs=rel / 10), where
    else:
        assert actual == expected, where


def analysed_args(
    model: str, folder: Path, layers: str, *extra: str, size: int = 64, top_k: int = 4
) -> list[str]:
    args = ["analyze", "--model", model, "--data", str(folder), "--input-size", str(size)]
    return [*args, "--layers", layers, "--top-k", str(top_k), "--workers", "0", "--json", *extra]


def analysed(capsys, model: str, folder: Path, layers: str, *extra: str, **options: int) -> int:
    code, out, err = run_cli(capsys, *analysed_args(model, folder, layers, *extra, **options))
    assert code == 0, err
    return json.loads(out)["run"]


def test_two_convolutions_read_the_same_as_a_module_and_as_a_program(data_dir, tmp_path, capsys):
    """The issue's network: its program refuses layer ``1``'s 3 px crops (it needs 7 px); the
    crops grow, and every index, physiology curve and top-K list equals the module's."""
    folder = photos(tmp_path / "photos")
    weights = tmp_path / "two.safetensors"
    save_file(two_convolutions().state_dict(), weights)
    program = export(two_convolutions(), tmp_path / "two.pt2")
    spec = "tests.support.models:two_convolutions"
    module_run = analysed(capsys, spec, folder, "1,3", "--weights", str(weights))
    program_run = analysed(capsys, str(program), folder, "1,3")
    settings = load_settings()
    expected, actual = run_results(settings, module_run), run_results(settings, program_run)
    assert expected.keys() == actual.keys() and len(expected) == 6 + 8
    for key, neuron in expected.items():
        assert neuron["indexes"]["details"]["hue_curve"], key  # physiology ran
        assert_close(actual[key], neuron, str(key))


def test_an_exported_resnet18_with_channels_last_inside_reads_as_its_module(
    data_dir, tmp_path, capsys
):
    """ResNet-18 (random, seeded weights) exported in channels-last with dynamic sizes: its
    indexes and physiology at ``layer1`` (crops grown to what the program takes) and ``layer4``
    (whole images) equal its module's."""
    from analysis.models import load_model

    folder = photos(tmp_path / "photos", count=3, size=34)
    module = load_model("torchvision:resnet18").module
    weights = tmp_path / "resnet18.safetensors"
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, weights)
    program = export(module.to(memory_format=torch.channels_last), tmp_path / "resnet18.pt2")
    small = {"size": 34, "top_k": 2}  # the program takes 33 px and more
    module_run = analysed(
        capsys, "torchvision:resnet18", folder, "layer1,layer4", "--weights", str(weights), **small
    )
    program_run = analysed(capsys, str(program), folder, "layer1,layer4", **small)
    settings = load_settings()
    expected, actual = run_results(settings, module_run), run_results(settings, program_run)
    assert len(expected) == 64 + 512 and expected.keys() == actual.keys()
    for key, neuron in expected.items():  # 18 layers deep, the sums' order shows at 1e-4
        assert_close(actual[key], neuron, str(key), rel=1e-3)


def test_a_program_of_fixed_size_is_analysed_exactly_or_refused_in_one_line(
    data_dir, tmp_path, capsys
):
    """Fixed at 64 × 64 px with a dynamic batch: the indexes read whole images (exact), a
    decomposition and a composition match the module's; a visualisation or a dream at another
    size is refused before it starts. Fixed in its batch too: refused when loaded."""
    folder = photos(tmp_path / "photos")
    weights = tmp_path / "two.safetensors"
    save_file(two_convolutions().state_dict(), weights)
    fixed = export(two_convolutions(), tmp_path / "fixed.pt2", shapes=({0: AUTO},))
    spec = "tests.support.models:two_convolutions"
    module_run = analysed(capsys, spec, folder, "1,3", "--weights", str(weights))
    program_run = analysed(capsys, str(fixed), folder, "1,3")
    settings = load_settings()
    expected, actual = run_results(settings, module_run), run_results(settings, program_run)
    for key, neuron in expected.items():
        assert_close(actual[key], neuron, str(key))

    image = str(photo(tmp_path / "new.png", 64, seed=99))
    decomposed = []
    for run in (module_run, program_run):
        code, out, err = run_cli(capsys, "decompose", str(run), image, "--json")
        assert code == 0, err
        decomposed.append(json.loads(out)["layers"])
    for name, layer in decomposed[0].items():
        assert len(layer["neurons"]) > 3
        assert_close(decomposed[1][name]["neurons"], layer["neurons"], name)
    trees = []
    for run in (module_run, program_run):
        args = ("compose", str(run), "3", "0", "--mode", "relevance", "--depth", "1", "--json")
        code, out, err = run_cli(capsys, *args)
        assert code == 0, err
        trees.append(json.loads(out)["tree"])
    assert_close(trees[1], trees[0])

    refusals = [
        ("visualize", str(program_run), "1", "--channels", "0", "--steps", "1"),  # 128 px
        ("dream", str(program_run), image, "--layer", "3", "--steps", "1"),  # 64 px and less
    ]
    for argv in refusals:
        code, _out, err = run_cli(capsys, *argv)
        lines = err.strip().splitlines()
        assert code == 1 and len(lines) == 1, err
        assert "cannot" in lines[0] and "only 64×64 px" in lines[0], lines[0]
    code, _out, err = run_cli(
        capsys, "visualize", str(program_run), "1", "--channels", "0", "--steps", "1",
        "--view-size", "64",
    )  # fmt: skip
    assert code == 0, err  # at the size it takes

    frozen = export(two_convolutions(), tmp_path / "frozen.pt2", shapes=None)
    code, _out, err = run_cli(capsys, *analysed_args(str(frozen), folder, "1,3"))
    assert code == 1 and len(err.strip().splitlines()) == 1 and "batch is fixed" in err, err
