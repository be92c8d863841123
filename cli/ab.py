"""`xfbench ab`: run a suite alternately under two Python environments (A B B A A B ...), then compare.

Each round runs the suite once under A and once under B, each in a fresh process
(`PYTHON -m xfbench run SUITE --repeat-index R/K`), appending to OUT/a and OUT/b; odd rounds run
A first, even rounds B first. Slow drift of the machine over the job (a neighbour's load, the
CPU's temperature) then falls on both sides alike instead of on whichever side ran second: the
rounds are compared paired, and a steady drift that made B look slower in one round (B ran
later) makes it look faster in the next (B ran first), so it cancels instead of reading as a
change. The comparison is `xfbench compare OUT/a OUT/b`: with K >= 2 rounds both sides have
repeats, so the gate allows for the spread between runs.
"""

from pathlib import Path

import typer

from .parse import folder_path
from .status import ExitStatus
from .suite_options import AllowDifferentEnv, Alpha, NoiseK, RunsAlpha, SuiteDevice, SuiteMaxTime, SuiteThreads

MAX_ROUNDS = 50


def ab(
    suite: str = typer.Argument(..., help="A built-in suite (see `xfbench suites`) or a suite file (.toml)."),
    a: str = typer.Option(..., "--a", help="Python of side A, the baseline (its environment has xfbench installed)."),
    b: str = typer.Option(..., "--b", help="Python of side B, the candidate (e.g. the pull request's install)."),
    rounds: int = typer.Option(
        5, "--rounds", min=1, max=MAX_ROUNDS,
        help="Rounds: each runs A once and B once, odd rounds A first, even rounds B first (5: a 10% change "
        "shows on a noisy 2-core VM; see README).",
    ),
    out: Path | None = typer.Option(
        None, "--out", parser=folder_path, help="Folder for a/ and b/ [default: runs/<UTC time>-ab-<suite>]."
    ),
    device: SuiteDevice = None,
    threads: SuiteThreads = None,
    max_time: SuiteMaxTime = None,
    threshold: str | None = typer.Option(
        None, "--threshold", help="Regression threshold: '5%' or '2ms' [default: each suite case's]."
    ),
    metric: str | None = typer.Option(None, "--metric", help="time, tokens_per_s or peak_mem [default: the suite's]."),
    markdown: Path | None = typer.Option(None, "--markdown", help="Write the comparison as Markdown here."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the comparison as JSON here."),
    github_benchmark: Path | None = typer.Option(
        None, "--github-benchmark", help="Write B's results in github-action-benchmark's custom JSON format here."
    ),
    allow_different_env: AllowDifferentEnv = False,
    alpha: Alpha = 0.002,
    runs_alpha: RunsAlpha = 0.01,
    noise_k: NoiseK = 1.0,
    fake_clock: bool = typer.Option(False, "--fake-clock", hidden=True),
) -> ExitStatus:
    """Run a suite alternately under two Python environments (A B A B ...) and compare."""

    from ..reports.errors import BadInput
    from .compare import compare_and_report
    from .console import make_console
    from .suite_file import load_suite
    from .suite_options import child_argv, run_child
    from .suite_run import SuiteOverrides
    from .sweep import default_run_dir

    spec = load_suite(suite)  # checked here once, before any run
    over = SuiteOverrides(device=device, threads=threads, max_time=max_time, fake_clock=fake_clock)
    pythons = {"A": a, "B": b}
    for side, python in pythons.items():
        _check_python(side, python)
    folder = out or default_run_dir(f"ab-{spec.name}")
    dirs = {"A": folder / "a", "B": folder / "b"}
    for d in dirs.values():
        if (d / "results.jsonl").exists():
            raise BadInput(f"{d} already holds results; give a new --out for this A/B")
    from ..reports.writer import refuse_existing

    # before the first round, not after the last: an existing --json is refused before anything runs
    refuse_existing([("--json", json_out), ("--github-benchmark", github_benchmark)], force=False)
    console = make_console()
    console.print(f"xfbench ab {spec.name}: {rounds} rounds of A ({a}) and B ({b}), A B B A ... -> {folder}",
                  markup=False)
    source = spec.source.removeprefix("builtin:") if spec.source.startswith("builtin:") else str(Path(suite).resolve())
    for r in range(1, rounds + 1):
        for side in ("A", "B") if r % 2 else ("B", "A"):  # A B | B A | A B ...: a steady drift cancels
            argv = child_argv(pythons[side], source, dirs[side], (r, rounds), over, interleaved=True)
            console.print(f"round {r}/{rounds}, side {side}", markup=False)
            rc = run_child(argv)
            if rc in (int(ExitStatus.INTERRUPTED), int(ExitStatus.TERMINATED)):
                console.print(f"interrupted in round {r}, side {side}: finished runs are in {folder}", markup=False)
                return ExitStatus(rc)
            if rc == int(ExitStatus.BAD_INPUT):  # e.g. the suite or an option that side's xfbench refuses
                console.print(f"round {r}, side {side}: its xfbench refused the run (exit 2); stopping", markup=False)
                return ExitStatus.BAD_INPUT
            if rc not in (0, int(ExitStatus.CASES_FAILED)):  # it crashed: the runs so far are kept
                console.print(f"round {r}, side {side} exited with code {rc}; stopping (runs so far are in {folder})",
                              markup=False)
                return ExitStatus.CASES_FAILED
    return compare_and_report(
        dirs["A"], dirs["B"], console=console, threshold=threshold, metric=metric, markdown=markdown,
        json_out=json_out, github_benchmark=github_benchmark, names=("A", "B"), alpha=alpha,
        runs_alpha=runs_alpha, noise_k=noise_k, allow_different_env=allow_different_env, history_noise=False,
    )


def _check_python(side: str, python: str) -> None:
    """BadInput unless `python` runs and imports an xfbench (one line naming the side)."""
    import subprocess

    from ..reports.errors import BadInput

    try:
        res = subprocess.run([python, "-m", "xfbench", "--version"], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise BadInput(f"--{side.lower()} {python}: cannot run it ({e})") from None
    if res.returncode != 0 or not res.stdout.startswith("xfbench "):
        last = (res.stderr.strip().splitlines() or ["no output"])[-1]
        raise BadInput(f"--{side.lower()} {python}: `-m xfbench --version` failed ({last}); install xfbench there")
