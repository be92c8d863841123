"""Run a suite into one run folder: each suite case through its workload's own plan and executor.

Every suite case becomes a segment of the run folder's results.jsonl (its own header, naming the
suite, the suite case, its threshold and, under --repeat, which repeat it is), so a report, a
compare and the history read each record's suite settings from the file alone.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from ..reports.errors import BadInput
from ..reports.schema import Record, new_run_id
from ..reports.store import RESULTS_NAME
from .common import SharedOptions
from .suite_file import Suite, case_plan


@dataclasses.dataclass(frozen=True)
class SuiteOverrides:
    """What the command line changes in a suite's [run] settings (None: the suite's own).

    Args:
        device: run every case on this device.
        threads: torch intra-op threads.
        max_time: the timed phase's cap per case, in seconds.
        fake_clock: the deterministic FakeClock (tests).
        profile, memory_snapshot: profile every case (--profile, --memory-snapshot) whatever the suite says.
        isolate: run each case in a fresh child process (--isolate).
        case_timeout: end a case still running after this many seconds (--case-timeout; turns isolation on).
    """

    device: str | None = None
    threads: int | None = None
    max_time: float | None = None
    fake_clock: bool = False
    profile: bool = False
    memory_snapshot: bool = False
    isolate: bool = False
    case_timeout: float | None = None


def shared_options(suite: Suite, index: int, out: Path, over: SuiteOverrides, resume: bool) -> SharedOptions:
    """The sweep options of suite case `index`: [run], then the case's own, then the command line."""
    r, case = suite.run, suite.cases[index]
    pick = lambda own, default: default if own is None else own  # noqa: E731
    return SharedOptions(
        device=r.device if over.device is None else over.device, out=out, resume=resume,
        target_ci=pick(case.target_ci, r.target_ci),
        max_time=over.max_time if over.max_time is not None else pick(case.max_time, r.max_time),
        threads=over.threads if over.threads is not None else r.threads,
        memory=pick(case.memory, r.memory), count_flops=pick(case.count_flops, r.count_flops),
        calibrate=r.calibrate and not over.fake_clock, telemetry=r.telemetry, html=False,
        fake_clock=over.fake_clock,
        profile=over.profile or pick(case.profile, r.profile), profile_schedule=r.profile_schedule,
        profile_top=r.profile_top, profile_stack=r.profile_stack,
        memory_snapshot=over.memory_snapshot or pick(case.memory_snapshot, r.memory_snapshot),
        snapshot_entries=r.snapshot_entries, isolate=over.isolate or r.isolate,
        case_timeout=over.case_timeout if over.case_timeout is not None else r.case_timeout,
    )


def suite_plans(suite: Suite, over: SuiteOverrides) -> list[list]:
    """Every suite case's Cases, built before anything runs: a bad case fails at once (BadInput)."""
    from ..profilers.device import resolve_device
    from ..workloads.launch import outside_job

    device = suite.run.device if over.device is None else over.device  # --device "" is refused, not the suite's
    resolve_device(device)  # one clear line for a device this machine lacks
    plans = [case_plan(suite, i, device) for i in range(len(suite.cases))]
    if outside_job() is not None and any(c.workload == "parallel" for c in suite.cases):
        raise BadInput(f"{suite.source}: a suite launches its own ranks; under torchrun/srun run `xfbench parallel`")
    ids: dict[str, str] = {}
    for case, plan in zip(suite.cases, plans, strict=True):
        for c in plan:
            if c.id in ids:
                raise BadInput(f"{suite.source}: cases '{ids[c.id]}' and '{case.name}' both run {c.name} "
                               "(a case belongs to one suite case)")
            ids[c.id] = case.name
    return plans


def run_suite(
    suite: Suite, run_dir: Path, *, over: SuiteOverrides = SuiteOverrides(), plans: list[list] | None = None,
    resume: bool = False, repeat: tuple[int, int] = (1, 1), argv: list[str] | None = None, progress=None,
    on_case=None, interleaved: bool = False, stop=None,
) -> list[Record]:
    """Run every case of `suite` into run_dir/results.jsonl; returns the records measured.

    Args:
        suite: the validated suite.
        run_dir: the run folder (created).
        over: command-line overrides of the suite's [run] settings.
        plans: suite_plans(suite, over), when the caller built them already.
        resume: skip cases already finished in the results file.
        repeat: (this repeat, of how many), recorded in each header.
        progress: a runner Progress (the CLI's SweepProgress), or None.
        on_case: called with (suite case, its number of cases to run) before each suite case.
        interleaved: this run is round `repeat[0]` of an `xfbench ab`, which ran the other side's
            round next to it in time: compare may pair the two rounds (drift cancels in the pair).
        stop: an entered workloads.isolate.StopSignals: a signal stops the suite after the current case
            (isolate.Interrupted), whichever suite case it belongs to.
    """
    from ..workloads.runner import pending_cases, run_plan

    plans = plans if plans is not None else suite_plans(suite, over)
    path = run_dir / RESULTS_NAME
    suite_run = new_run_id()
    records: list[Record] = []
    for i, (case, plan) in enumerate(zip(suite.cases, plans, strict=True)):
        shared = shared_options(suite, i, run_dir, over, resume)
        todo = pending_cases(plan, path) if resume else plan
        if on_case is not None:
            on_case(case, len(todo))
        if not todo:
            continue
        opts, execute = shared.run_options(), None
        if case.workload == "parallel":  # its cases run as the ranks of launched jobs
            from ..workloads.launch import LaunchExecutor
            from .parallel import launch_job

            opts = dataclasses.replace(opts, calibrate=False)
            prior = _records(path) if resume else []
            execute = LaunchExecutor(plan, launch_job(shared, pg_timeout=case.pg_timeout or 60.0), prior=prior)
        header = {"suite": {
            "name": suite.name, "source": suite.source, "case": case.name, "workload": case.workload,
            "threshold": suite.threshold_of(case).model_dump(), "metric": suite.compare.metric,
            "repeat": repeat[0], "repeats": repeat[1], "suite_run": suite_run, "interleaved": interleaved,
        }}
        records += run_plan(todo, path, command=f"run {suite.name}", argv=argv if argv is not None else sys.argv[1:],
                            opts=opts, progress=progress, execute=execute, header_fields=header, stop=stop)
    return records


def _records(path: Path) -> list[Record]:
    from ..reports.store import load_results

    return load_results(path).records if path.exists() else []
