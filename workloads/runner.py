"""The runner loop: Case -> prepare -> profilers.measure -> Record -> sink.

Failures are data: an out-of-memory or an error becomes that case's Record, larger
sizes of an out-of-memory series are skipped with the reason, and the sweep goes on.
What a sweep needs once (threads, allocator policy, NVML telemetry, its idle baseline,
the calibrated peaks MFU divides by) is set up here, in the library, so calling
run_plan or run_cases from Python gives the same records as the CLI.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import torch

from .. import __version__
from ..profilers.contention import usable_cores
from ..profilers.cpu import fix_malloc_policy
from ..profilers.device import release_cached_memory, resolve_device, use_device
from ..profilers.env import collect_environment, cpu_governor, provenance
from ..profilers.measure import MeasureOptions, measure
from ..profilers.memory import is_oom, memory_cap
from ..profilers.roofline import Peaks
from ..profilers.specs import MIG_NO_SPEC
from ..profilers.telemetry import open_telemetry
from ..profilers.timer import TimerPolicy
from ..profilers.torch_profile import ProfileOptions
from ..profilers.warnings import environment_warnings, hints
from ..reports.schema import Header, Measurement, Record, new_run_id
from ..reports.store import ResultsWriter, load_results
from . import get_workload
from .base import Case, SkipCase


class Progress(Protocol):
    def start(self, case: Case, index: int, total: int) -> None: ...

    def finish(self, record: Record) -> None: ...

    def note(self, text: str) -> None: ...


class Executor(Protocol):
    """Runs one case and returns its Record and whether it ran out of memory."""

    def __call__(self, case: Case, sweep: Sweep) -> tuple[Record, bool]: ...


class NullProgress:
    def start(self, case: Case, index: int, total: int) -> None:
        pass

    def finish(self, record: Record) -> None:
        pass

    def note(self, text: str) -> None:
        pass


@dataclass(frozen=True)
class RunOptions:
    """How to run a plan.

    Args:
        policy: timer stopping rules.
        threads: torch intra-op threads, set before the first case and recorded.
        measure_memory: run the separate peak-memory pass.
        mem_limit_bytes: optional cap on memory beyond what is in use at the start.
        fake_clock: deterministic FakeClock instead of the real one (tests, --fake-clock); a
            fake run repeats exactly, so it neither calibrates nor reads other processes' load.
        calibrate: measure MFU and roofline against this machine's calibrated peaks (cached
            per machine; a sweep's first calibration is the quick one); ignored when `peaks`
            is given or the clock is fake.
        recalibrate: measure the peaks again instead of reading the cache.
        peaks: peaks to measure against, given by the caller (skips calibration).
        peak_flops_override: the user's peak in FLOP/s (--peak-tflops); replaces the
            spec-sheet peak in mfu_spec.
        telemetry: sample NVML around each timed window (energy, power, clocks).
        idle_baseline: measure the idle device's power once (before calibrating, so the
            device is cool) and subtract it from energy.
        count_flops: run each step once more under FlopCounterMode (outside timing) and
            record counted FLOPs against the work the implementation dispatches.
        profile: the torch.profiler / memory-snapshot passes (profilers.torch_profile.
            ProfileOptions); their files go under the run folder (run_plan sets it), per case.
    """

    policy: TimerPolicy = TimerPolicy()
    threads: int | None = None
    measure_memory: bool = True
    mem_limit_bytes: int | None = None
    fake_clock: bool = False
    calibrate: bool = True
    recalibrate: bool = False
    peaks: Peaks | None = None
    peak_flops_override: float | None = None
    telemetry: bool = True
    idle_baseline: bool = False
    count_flops: bool = False
    profile: ProfileOptions | None = None


@dataclass
class Sweep:
    """What is set up once per sweep and shared by its cases (see open_sweep).

    Args:
        device: the cases' device.
        measure: the options every case is measured with (telemetry, peaks, warnings).
        calibration: the calibration summary for the results header (None: none used).
        allocator: the CPU malloc policy that was pinned (None on CUDA).
        run_id: the run the records are written under (run_plan sets it; it names the
            folder of the cases' profiler files).
    """

    device: torch.device
    measure: MeasureOptions
    calibration: dict | None = None
    allocator: str | None = None
    run_id: str | None = None

    def case_options(self, case: Case) -> MeasureOptions:
        """The options `case` is measured with: the sweep's, its profiler files in its own folder."""
        if self.measure.profile is None:
            return self.measure
        return replace(self.measure, profile=self.measure.profile.for_case(self.run_id, case.id))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _calibrate(device: torch.device, cases: list[Case], opts: RunOptions, progress: Progress) -> Peaks:
    """The peaks for the cases' device, compute dtypes and threads: from the cache, or measured now
    (a sweep's own calibration is the quick one; `xfbench env --calibrate` makes the full one)."""
    from ..profilers.calibrate import peaks_for
    from ..reports.units import fmt_flops, fmt_rate

    peaks, res = peaks_for(
        device, {c.params.get("dtype") for c in cases}, threads=opts.threads, recalibrate=opts.recalibrate
    )
    cal = res.calibration
    figures = ", ".join(f"{d} {fmt_flops(f)}" for d, f in peaks.measured_flop_per_s.items())
    bandwidths = ", ".join(f"{k} {fmt_rate(cal.bytes_per_s(k), 'B')}" for k in ("read", "copy"))
    how = "cached" if res.reused else f"measured in {res.elapsed_s:.1f} s"
    progress.note(f"calibration ({cal.level}, {how}, {cal.threads} threads): {figures}; {bandwidths} [{res.path}]")
    for note in res.notes:
        progress.note(f"note: {note}")
    return peaks


def open_sweep(cases: list[Case], opts: RunOptions, progress: Progress | None = None) -> Sweep:
    """Set up what the cases share: threads, device, allocator policy, telemetry, idle baseline, peaks.

    The caller closes it (close_sweep) after the last case.
    """
    progress = progress or NullProgress()
    torch.set_num_threads(opts.threads or torch.get_num_threads())  # explicit, and recorded per case
    device = resolve_device(cases[0].device) if cases else torch.device("cpu")
    use_device(device)  # streams, events and graph capture use the current device
    allocator = fix_malloc_policy() if device.type == "cpu" else None
    telemetry = open_telemetry(device, opts.telemetry and not opts.fake_clock)
    mopts = MeasureOptions(
        policy=opts.policy, fake_clock=opts.fake_clock, memory=opts.measure_memory, count_flops=opts.count_flops,
        telemetry=telemetry, peaks=opts.peaks, peak_flops_override=opts.peak_flops_override, profile=opts.profile,
        env_warnings=tuple(
            environment_warnings(cpu_governor(), torch.get_num_threads(), usable_cores()) if not opts.fake_clock else ()
        ),
    )
    try:
        if opts.idle_baseline and not opts.fake_clock:  # before calibrating: its GEMMs heat the device
            mopts.idle_power_w, mopts.idle_method = telemetry.idle_power()
        if mopts.peaks is None and opts.calibrate and not opts.fake_clock and cases:
            mopts.peaks = _calibrate(device, cases, opts, progress)
    except BaseException:  # NVML counts its initialisations: hand this one back before failing
        telemetry.close()
        raise
    if mopts.peaks is not None and telemetry.mig:  # NVML knows a MIG slice even when its name does not say so
        mopts.peaks = replace(mopts.peaks, spec=None, spec_reason=MIG_NO_SPEC)
    calibration = None
    if mopts.peaks is not None or opts.peak_flops_override:
        calibration = mopts.peaks.summary() if mopts.peaks is not None else {}
        calibration["peak_flops_override"] = opts.peak_flops_override
    return Sweep(device, mopts, calibration, allocator)


def close_sweep(sweep: Sweep) -> None:
    if sweep.measure.telemetry is not None:
        sweep.measure.telemetry.close()


def case_record(case: Case, status: str, reason: str | None = None, m: Measurement | None = None, **kw) -> Record:
    fields = dict(m) if m is not None else {}
    return Record(
        case_id=case.id, workload=case.workload, label=case.label, variant=case.variant,
        size=case.size, size_name=case.size_name, params=case.params, device=case.device,
        status=status, reason=reason, **fields, **kw,
    )


def run_one(case: Case, sweep: Sweep) -> tuple[Record, bool]:
    """Run one case; returns its record and whether it ran out of memory."""
    device = resolve_device(case.device)
    mopts = sweep.case_options(case)
    step = None
    try:
        step = get_workload(case.workload).prepare(case, device)
        return case_record(case, "ok", m=measure(step, device, mopts)), False
    except SkipCase as e:
        return case_record(case, "skipped", str(e)), False
    except Exception as e:  # failures are data: the sweep goes on
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        reason = f"{type(e).__name__}: {first}"[:500]
        oom = is_oom(e)
        del e  # its traceback holds the step's tensors
    finally:
        if step is not None:
            step.close()
        del step
        gc.collect()
        release_cached_memory(device)
    rec = case_record(case, "oom" if oom else "error", reason)
    if oom and mopts.profile is not None and mopts.profile.memory_snapshot:
        rec.profile = _snapshot_at_oom(case, device, mopts)
    return rec, oom


def _snapshot_at_oom(case: Case, device: torch.device, mopts: MeasureOptions) -> dict:
    """--memory-snapshot on a case that ran out of memory: prepare it and call its step once more,
    with the allocator's history on, and dump the snapshot at the failure."""
    from ..profilers.torch_profile import snapshot_on_oom

    def attempt() -> None:
        step = get_workload(case.workload).prepare(case, device)
        try:
            step.run()
        finally:
            step.close()

    try:
        return snapshot_on_oom(attempt, device, mopts.profile)
    finally:
        gc.collect()
        release_cached_memory(device)


def run_cases(
    cases: Iterable[Case],
    sink: Callable[[Record], None],
    opts: RunOptions = RunOptions(),
    progress: Progress | None = None,
    oom_at: dict[tuple, float] | None = None,
    *,
    sweep: Sweep | None = None,
    run_id: str | None = None,
    execute: Executor | None = None,
) -> list[Record]:
    """Measure every case in order, handing each Record to `sink` as soon as it exists.

    `oom_at` (series -> smallest size that ran out of memory) seeds the skip rule, e.g. from
    the records of an earlier run that this one resumes. `sweep` is an opened sweep (run_plan
    opens it before writing the header); without one it is opened and closed here. `execute`
    runs one case (default: prepare and measure it in this process; data-parallel cases
    run as the ranks of a launched job, workloads.launch).
    """
    cases = list(cases)
    progress = progress or NullProgress()
    own = sweep is None
    sweep = sweep or open_sweep(cases, opts, progress)
    sweep.run_id = sweep.run_id or run_id
    oom_at = dict(oom_at or {})
    execute = execute or run_one
    records = []
    try:
        with memory_cap(sweep.device, opts.mem_limit_bytes) as cap:
            for i, case in enumerate(cases):
                progress.start(case, i, len(cases))
                t0, started = time.perf_counter(), _now()
                if case.series in oom_at and case.size > oom_at[case.series]:
                    rec = case_record(
                        case, "skipped",
                        f"{case.variant} ran out of memory at {case.size_name}={oom_at[case.series]}",
                    )
                else:
                    rec, oom = execute(case, sweep)
                    if oom:
                        oom_at[case.series] = min(case.size, oom_at.get(case.series, case.size))
                if rec.status == "ok":
                    rec.info.update(cpu_malloc=sweep.allocator, mem_limit=cap)
                    peaks = sweep.measure.peaks
                    rec.info["calibration"] = peaks.source if peaks is not None else None
                rec.run_id, rec.started_utc, rec.wall_s = run_id, started, time.perf_counter() - t0
                sink(rec)
                records.append(rec)
                progress.finish(rec)
    finally:
        if own:
            close_sweep(sweep)
    return records


# Statuses that need no re-run on --resume (an error may be transient, so it is re-run).
DONE_STATUSES = ("ok", "oom", "skipped")


def pending_cases(cases: Iterable[Case], results_path: Path) -> list[Case]:
    """The cases without a finished record in `results_path` (all of them if it is absent)."""
    cases = list(cases)
    if not results_path.exists():
        return cases
    done = {r.case_id for r in load_results(results_path).records if r.status in DONE_STATUSES}
    return [c for c in cases if c.id not in done]


def run_plan(
    cases: Iterable[Case],
    results_path: Path,
    *,
    command: str,
    argv: list[str] | None = None,
    opts: RunOptions = RunOptions(),
    progress: Progress | None = None,
    execute: Executor | None = None,
    header_fields: dict | None = None,
) -> list[Record]:
    """Run a plan into a results file (header first, then one line per case as it ends).

    The header names this run (run_id, which every record repeats), xfbench's own version
    and commit, the user's working directory's repository, the environment and the
    calibration used; `header_fields` adds to it (a suite run's `suite`). Returns the records
    measured by this call.
    """
    cases = list(cases)
    if not cases:  # nothing left to run (a --resume of a finished plan): no empty segment
        return []
    prior = load_results(results_path).records if results_path.exists() else []
    if opts.profile is not None:  # profiler files go into the run folder, paths relative to it
        opts = replace(opts, profile=replace(opts.profile, run_dir=results_path.parent.resolve()))
    sweep = open_sweep(cases, opts, progress)
    try:
        run_id = sweep.run_id = new_run_id()
        header = Header(
            run_id=run_id, tool_version=__version__, created_utc=_now(), command=command, argv=list(argv or []),
            **provenance(), environment=collect_environment(calibration=sweep.calibration), warning_hints=hints(),
            **(header_fields or {}),
        )
        with ResultsWriter(results_path, header) as writer:
            return run_cases(
                cases, writer.append, opts, progress, oom_at=oom_sizes(prior), sweep=sweep, run_id=run_id,
                execute=execute,
            )
    finally:
        close_sweep(sweep)


def oom_sizes(records: Iterable[Record]) -> dict[tuple, float]:
    """Series -> smallest size with an out-of-memory record (the key is Case.series)."""
    out: dict[tuple, float] = {}
    for r in records:
        if r.status == "oom":
            key = (r.workload, r.label, r.variant)
            out[key] = min(r.size, out.get(key, r.size))
    return out
