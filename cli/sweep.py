"""Shared tail of every sweep command: run folder, progress, run, render, exit code.

SIGINT and SIGTERM during a sweep (workloads.isolate.StopSignals) stop it after the current case
(a second signal, or one outside a case: at once); what was measured is rendered as at a normal
end, and one line says what was kept and how to finish (interrupted_line); exit 130 / 143.
"""

from __future__ import annotations

import dataclasses
import shlex
import signal
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from ..reports.errors import BadInput
from ..reports.schema import RunResult
from ..reports.select import latest
from ..reports.store import REPORT_NAME, RESULTS_NAME, load_results
from ..reports.tables import Table
from ..reports.terminal import render
from ..workloads.base import Case
from ..workloads.runner import Executor, pending_cases, run_plan
from .common import SharedOptions
from .console import SweepProgress, make_console
from .status import ExitStatus

FAILED = ("oom", "error")


def default_run_dir(command: str) -> Path:
    """runs/<UTC time>-<command>, with -2, -3, ... when a run started in the same second holds that name."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    base = Path("runs") / f"{stamp}-{command}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


# What a run writes into its folder: --force keeps the earlier run's as <name>.bak.
RUN_FILES = (RESULTS_NAME, REPORT_NAME, "summary.md", "results.csv")
BACKUP_SUFFIX = ".bak"


def claim_run_folder(run_dir: Path, *, resume: bool, force: bool) -> list[str]:
    """Make sure a new run never overwrites an earlier one: an --out holding a results file is
    refused (BadInput, exit 2, before anything is calibrated) unless --resume adds to it, or --force
    starts afresh, keeping the earlier run's files as *.bak (one generation: an older .bak goes).
    An empty folder, or one without a results file, is fine. Returns the lines to print (what
    --force moved aside). The move is made under the run's lock, so a run still writing there
    is never moved from under it ("another xfbench is writing DIR", exit 2)."""
    from ..reports.store import RunLock

    path = run_dir / RESULTS_NAME
    if resume or not (path.exists() or path.is_symlink()):
        return []
    moved = []
    with RunLock(path):  # first: a run still being written is "another xfbench is writing DIR"
        if not force:
            raise BadInput(
                f"{run_dir} already holds a run ({RESULTS_NAME}): give a new --out, --resume to add to that run, "
                f"or --force to start a new one there (the earlier files are kept as *{BACKUP_SUFFIX})"
            )
        for name in RUN_FILES:
            src = run_dir / name
            if src.is_file():
                try:
                    src.replace(src.with_name(name + BACKUP_SUFFIX))
                except OSError as e:
                    raise BadInput(f"--force: cannot move {src} aside: {e.strerror or e}") from None
                moved.append(name)
    return [f"--force: the earlier run's {', '.join(moved)} kept as *{BACKUP_SUFFIX} in {run_dir}"]


def write_html_report(run: RunResult, run_dir: Path, console) -> Path | None:
    """report.html beside the results; a report that fails loses nothing measured: it says so
    in one line (the results file is complete) and the sweep keeps its exit code."""
    from ..reports.html import render as render_html
    from ..reports.render import generated_utc
    from ..reports.writer import write_output

    try:
        path = write_output(render_html(run, generated_utc=generated_utc()), run_dir / REPORT_NAME)
    except Exception as e:  # noqa: BLE001 - the measured results are safe; say why the report is not
        console.print(
            f"report: not written ({type(e).__name__}: {e}); the results are complete, "
            f"`xfbench report {run_dir}` renders it again",
            markup=False,
        )
        return None
    console.print(f"report: {path}", markup=False)
    return path


def record_history(run: RunResult, run_dir: Path, db: Path | None, console, suite: str | None = None) -> None:
    """Record a run into the history database; a history that cannot be written loses nothing measured:
    one line says so."""
    import sqlite3

    from ..reports.history import History, default_db_path

    path = db or default_db_path()
    try:
        with History(path) as h:
            added = h.record(run, source=str(run_dir), suite=suite)
    except (BadInput, sqlite3.Error, OSError) as e:
        console.print(f"history: not recorded ({e}); the results are complete", markup=False)
        return
    console.print(f"history: {added} results recorded in {path}", markup=False)


def run_sweep(
    command: str, cases: list[Case], shared: SharedOptions,
    extra_tables: Callable[[RunResult], list[Table]] | None = None,
    execute: Executor | None = None,
    calibrate: bool = True,
) -> ExitStatus:
    """Run `cases` into <out>/results.jsonl, print the tables, and pick the exit code.

    `extra_tables` makes a command's own tables from the run; they replace the generic
    results and scaling tables (the notes met while loading the file still print).
    The library (run_plan) loads or measures the peaks once, before the first case, as
    `opts` says (`calibrate=False`: never, e.g. for cases that run as ranks). `execute` runs
    one case (default: in this process; runner.Executor).
    """
    opts, out, resume = shared.run_options(), shared.out, shared.resume
    if not calibrate:
        opts = dataclasses.replace(opts, calibrate=False)
    if resume and out is None:
        raise BadInput("--resume needs --out: the run folder to resume")
    console = make_console()
    run_dir = out or default_run_dir(command)
    path = run_dir / RESULTS_NAME
    from .output import results_at

    results_at(path)  # named if stdout stops taking output
    for line in claim_run_folder(run_dir, resume=resume, force=shared.force):
        console.print(line, markup=False)
    todo = pending_cases(cases, path) if resume else cases
    done = f" ({len(cases) - len(todo)} already in the file, skipped by --resume)" if resume else ""
    console.print(f"xfbench {command}: {len(todo)} cases to run{done} -> {path}", markup=False)
    stop = stop_signals(console)
    try:  # run_plan reads an existing --out before it calibrates: a bad one fails at once
        with stop, SweepProgress(console) as progress:
            run_plan(todo, path, command=command, argv=sys.argv[1:], opts=opts, progress=progress, execute=execute,
                     stop=stop)
    except KeyboardInterrupt as e:  # isolate.Interrupted, or one raised on the way (a calibration's)
        signum = getattr(e, "signum", None) or stop.signum or signal.SIGINT
        if path.is_file():
            run = load_results(path)
            if run.records:
                _report(run, run_dir, shared, console, extra_tables)
        kept = _kept(path, cases)
        console.print(interrupted_line(signum, kept, len(cases), path, resume_command(sys.argv[1:], run_dir)),
                      markup=False, soft_wrap=True)  # one line: the command in it stays copyable
        return ExitStatus.for_signal(signum)
    run = load_results(path)  # every report is a function of the results file
    _report(run, run_dir, shared, console, extra_tables)
    # The outcome of the whole plan: with --resume, earlier runs' records of it count too.
    ids = {c.id for c in cases}
    planned = [r for r in latest(run.records) if r.case_id in ids]
    failed = [r for r in planned if r.status in FAILED]
    if failed:
        console.print(f"{len(failed)} of {len(planned)} cases failed (exit code 3)", markup=False)
        return ExitStatus.CASES_FAILED
    return ExitStatus.OK


def _report(run: RunResult, run_dir: Path, shared: SharedOptions, console, extra_tables) -> None:
    """The tables, report.html and the history record of a run (at its end, or at an interruption)."""
    render(run, console, tables=extra_tables(run) if extra_tables else None)
    console.print(f"results: {run_dir / RESULTS_NAME}", markup=False)
    if shared.html:
        write_html_report(run, run_dir, console)
    if shared.history and not shared.fake_clock:  # a fake clock's numbers are no machine's history
        record_history(run, run_dir, shared.db, console)


def stop_signals(console):
    """A StopSignals that says, when a signal asks the sweep to stop, that it will after this case."""
    from ..workloads.isolate import StopSignals, signal_name

    def say(signum: int) -> None:
        console.print(f"{signal_name(signum)}: stopping after the current case (its record is kept); "
                      "send it again to stop at once", markup=False)

    return StopSignals(on_request=say)


def _kept(path: Path, cases: list[Case]) -> int:
    """How many of the plan's cases have a record in the results file."""
    if not path.is_file():
        return 0
    ids = {c.id for c in cases}
    return len({r.case_id for r in load_results(path).records if r.case_id in ids})


def interrupted_line(signum: int, kept: int, total: int, path: Path, resume: str) -> str:
    """The one line an interrupted sweep ends with: what was kept, and the command that finishes it."""
    from ..workloads.isolate import signal_name

    return f"interrupted ({signal_name(signum)}): {kept} of {total} cases are in {path}; finish with: {resume}"


def resume_command(argv: list[str], run_dir: Path, prog: str = "xfbench") -> str:
    """The command line that finishes an interrupted run: the same options with `--out RUN_DIR --resume`
    (an --out given is replaced; --force, which would start the run over, is left out)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--out":
            skip = True
        elif not (a.startswith("--out=") or a in ("--resume", "--force")):
            out.append(a)
    return shlex.join([prog, *out, "--out", str(run_dir), "--resume"])
