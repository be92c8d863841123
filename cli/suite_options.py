"""Options `run`, `ab` and `compare` share, defined once, and the command line of one suite run in a child."""

from __future__ import annotations

from typing import Annotated

import typer

SuiteDevice = Annotated[
    str | None, typer.Option("--device", help="Run every case here (overrides the suite's [run]).")
]
SuiteThreads = Annotated[int | None, typer.Option("--threads", min=1, max=4096, help="torch intra-op threads.")]
SuiteMaxTime = Annotated[
    float | None,
    typer.Option("--max-time", min=0.0, max=86400.0, help="Cap in seconds on the timed phase of one case."),
]
SuiteProfile = Annotated[
    bool, typer.Option("--profile", help="Profile every case with torch.profiler (overrides the suite's [run]).")
]
SuiteMemorySnapshot = Annotated[
    bool, typer.Option("--memory-snapshot", help="CUDA memory snapshot of every case (overrides the suite's [run]).")
]
Alpha = Annotated[
    float,
    typer.Option("--alpha", min=1e-9, max=0.5, help="Mann-Whitney U level, one run a side (asv uses 0.002)."),
]
RunsSuiteProfile = Annotated[
    bool, typer.Option("--profile", help="Profile every case with torch.profiler (overrides the suite's [run]).")
]
SuiteMemorySnapshot = Annotated[
    bool, typer.Option("--memory-snapshot", help="CUDA memory snapshot of every case (overrides the suite's [run]).")
]
Alpha = Annotated[
    float,
    typer.Option("--runs-alpha", min=1e-9, max=0.5,
                 help="Level of the between-run t-test (both sides with several runs)."),
]
NoiseK = Annotated[
    float, typer.Option("--noise-k", min=0.0, max=100.0, help="Gate = max(threshold, K x the case's noise).")
]
AllowDifferentEnv = Annotated[
    bool,
    typer.Option("--allow-different-env",
                 help="Compare even when device, versions, threads or peaks differ (the differences are warned)."),
]


def child_argv(python: str, source: str, out, index: tuple[int, int], over, interleaved: bool = False) -> list[str]:
    """`PYTHON -m xfbench run SOURCE` as repeat `index` (i, of k) of a parent's --repeat or `ab` round,
    appending to `out`, with the parent's overrides (cli.suite_run.SuiteOverrides); the parent alone
    reports and records the history."""
    argv = [python, "-m", "xfbench", "run", source, "--out", str(out), "--repeat-index", f"{index[0]}/{index[1]}",
            "--no-history", "--no-html"]
    for flag, value in (("--device", over.device), ("--threads", over.threads), ("--max-time", over.max_time)):
        if value is not None:
            argv += [flag, str(value)]
    for flag, on in (("--fake-clock", over.fake_clock), ("--profile", over.profile),
                     ("--memory-snapshot", over.memory_snapshot)):
        if on:
            argv.append(flag)
    if interleaved:
        argv.append("--interleaved")
    return argv


def run_child(argv: list[str]) -> int:
    """Run one child and return its exit code; an interrupt (Ctrl-C reaches the child too, or it died
    of SIGINT) reads as 130, the code the parent then stops with."""
    import subprocess

    try:
        rc = subprocess.run(argv).returncode
    except KeyboardInterrupt:
        return 130
    return 130 if rc == -2 else rc  # -2: killed by SIGINT before it could exit 130 itself
