"""Shared tail of every sweep command: run folder, progress, run, render, exit code."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

from ..reports.store import RESULTS_NAME, load_results
from ..reports.terminal import render
from ..workloads.base import Case
from ..workloads.runner import RunOptions, pending_cases, run_plan
from .console import SweepProgress, make_console
from .status import ExitStatus

FAILED = ("oom", "error")


def default_run_dir(command: str) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return Path("runs") / f"{stamp}-{command}"


def run_sweep(command: str, cases: list[Case], out: Path | None, opts: RunOptions, resume: bool) -> ExitStatus:
    """Run `cases` into <out>/results.jsonl, print the tables, and pick the exit code."""
    console = make_console()
    run_dir = out or default_run_dir(command)
    path = run_dir / RESULTS_NAME
    todo = pending_cases(cases, path) if resume else cases
    done = f" ({len(cases) - len(todo)} already in the file, skipped by --resume)" if resume else ""
    console.print(f"xfbench {command}: {len(todo)} cases to run{done} -> {path}", markup=False)
    try:
        with SweepProgress(console) as progress:
            records = run_plan(todo, path, command=command, argv=sys.argv[1:], opts=opts, progress=progress)
    except KeyboardInterrupt:
        console.print(f"interrupted: finished cases are in {path}", markup=False)
        return ExitStatus.INTERRUPTED
    run = load_results(path)  # every report is a function of the results file
    render(run, console)
    failed = [r for r in records if r.status in FAILED]
    console.print(f"results: {path}", markup=False)
    if failed:
        console.print(f"{len(failed)} of {len(records)} cases failed (exit code 3)", markup=False)
        return ExitStatus.CASES_FAILED
    return ExitStatus.OK
