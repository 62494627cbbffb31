"""Terminal progress bars (tqdm) behind the pipeline's Progress protocol."""

from __future__ import annotations

import sys

from tqdm import tqdm


class TerminalProgress:
    """One bar per stage, written to stderr so ``--json`` output on stdout stays clean."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._bar: tqdm | None = None

    def start(self, stage: str, total: int, unit: str = "") -> None:
        self.finish()
        if self.enabled:
            self._bar = tqdm(
                total=total,
                desc=stage,
                unit=unit or "it",  # the rate reads "118.2images/s", tqdm's way
                file=sys.stderr,
                dynamic_ncols=True,
            )

    def update(self, done: int, note: str | None = None) -> None:
        if self._bar is not None:
            self._bar.update(done - self._bar.n)
            if note:
                self._bar.set_postfix_str(note)

    def note(self, text: str) -> None:
        if self.enabled:
            tqdm.write(text, file=sys.stderr)

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
