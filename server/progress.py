"""How long-running work reports its progress: the terminal's bars, a job's progress column and
message, or nothing. Every stage that takes long calls these; each front end supplies its own."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    """Reports long work: ``start`` a stage of ``total`` steps (counted in ``unit``, such as
    ``images``), then ``update`` done counts; ``note`` a line to keep in view."""

    def start(self, stage: str, total: int, unit: str = "") -> None: ...
    def update(self, done: int) -> None: ...
    def finish(self) -> None: ...
    def note(self, text: str) -> None:
        """A line that stays beside the stages' progress (a run's estimated cost)."""


class SilentProgress:
    def start(self, stage: str, total: int, unit: str = "") -> None:
        pass

    def update(self, done: int) -> None:
        pass

    def finish(self) -> None:
        pass

    def note(self, text: str) -> None:
        pass
