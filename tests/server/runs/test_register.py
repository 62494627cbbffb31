"""What pins a run: its key, which older runs keep when an option is added at its default."""

from __future__ import annotations

from types import SimpleNamespace

from analysis.models import InputSpec
from server.runs.register import RunParams, run_key

SPEC = InputSpec(size=16, mean=(0, 0, 0), std=(1, 1, 1))


def test_the_draft_choice_is_part_of_a_runs_key_and_absent_from_older_ones():
    plain = RunParams(("4",), 5, "whole")
    assert plain.as_json() == {"layers": ["4"], "top_k": 5, "resize": "whole"}  # keys kept
    drafted = RunParams(("4",), 5, "whole", jpeg_draft=True)
    assert drafted.as_json()["jpeg_draft"] is True
    model, dataset = SimpleNamespace(identity="m"), SimpleNamespace(fingerprint="d")
    assert run_key(model, dataset, plain) != run_key(model, dataset, drafted)
