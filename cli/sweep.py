"""Shared tail of every sweep command: run folder, progress, run, render, exit code."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

from ..reports.errors import BadInput
from ..reports.schema import RunResult
from ..reports.select import latest
from ..reports.store import RESULTS_NAME, load_results
from ..reports.tables import Table
from ..reports.terminal import render
from ..workloads.base import Case
from ..workloads.runner import RunOptions, pending_cases, run_plan
from .console import SweepProgress, make_console
from .status import ExitStatus

FAILED = ("oom", "error")


def default_run_dir(command: str) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return Path("runs") / f"{stamp}-{command}"


def with_peaks(opts: RunOptions, cases: list[Case], console: Console, recalibrate: bool = False) -> RunOptions:
    """Load (or measure, once, before the sweep) the peaks for the cases' device, dtypes and threads."""
    from ..profilers.calibrate import dtypes_for, load_or_calibrate, to_peaks
    from ..profilers.device import resolve_device
    from ..reports.units import fmt_flops, fmt_rate

    device = resolve_device(cases[0].device)
    dtypes = dtypes_for({c.params.get("dtype") for c in cases}, device)
    res = load_or_calibrate(device, threads=opts.threads, dtypes=dtypes, recalibrate=recalibrate)
    cal = res.calibration
    figures = ", ".join(f"{d} {fmt_flops(cal.peak(d))}" for d in dtypes)
    how = "cached" if res.reused else f"measured in {res.elapsed_s:.1f} s"
    console.print(
        f"calibration ({how}, {cal.threads} threads): {figures}, copy {fmt_rate(cal.copy_bytes_per_s, 'B')}"
        f" [{res.path}]",
        markup=False,
    )
    for note in res.notes:
        console.print(f"note: {note}", markup=False)
    return replace(opts, peaks=to_peaks(res))


def run_sweep(
    command: str, cases: list[Case], out: Path | None, opts: RunOptions, resume: bool,
    extra_tables: Callable[[RunResult], list[Table]] | None = None,
    calibrate: bool = True,
    recalibrate: bool = False,
) -> ExitStatus:
    """Run `cases` into <out>/results.jsonl, print the tables, and pick the exit code.

    `extra_tables` makes a command's own tables from the run; they replace the generic
    results and scaling tables (the notes met while loading the file still print).
    With `calibrate` the measured peaks (cached per machine) are loaded or measured once,
    before the first case, unless the clock is fake or `opts` already carries peaks.
    """
    if resume and out is None:
        raise BadInput("--resume needs --out: the run folder to resume")
    console = make_console()
    run_dir = out or default_run_dir(command)
    path = run_dir / RESULTS_NAME
    todo = pending_cases(cases, path) if resume else cases
    done = f" ({len(cases) - len(todo)} already in the file, skipped by --resume)" if resume else ""
    console.print(f"xfbench {command}: {len(todo)} cases to run{done} -> {path}", markup=False)
    if todo and (calibrate or recalibrate) and not opts.fake_clock and opts.peaks is None:
        if path.exists():
            load_results(path)  # a bad --out fails now, not after seconds of calibration
        opts = with_peaks(opts, todo, console, recalibrate)
    try:
        with SweepProgress(console) as progress:
            run_plan(todo, path, command=command, argv=sys.argv[1:], opts=opts, progress=progress)
    except KeyboardInterrupt:
        console.print(f"interrupted: finished cases are in {path}", markup=False)
        return ExitStatus.INTERRUPTED
    run = load_results(path)  # every report is a function of the results file
    render(run, console, tables=extra_tables(run) if extra_tables else None)
    # The outcome of the whole plan: with --resume, earlier runs' records of it count too.
    ids = {c.id for c in cases}
    planned = [r for r in latest(run.records) if r.case_id in ids]
    failed = [r for r in planned if r.status in FAILED]
    console.print(f"results: {path}", markup=False)
    if failed:
        console.print(f"{len(failed)} of {len(planned)} cases failed (exit code 3)", markup=False)
        return ExitStatus.CASES_FAILED
    return ExitStatus.OK
