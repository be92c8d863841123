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
    """The table body; print_table adds title and notes at full width (rich wraps them to the table)."""
    rt = RichTable(box=box.SIMPLE_HEAVY)
    for i, c in enumerate(t.columns):
        # overflow="fold": a word wider than its column (an operator's name) breaks, never loses its end
        rt.add_column(c, justify="right" if i == 0 else "left", no_wrap=i == 0, overflow="fold")
    for row in t.rows:
        rt.add_row(*[Text(c.text, style=STYLES[c.status]) for c in row])
    return rt


def render(run: RunResult, console: Console, tables: list[Table] | None = None) -> None:
    """Print the load notes of a run, then `tables` (default: the generic tables of the run), then
    the top-operator table of each profiled case (--profile; reports.profile_report), whichever
    tables a command chose: they are about the step, not the command."""
    from .profile_report import profile_tables

    for note in run.notes:
        console.print(Text(f"note: {note}", style="yellow"))
    shown = all_tables(run) if tables is None else list(tables)
    titles = {t.title for t in shown}
    for t in shown + [t for t in profile_tables(run) if t.title not in titles]:
        print_table(t, console)


def print_table(t: Table, console: Console) -> None:
    console.print(Text(t.title, style="bold"))
    console.print(to_rich(t))
    for note in t.notes:
        console.print(Text(note, style="dim"))
    console.print()


def print_summary(findings, console: Console) -> None:
    """The summary's findings, one per line, warnings and failures in colour."""
    if not findings:
        return
    console.print(Text("summary", style="bold"))
    for f in findings:
        console.print(Text(f"- {f.text}", style=STYLES.get(f.status, "")))
    console.print()


def print_document(doc, console: Console) -> None:
    """A reports.document.Document: load notes, summary, then each workload's tables."""
    for note in doc.notes:
        console.print(Text(f"note: {note}", style="yellow"))
    print_summary(doc.summary, console)
    for section in doc.sections:
        for t in section.tables:
            print_table(t, console)


def render_text(run: RunResult, *, width: int = 160, generated_utc: str | None = None) -> str:
    """The terminal report of `run` as plain text (no colour): what `xfbench report` prints."""
    import io

    from .document import build_document

    console = Console(file=io.StringIO(), width=width, no_color=True, highlight=False, force_terminal=False)
    print_document(build_document(run, generated_utc), console)
    return console.file.getvalue()
