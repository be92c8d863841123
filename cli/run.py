"""`xfbench run SUITE|FILE.toml`: run a suite into one run folder; --repeat K in K fresh processes.

SIGINT and SIGTERM stop the run after the current case (a second signal: at once); the report of
what was measured is written as at a normal end, one line says what was kept, exit 130 / 143.
Under --repeat the parent passes each signal on to the repeat running (suite_options.run_child).
"""

from pathlib import Path

import typer

from .parse import folder_path
from .status import ExitStatus
from .suite_options import (
    SuiteCaseTimeout,
    SuiteDevice,
    SuiteIsolate,
    SuiteMaxTime,
    SuiteMemorySnapshot,
    SuiteProfile,
    SuiteThreads,
)

MAX_REPEAT = 100


def run(
    suite: str = typer.Argument(..., help="A built-in suite (see `xfbench suites`) or a suite file (.toml)."),
    out: Path | None = typer.Option(
        None, "--out", parser=folder_path, help="Run folder [default: runs/<UTC time>-<suite>]."
    ),
    repeat: int = typer.Option(
        1, "--repeat", min=1, max=MAX_REPEAT,
        help="Run the suite K times, each in a fresh process, into the same folder: `compare` then sees the "
        "spread between runs (the noise that samples inside one run cannot see).",
    ),
    resume: bool = typer.Option(False, "--resume", help="Skip cases already finished in --out's results file."),
    force: bool = typer.Option(
        False, "--force", help="Start a new run in an --out that already holds one (its files are kept as *.bak; "
        "without --force or --resume such an --out is refused).",
    ),
    device: SuiteDevice = None,
    threads: SuiteThreads = None,
    max_time: SuiteMaxTime = None,
    profile: SuiteProfile = False,
    memory_snapshot: SuiteMemorySnapshot = False,
    isolate: SuiteIsolate = False,
    case_timeout: SuiteCaseTimeout = None,
    db: Path | None = typer.Option(
        None, "--db", help="History database (SQLite) this run is recorded into [default: the user data folder; "
        "$XFBENCH_HISTORY_DB]."
    ),
    history: bool = typer.Option(True, "--history/--no-history", help="Record the run into the history database."),
    html: bool | None = typer.Option(None, "--html/--no-html", help="Write report.html [default: the suite's]."),
    fake_clock: bool = typer.Option(False, "--fake-clock", hidden=True),
    repeat_index: str | None = typer.Option(None, "--repeat-index", hidden=True, help="I/K: one repeat (a child)."),
    interleaved: bool = typer.Option(False, "--interleaved", hidden=True, help="A round of `xfbench ab`."),
) -> ExitStatus:
    """Run a suite (built-in or a TOML file) into one run folder, with one report."""
    from ..reports.errors import BadInput
    from .common import check_force_resume
    from .console import make_console
    from .suite_file import load_suite
    from .suite_run import SuiteOverrides, suite_plans

    spec = load_suite(suite)  # the file and the options first: torch is not imported yet, so a typo is told at once
    if resume and out is None:
        raise BadInput("--resume needs --out: the run folder to resume")
    check_force_resume(force, resume)
    if resume and repeat > 1:
        raise BadInput("--resume and --repeat: a repeat runs every case again; resume one repeat at a time")
    over = SuiteOverrides(device=device, threads=threads, max_time=max_time, fake_clock=fake_clock,
                          profile=profile, memory_snapshot=memory_snapshot, isolate=isolate, case_timeout=case_timeout)
    plans = suite_plans(spec, over)  # every case checked before anything runs
    from .sweep import claim_run_folder, default_run_dir

    run_dir = out or default_run_dir(f"run-{spec.name}")
    from .output import results_at

    results_at(run_dir / "results.jsonl")  # named if stdout stops taking output
    console = make_console()
    if repeat_index is None:  # appended runs would count as repeats of this one in `compare`
        for line in claim_run_folder(run_dir, resume=resume, force=force):
            console.print(line, markup=False)
    total = sum(len(p) for p in plans)
    if repeat_index is not None:  # one repeat of a parent's --repeat: measure, append, leave the rest to it
        index = _repeat_index(repeat_index)
        console.print(f"repeat {index[0]} of {index[1]}: suite {spec.name}, {total} cases", markup=False)
        return _measure(spec, run_dir, over, plans, console, resume=False, repeat=index, interleaved=interleaved)
    console.print(f"xfbench run {spec.name}: {len(spec.cases)} suite cases, {total} cases"
                  + (f", {repeat} repeats in fresh processes" if repeat > 1 else "")
                  + f" -> {run_dir / 'results.jsonl'}", markup=False)
    if repeat == 1:
        status, at = _measure(spec, run_dir, over, plans, console, resume=resume, repeat=(1, 1)), 1
    else:
        status, at = _repeat(suite, spec, run_dir, repeat, over, console)
    stopped = status in (ExitStatus.INTERRUPTED, ExitStatus.TERMINATED)
    planned = {c.id for p in plans for c in p}
    results = run_dir / "results.jsonl"
    if status == ExitStatus.BAD_INPUT or not results.exists():
        if stopped:
            console.print(_interrupted_line(status, run_dir, planned, repeat, at), markup=False, soft_wrap=True)
        return status
    end = _finish(spec, run_dir, console, status, html=spec.output.html if html is None else html,
                  history=history and not fake_clock, db=db, planned=planned)
    if stopped:
        console.print(_interrupted_line(status, run_dir, planned, repeat, at), markup=False, soft_wrap=True)
        return status
    return end


def _interrupted_line(status: ExitStatus, run_dir: Path, planned: set, repeat: int, at: int) -> str:
    """The one line an interrupted suite run ends with: what was kept and how to finish it."""
    import sys

    from ..reports.store import load_results
    from .sweep import interrupted_line, resume_command

    signame = "SIGTERM" if status == ExitStatus.TERMINATED else "SIGINT"
    path = run_dir / "results.jsonl"
    records = load_results(path).records if path.is_file() else []
    if repeat == 1:
        kept = len({r.case_id for r in records if r.case_id in planned})
        return interrupted_line(15 if status == ExitStatus.TERMINATED else 2, kept, len(planned), path,
                                resume_command(sys.argv[1:], run_dir))
    return (f"interrupted ({signame}) in repeat {at} of {repeat}: {len(records)} records ({at - 1} whole repeats) "
            f"are in {path}; a --repeat run cannot be resumed: run it again with a new --out")


def _repeat_index(text: str) -> tuple[int, int]:
    from ..reports.errors import BadInput

    i, _, k = text.partition("/")
    if not (i.isdigit() and k.isdigit() and 1 <= int(i) <= int(k)):
        raise BadInput(f"--repeat-index: '{text}' must be I/K with 1 <= I <= K")
    return int(i), int(k)


def _measure(spec, run_dir, over, plans, console, *, resume, repeat, interleaved=False) -> ExitStatus:
    """One run of the suite in this process."""
    from .console import SweepProgress
    from .suite_run import run_suite
    from .sweep import stop_signals

    def announce(case, n):
        console.print(f"suite case '{case.name}' ({case.workload}): {n} cases", markup=False)

    stop = stop_signals(console)
    try:
        with stop, SweepProgress(console) as progress:
            records = run_suite(spec, run_dir, over=over, plans=plans, resume=resume, repeat=repeat,
                                progress=progress, on_case=announce, interleaved=interleaved, stop=stop)
    except KeyboardInterrupt as e:  # isolate.Interrupted, or one raised on the way (a calibration's)
        return ExitStatus.for_signal(getattr(e, "signum", None) or stop.signum or 2)
    failed = [r for r in records if r.status in ("oom", "error")]
    return ExitStatus.CASES_FAILED if failed else ExitStatus.OK


def _repeat(source: str, spec, run_dir, repeat: int, over, console) -> tuple[ExitStatus, int]:
    """K runs of the suite, each in a fresh `python -m xfbench run` process appending to run_dir;
    the outcome and the repeat it ended in."""
    import sys

    from .suite_options import child_argv, run_child

    worst = ExitStatus.OK
    for i in range(1, repeat + 1):
        argv = child_argv(sys.executable, source, run_dir, (i, repeat), over)
        rc = run_child(argv)
        if rc in (int(ExitStatus.INTERRUPTED), int(ExitStatus.TERMINATED)):
            return ExitStatus(rc), i
        if rc == int(ExitStatus.CASES_FAILED):
            worst = ExitStatus.CASES_FAILED
        elif rc != 0:
            console.print(f"repeat {i} of {repeat} exited with code {rc}; stopping (finished runs are in {run_dir})",
                          markup=False)
            return (ExitStatus.BAD_INPUT if rc == int(ExitStatus.BAD_INPUT) else ExitStatus.CASES_FAILED), i
    return worst, repeat


def _finish(spec, run_dir: Path, console, status: ExitStatus, *, html: bool, history: bool, db, planned: set):
    """Print the run's document, write its reports, record it into the history."""
    from ..reports.document import build_document
    from ..reports.markdown import render as render_markdown
    from ..reports.render import generated_utc
    from ..reports.select import latest
    from ..reports.store import load_results
    from ..reports.terminal import print_document
    from ..reports.writer import write_output
    from .sweep import write_html_report

    run = load_results(run_dir)
    print_document(build_document(run), console)  # with repeats, its "Between runs" section too
    console.print(f"results: {run_dir / 'results.jsonl'}", markup=False)
    if html:
        write_html_report(run, run_dir, console)
    if spec.output.markdown:
        path = write_output(render_markdown(run, generated_utc=generated_utc()), run_dir / "summary.md")
        console.print(f"markdown: {path}", markup=False)
    if spec.output.csv:
        from ..reports.csv_report import render as render_csv

        path = write_output(render_csv(run), run_dir / "results.csv")
        console.print(f"csv: {path}", markup=False)
    if history:
        from .sweep import record_history

        record_history(run, run_dir, db, console, suite=spec.name)
    failed = [r for r in latest(run.records) if r.case_id in planned and r.status in ("oom", "error")]
    if failed:
        console.print(f"{len(failed)} cases failed (exit code 3)", markup=False)
        return ExitStatus.CASES_FAILED
    return status
