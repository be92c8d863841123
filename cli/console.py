"""The output sink of every command: a rich Console, and a progress display for sweeps."""

from __future__ import annotations

import os
import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

# Off a terminal rich assumes 80 columns; results tables need more to stay readable.
PLAIN_WIDTH = 160


def make_console(stderr: bool = False) -> Console:
    """Colour on a terminal; plain text when piped or NO_COLOR is set (rich honours it)."""
    probe = Console(stderr=stderr)
    width = None if probe.is_terminal else int(os.environ.get("COLUMNS", PLAIN_WIDTH))
    return Console(stderr=stderr, width=width, highlight=False)


class SweepProgress:
    """A live bar with the current case on a terminal; one plain line per case elsewhere."""

    def __init__(self, console: Console):
        self.console = console
        self._bar: Progress | None = None
        self._task = None
        self._t0 = time.perf_counter()

    def __enter__(self) -> SweepProgress:
        if self.console.is_terminal:
            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=self.console,
                transient=True,
            )
            self._bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def start(self, case, index: int, total: int) -> None:
        if self._bar is not None:
            if self._task is None:
                self._task = self._bar.add_task(case.name, total=total)
            self._bar.update(self._task, description=case.name, completed=index)
        self._line = f"[{index + 1}/{total}] {case.name}"

    def note(self, text: str) -> None:
        """A line about the sweep itself (its calibration, say), printed above the bar."""
        (self._bar.console if self._bar is not None else self.console).print(text, markup=False, highlight=False)

    def finish(self, record) -> None:
        from ..reports.units import fmt_time

        what = fmt_time(record.time.median_s) if record.status == "ok" else record.status
        if record.status != "ok" and record.reason:
            what += f" ({record.reason})"
        if self._bar is not None:
            self._bar.advance(self._task)
            if record.status != "ok":
                self._bar.console.print(f"{self._line}: {what}", markup=False, highlight=False)
        else:
            elapsed = time.perf_counter() - self._t0
            self.console.print(f"{self._line}: {what}  [{elapsed:.0f} s]", markup=False)
