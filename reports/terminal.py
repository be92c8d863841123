"""Terminal renderer: draws the format-neutral tables with rich (plain text off a terminal).

Every string it takes from data (titles, column names, cells, notes, findings) goes through
reports.sanitize.printable and into a Text object, never through rich markup: a label such as
`[/bold]sdpa` or one holding an escape sequence prints as the literal, visible text. SafeConsole,
the console every command prints through (cli/console.make_console), holds to the same rule for
whatever else it is given.
"""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.segment import Segment
from rich.table import Table as RichTable
from rich.text import Text

from .sanitize import encodable, is_printable, printable
from .schema import RunResult
from .tables import Table, all_tables

STYLES = {"bad": "bold red", "warn": "yellow", "dim": "dim", None: ""}


class SafeConsole(Console):
    """A rich Console that prints every string as plain, printable text: no markup, no emoji
    codes, no control character (reports.sanitize.printable), whatever its caller passes."""

    def render_str(self, text: str, **kwargs) -> Text:
        # Cleaned before layout, so widths are measured on what is shown; never markup or emoji.
        kwargs["markup"] = False
        kwargs["emoji"] = False
        return super().render_str(encodable(printable(text), self.encoding), **kwargs)

    def _render_buffer(self, buffer) -> str:
        # The last pass over what is written: every text segment but rich's own control codes
        # (the live bar's cursor moves), before the styles add their escape sequences.
        cleaned = (
            seg if seg.control or is_printable(seg.text) else Segment(printable(seg.text), seg.style, seg.control)
            for seg in buffer
        )
        return super()._render_buffer(cleaned)


def _text(s: str, style: str = "", encoding: str | None = None) -> Text:
    """Data as a Text: printable, in what `encoding` (the console's) can show, never markup."""
    return Text(encodable(printable(s), encoding), style=style)


def to_rich(t: Table, encoding: str | None = None) -> RichTable:
    """The table body; print_table adds title and notes at full width (rich wraps them to the table)."""
    rt = RichTable(box=box.SIMPLE_HEAVY)
    for i, c in enumerate(t.columns):
        # overflow="fold": a word wider than its column (an operator's name) breaks, never loses its end
        rt.add_column(_text(c, encoding=encoding), justify="right" if i == 0 else "left", no_wrap=i == 0,
                      overflow="fold")
    for row in t.rows:
        rt.add_row(*[_text(c.text, STYLES[c.status], encoding) for c in row])
    return rt


def render(run: RunResult, console: Console, tables: list[Table] | None = None) -> None:
    """Print the load notes of a run, then `tables` (default: the generic tables of the run), then
    the top-operator table of each profiled case (--profile; reports.profile_report), whichever
    tables a command chose: they are about the step, not the command."""
    from .profile_report import profile_tables

    for note in run.notes:
        console.print(_text(f"note: {note}", "yellow", console.encoding))
    shown = all_tables(run) if tables is None else list(tables)
    titles = {t.title for t in shown}
    for t in shown + [t for t in profile_tables(run) if t.title not in titles]:
        print_table(t, console)


def print_table(t: Table, console: Console) -> None:
    console.print(_text(t.title, "bold", console.encoding))
    console.print(to_rich(t, console.encoding))
    for note in t.notes:
        console.print(_text(note, "dim", console.encoding))
    console.print()


def print_summary(findings, console: Console) -> None:
    """The summary's findings, one per line, warnings and failures in colour."""
    if not findings:
        return
    console.print(Text("summary", style="bold"))
    for f in findings:
        console.print(_text(f"- {f.text}", STYLES.get(f.status, ""), console.encoding))
    console.print()


def print_document(doc, console: Console) -> None:
    """A reports.document.Document: load notes, summary, then each workload's tables."""
    for note in doc.notes:
        console.print(_text(f"note: {note}", "yellow", console.encoding))
    print_summary(doc.summary, console)
    for section in doc.sections:
        for t in section.tables:
            print_table(t, console)


def render_text(run: RunResult, *, width: int = 160, generated_utc: str | None = None) -> str:
    """The terminal report of `run` as plain text (no colour): what `xfbench report` prints."""
    import io

    from .document import build_document

    console = SafeConsole(file=io.StringIO(), width=width, no_color=True, highlight=False, markup=False, emoji=False,
                          force_terminal=False)
    print_document(build_document(run, generated_utc), console)
    return console.file.getvalue()
