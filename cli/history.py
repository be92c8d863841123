"""`xfbench history`: per-case trends of the runs recorded in the history database."""

from pathlib import Path

import typer

from .status import ExitStatus


def history(
    case: str | None = typer.Option(
        None, "--case", help="Only this case: its id, or text in its name ('naive · N=512')."
    ),
    last: int = typer.Option(20, "--last", min=2, max=10000, help="Runs per case in the trend."),
    metric: str = typer.Option("time", "--metric", help="time, tokens_per_s or peak_mem."),
    db: Path | None = typer.Option(None, "--db", help="History database [default: user data folder]."),
    html: Path | None = typer.Option(None, "--html", help="Also write the trends as an HTML page with figures."),
    force: bool = typer.Option(False, "--force", help="Overwrite an --html file that exists."),
) -> ExitStatus:
    """Per-case trends from the history database: runs, noise band, sparkline, change points."""
    from ..reports.compare_history import HISTORY_METRIC
    from ..reports.errors import BadInput
    from ..reports.history import History, default_db_path
    from ..reports.history_report import history_html, history_table
    from ..reports.terminal import print_table
    from ..reports.writer import refuse_existing, write_output
    from .console import make_console

    if metric not in HISTORY_METRIC:
        raise BadInput(f"--metric: unknown value '{metric}' (choose from {', '.join(HISTORY_METRIC)})")
    refuse_existing([("--html", html)], force=force)
    path = db or default_db_path()
    if not path.exists():
        raise BadInput(f"no history database at {path} (`xfbench run` records every run there; or give --db)")
    console = make_console()
    with History(path) as h:
        table = history_table(h, case=case, last=last, metric=HISTORY_METRIC[metric])
        if not table.rows:
            raise BadInput(f"{path}: no recorded case" + (f" matches --case '{case}'" if case else ""))
        console.print(f"history: {path}", markup=False)
        print_table(table, console)
        if html is not None:
            written = write_output(history_html(h, case=case, last=last, metric=HISTORY_METRIC[metric]), html)
            if written is not None:
                console.print(f"html: {written}", markup=False)
    return ExitStatus.OK
