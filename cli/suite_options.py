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
SuiteIsolate = Annotated[
    bool,
    typer.Option("--isolate", help="Run each case in a fresh child process: a crash, abort, kill or hang becomes "
                 "that case's error record and the suite goes on."),
]
SuiteCaseTimeout = Annotated[
    float | None,
    typer.Option("--case-timeout", min=1.0, max=7 * 86400.0,
                 help="End a case still running after this many seconds as an error record (turns on --isolate) "
                 "[default with --isolate: 1800]."),
]
Alpha = Annotated[
    float,
    typer.Option("--alpha", min=1e-9, max=0.5, help="Mann-Whitney U level, one run a side (asv uses 0.002)."),
]
RunsAlpha = Annotated[
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
    for flag, value in (("--device", over.device), ("--threads", over.threads), ("--max-time", over.max_time),
                        ("--case-timeout", over.case_timeout)):
        if value is not None:
            argv += [flag, str(value)]
    for flag, on in (("--fake-clock", over.fake_clock), ("--profile", over.profile),
                     ("--memory-snapshot", over.memory_snapshot), ("--isolate", over.isolate)):
        if on:
            argv.append(flag)
    if interleaved:
        argv.append("--interleaved")
    return argv


def run_child(argv: list[str]) -> int:
    """Run one child (a repeat of `run --repeat`, a round of `ab`) and return its exit code.

    The child runs in a process group of its own, so a terminal's Ctrl-C reaches this process only,
    and this process passes each SIGINT and SIGTERM on to it, once: the first makes the child stop
    after its current case (it exits 130 / 143 with its records written), a second stops it at once.
    A child killed by a signal reads as 128 + the signal, as a shell reports it. If this process
    dies, the child gets SIGTERM (Linux prctl PR_SET_PDEATHSIG) and stops after its current case."""
    import signal
    import subprocess
    import threading

    proc = subprocess.Popen(argv, process_group=0, preexec_fn=_term_with_parent)

    def forward(signum, frame) -> None:
        if proc.poll() is None:
            proc.send_signal(signum)

    old = {}
    if threading.current_thread() is threading.main_thread():
        old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        rc = proc.wait()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        if proc.poll() is None:  # this process is going down (an exception): its child with it
            proc.kill()
            proc.wait()
    return 128 - rc if rc < 0 else rc


def _term_with_parent() -> None:
    """In the forked child before exec: SIGTERM when the parent dies (it runs in a group of its own)."""
    import ctypes
    import signal

    try:
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass
