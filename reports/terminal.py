"""Terminal renderer: draws the format-neutral tables with rich (plain text off a terminal)."""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.table import Table as RichTable
from rich.text import Text

from .schema import RunResult
from .tables import Table, all_tables

STYLES = {"bad": "bold red", "warn": "yellow", "dim": "dim", None: ""}


def to_rich(t: Table) -> RichTable:
    rt = RichTable(title=t.title, box=box.SIMPLE_HEAVY, title_justify="left", caption_justify="left")
    for i, c in enumerate(t.columns):
        rt.add_column(c, justify="right" if i == 0 else "left", no_wrap=i == 0)
    for row in t.rows:
        rt.add_row(*[Text(c.text, style=STYLES[c.style]) for c in row])
    if t.notes:
        rt.caption = Text("\n".join(t.notes))
    return rt


def render(run: RunResult, console: Console) -> None:
    """Print every table of a run to `console`."""
    for note in run.notes:
        console.print(Text(f"note: {note}", style="yellow"))
    for t in all_tables(run):
        console.print(to_rich(t))
