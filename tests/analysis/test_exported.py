"""An exported program's input constraints, read once: ranges, guards, a padded batch."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from analysis.exported import ProgramInputError, input_constraints
from analysis.hooks import forward_until, layer_hooks
from analysis.models import ModelError, load_model
from analysis.receptive_field import ReceptiveField
from analysis.selectivity.engine import plan_crops
from tests.support.models import two_convolutions

AUTO = torch.export.Dim.AUTO
DYNAMIC = ({0: AUTO, 2: AUTO, 3: AUTO},)


class EvenSides(nn.Module):
    """Pooled and upsampled back onto itself: only even sides add up."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.pool, self.up = nn.MaxPool2d(2), nn.Upsample(scale_factor=2)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        mapped = self.conv(images)
        return mapped + self.up(self.pool(mapped))


def exported(model: nn.Module, path, shapes=DYNAMIC, size: int = 32):
    program = torch.export.export(
        model.eval(), (torch.rand(2, 3, size, size),), dynamic_shapes=shapes
    )
    torch.export.save(program, path)
    return load_model(str(path), input_size=size)


def test_ranges_and_guards_are_read_from_the_program(tmp_path):
    two = input_constraints(exported(two_convolutions(), tmp_path / "two.pt2").module)
    assert two.batch.low == 2 and two.batch.high is None  # Dim.AUTO's batch starts at 2
    assert not two.accepts(6, 6) and two.accepts(7, 7) and two.accepts(7, 300)
    assert two.describe() == "it takes square images of 7 px and more"
    even = input_constraints(exported(EvenSides(), tmp_path / "even.pt2").module)
    assert even.accepts(34, 34) and not even.accepts(33, 34) and not even.accepts(34, 33)
    assert even.describe() == "it takes square images of 4, 6, 8, … px"
    assert input_constraints(two_convolutions()).accepts(1, 1)  # a module: anything


def test_a_batch_below_the_minimum_is_padded_and_the_copies_never_seen(tmp_path):
    loaded = exported(two_convolutions(), tmp_path / "two.pt2")
    image = torch.rand(1, 3, 32, 32)
    seen: list[torch.Size] = []
    with torch.no_grad(), layer_hooks(loaded.module, ["1"], lambda _n, out: seen.append(out.shape)):
        output = loaded.module(image)
        forward_until(loaded.module, image)
    assert seen == [torch.Size([1, 6, 30, 30])] * 2 and output.shape[0] == 1
    with torch.no_grad():
        assert torch.allclose(output, two_convolutions()(image), atol=1e-6)


def test_a_fixed_batch_or_an_input_size_the_program_refuses_fails_at_load(tmp_path):
    with pytest.raises(ModelError, match="batch is fixed at 2: export it with a dynamic batch"):
        exported(two_convolutions(), tmp_path / "fixed.pt2", shapes=None)
    torch.export.save(
        torch.export.export(
            EvenSides().eval(), (torch.rand(2, 3, 32, 32),), dynamic_shapes=DYNAMIC
        ),
        tmp_path / "even.pt2",
    )
    with pytest.raises(ModelError, match="cannot take its input size 33×33: it takes square"):
        load_model(str(tmp_path / "even.pt2"), input_size=33)


def test_crops_grow_a_stride_at_a_time_to_a_size_the_program_takes(tmp_path):
    accepted = input_constraints(exported(two_convolutions(), tmp_path / "two.pt2").module)
    field = ReceptiveField(size=(3, 3), stride=(1, 1), offset=(0, 0))
    rows, cols = torch.tensor([0, 10, 61]), torch.tensor([5, 0, 61])
    natural = plan_crops(field, rows, cols, (64, 64))
    grown = plan_crops(field, rows, cols, (64, 64), accepted)
    assert natural.size == (3, 3) and grown.size == (7, 7)
    # Each window keeps its place in the image: crop origin + window offset is unchanged.
    assert torch.equal(grown.top + grown.window_top, natural.top + natural.window_top)
    assert torch.equal(grown.read_row + grown.top, natural.read_row + natural.top)
    assert (grown.window_top >= 0).all() and (grown.window_top + 3 <= 7).all()
    with pytest.raises(ProgramInputError, match="only 64×64"):
        fixed = exported(two_convolutions(), tmp_path / "f.pt2", ({0: AUTO},), size=64)
        input_constraints(fixed.module).require(32, 32, "a 32 px crop")


def test_a_batch_above_the_maximum_runs_in_pieces_that_hooks_see_as_one(tmp_path):
    batch = torch.export.Dim("batch", min=2, max=4)
    loaded = exported(two_convolutions(), tmp_path / "small.pt2", ({0: batch, 2: AUTO, 3: AUTO},))
    images = torch.rand(5, 3, 32, 32)  # pieces of 4 and 1, the 1 padded to 2
    seen: list[torch.Tensor] = []
    with torch.no_grad():
        with layer_hooks(loaded.module, ["1"], lambda _n, out: seen.append(out), stop_early=True):
            forward_until(loaded.module, images)
        output = loaded.module(images)
        expected = two_convolutions()(images)
    assert len(seen) == 1 and seen[0].shape == (5, 6, 30, 30)
    assert torch.allclose(seen[0], two_convolutions()[:2](images), atol=1e-6)
    assert output.shape == expected.shape and torch.allclose(output, expected, atol=1e-6)
