"""The output sink of every command: a rich Console, and a progress display for sweeps.

What every command prints goes through make_console()'s SafeConsole, which holds to three rules
whatever its caller passes:

- Strings are plain text: no rich markup (`[/bold]sdpa` is not an error, `[link=...]` is no
  hidden hyperlink) and no emoji codes; a label is printed as it is in the data.
- No control character from data reaches the terminal (reports/sanitize.printable): every
  segment of text is cleaned just before rich adds its own styling escapes, so a caller that
  forgets, or a renderable built elsewhere, cannot leak `\\x1b]0;...` or `\\x1b[2J`.
- NO_COLOR (set and not empty, https://no-color.org) or TERM=dumb gives plain text even on a
  terminal: no colour, no bold, no cursor control. A sweep then prints one line per case as it
  does when piped, instead of the live bar (a bar that redraws itself needs escape sequences).

An unusable COLUMNS (not a number, or outside MIN_WIDTH..MAX_WIDTH: `abc`, empty, `0`, `-5`) is
ignored: the width is the terminal's, or PLAIN_WIDTH off a terminal. LINES likewise.
"""

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

from ..reports.sanitize import printable
from ..reports.terminal import SafeConsole

# Off a terminal rich assumes 80 columns; results tables need more to stay readable.
PLAIN_WIDTH = 160
# A COLUMNS outside this range is not a width anyone can read a table in: ignored.
MIN_WIDTH, MAX_WIDTH = 20, 4096
MIN_LINES, MAX_LINES = 2, 10000


def env_size(name: str, lo: int, hi: int) -> int | None:
    """The integer in environment variable `name` when it lies in lo..hi; None when unset or unusable."""
    raw = os.environ.get(name)
    if raw is None:
        return None
    try:
        value = int(raw.strip())
    except ValueError:
        return None
    return value if lo <= value <= hi else None


def plain_requested() -> bool:
    """NO_COLOR set and not empty (no-color.org), or a dumb terminal: text without escape sequences."""
    return os.environ.get("NO_COLOR", "") != "" or os.environ.get("TERM", "") == "dumb"


def _terminal_size(stream) -> os.terminal_size | None:
    for fd in (_fileno(stream), 1, 2, 0):
        if fd is None:
            continue
        try:
            return os.get_terminal_size(fd)
        except OSError:
            continue
    return None


def _fileno(stream) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None


def make_console(stderr: bool = False) -> SafeConsole:
    """Colour on a terminal; plain text when piped or when NO_COLOR is set."""
    import sys

    probe = Console(stderr=stderr, width=PLAIN_WIDTH, height=25)  # sizes given: it reads no COLUMNS
    plain = plain_requested()
    columns, lines = env_size("COLUMNS", MIN_WIDTH, MAX_WIDTH), env_size("LINES", MIN_LINES, MAX_LINES)
    if probe.is_terminal:
        size = _terminal_size(sys.stderr if stderr else sys.stdout)
        width = columns or (size.columns if size and size.columns >= MIN_WIDTH else 80)
        height = lines or (size.lines if size and size.lines >= MIN_LINES else 25)
    else:
        width, height = columns or PLAIN_WIDTH, lines or 25
    return SafeConsole(
        stderr=stderr, width=width, height=height, highlight=False, markup=False, emoji=False,
        no_color=plain or None, color_system=None if plain else "auto",
        force_interactive=False if plain else None,
    )


def live_display_ok(console: Console) -> bool:
    """Whether a live (redrawing) display may be used: an interactive terminal that allows escapes."""
    return console.is_terminal and console.is_interactive and console.color_system is not None


class SweepProgress:
    """A live bar with the current case on a terminal; one plain line per case elsewhere (piped,
    or NO_COLOR / TERM=dumb on a terminal). Every string from a case or a record is printed as
    plain, printable text."""

    def __init__(self, console: Console):
        self.console = console
        self._bar: Progress | None = None
        self._task = None
        self._t0 = time.perf_counter()
        self._line = ""

    def __enter__(self) -> SweepProgress:
        if live_display_ok(self.console):
            self._bar = Progress(
                TextColumn("{task.description}", style="bold", markup=False),
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
        name = printable(case.name, lines=False)
        if self._bar is not None:
            if self._task is None:
                self._task = self._bar.add_task(name, total=total)
            self._bar.update(self._task, description=name, completed=index)
        self._line = f"[{index + 1}/{total}] {name}"

    def _print(self, text: str) -> None:
        console = self._bar.console if self._bar is not None else self.console
        console.print(printable(text), markup=False, highlight=False, emoji=False)

    def note(self, text: str) -> None:
        """A line about the sweep itself (its calibration, say), printed above the bar."""
        self._print(text)

    def finish(self, record) -> None:
        from ..reports.units import fmt_time

        what = fmt_time(record.time.median_s) if record.status == "ok" else record.status
        if record.status != "ok" and record.reason:
            what += f" ({record.reason})"
        if self._bar is not None:
            self._bar.advance(self._task)
            if record.status != "ok":
                self._print(f"{self._line}: {what}")
        else:
            elapsed = time.perf_counter() - self._t0
            self._print(f"{self._line}: {what}  [{elapsed:.0f} s]")
