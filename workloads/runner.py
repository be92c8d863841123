"""The runner loop: Case -> prepare -> profilers.measure -> Record -> sink.

Failures are data: an out-of-memory or an error becomes that case's Record, larger
sizes of an out-of-memory series are skipped with the reason, and the sweep goes on.
What a sweep needs once (threads, allocator policy, NVML telemetry, its idle baseline,
the calibrated peaks MFU divides by) is set up here, in the library, so calling
run_plan or run_cases from Python gives the same records as the CLI.

With RunOptions.isolate each case, and the calibration, runs in a fresh child process
(workloads.isolate): a crash, an abort, a kill or a hang becomes that case's record. A
StopSignals (workloads.isolate) makes SIGINT/SIGTERM stop the sweep after the current case.
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
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
from ..reports.store import ResultsWriter, RunLock, load_index
from . import get_workload
from .base import Case, SkipCase
from .isolate import DEFAULT_CASE_TIMEOUT_S, NoStop, StopSignals

# Written into every ok record's info: how its process was set up.
IN_PROCESS = "in the sweep's process"
ISOLATED = "a fresh child process of its own (python -m xfbench.workloads.isolate)"


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
        isolate: run each case, and the calibration, in a fresh child process (workloads.isolate);
            the parent holds no CUDA context. Data-parallel cases run as launched ranks anyway.
        case_timeout_s: end a case still running after this long (from its child's start-up on)
            as an error record; giving it turns isolation on (a timeout needs a child to kill).
            None with isolation: DEFAULT_CASE_TIMEOUT_S. A launch of ranks is bounded too.
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
    isolate: bool = False
    case_timeout_s: float | None = None

    @property
    def isolated(self) -> bool:
        return self.isolate or self.case_timeout_s is not None

    @property
    def timeout_s(self) -> float | None:
        """The case timeout in force (None: none, in-process without --case-timeout)."""
        if self.case_timeout_s is not None:
            return self.case_timeout_s
        return DEFAULT_CASE_TIMEOUT_S if self.isolate else None


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
        options: the RunOptions it was opened with (an isolated case's child reads them).
        environment: the environment the setup child collected (isolated: this process does not
            look at the device itself), or None.
    """

    device: torch.device
    measure: MeasureOptions
    calibration: dict | None = None
    allocator: str | None = None
    run_id: str | None = None
    options: RunOptions = field(default_factory=RunOptions)
    environment: dict | None = None

    @property
    def case_timeout_s(self) -> float | None:
        return self.options.timeout_s

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

    The caller closes it (close_sweep) after the last case. Isolated (opts.isolated), what needs the
    device runs in a setup child instead (_open_isolated).
    """
    progress = progress or NullProgress()
    torch.set_num_threads(opts.threads or torch.get_num_threads())  # explicit, and recorded per case
    device = resolve_device(cases[0].device) if cases else torch.device("cpu")
    if opts.isolated:
        return _open_isolated(device, cases, opts, progress)
    use_device(device)  # streams, events and graph capture use the current device
    allocator = fix_malloc_policy() if device.type == "cpu" else None
    telemetry = open_telemetry(device, opts.telemetry and not opts.fake_clock)
    mopts = MeasureOptions(
        policy=opts.policy, fake_clock=opts.fake_clock, memory=opts.measure_memory, count_flops=opts.count_flops,
        telemetry=telemetry, peaks=opts.peaks, peak_flops_override=opts.peak_flops_override, profile=opts.profile,
        env_warnings=_env_warnings(opts),
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
    return Sweep(device, mopts, _calibration(mopts, opts), allocator, options=opts)


def _calibration(mopts: MeasureOptions, opts: RunOptions) -> dict | None:
    """The calibration summary for the results header (None: none used)."""
    if mopts.peaks is None and not opts.peak_flops_override:
        return None
    calibration = mopts.peaks.summary() if mopts.peaks is not None else {}
    calibration["peak_flops_override"] = opts.peak_flops_override
    return calibration


def _env_warnings(opts: RunOptions) -> tuple:
    if opts.fake_clock:
        return ()
    return tuple(environment_warnings(cpu_governor(), torch.get_num_threads(), usable_cores()))


def _open_isolated(device: torch.device, cases: list[Case], opts: RunOptions, progress: Progress) -> Sweep:
    """open_sweep for isolated cases: the idle baseline, the calibration and the environment come from
    a setup child (this process never holds a CUDA context); each case's child opens its own telemetry,
    pins its own allocator and sets its own memory cap (isolate._case_child)."""
    from .isolate import peaks_from, run_child

    mopts = MeasureOptions(
        policy=opts.policy, fake_clock=opts.fake_clock, memory=opts.measure_memory, count_flops=opts.count_flops,
        peaks=opts.peaks, peak_flops_override=opts.peak_flops_override, profile=opts.profile,
        env_warnings=_env_warnings(opts),
    )
    calibrate = mopts.peaks is None and opts.calibrate and not opts.fake_clock and bool(cases)
    idle = opts.idle_baseline and not opts.fake_clock
    environment = None
    if calibrate or idle or device.type == "cuda":
        request = {"kind": "setup", "opts": opts, "cases": cases, "threads": torch.get_num_threads(),
                   "device": str(device), "calibrate": calibrate, "idle_baseline": idle}
        done = run_child(request, name="setup", timeout_s=opts.timeout_s)
        if done.reply is None:
            raise RuntimeError(f"the sweep's setup (calibration) failed in its child: {done.reason}")
        reply = done.reply
        for note in reply["notes"]:
            progress.note(note)
        mopts.idle_power_w, mopts.idle_method = reply["idle_power_w"], reply["idle_method"]
        if reply["peaks"] is not None:
            mopts.peaks = peaks_from(reply["peaks"])
        if mopts.peaks is not None and reply.get("mig"):
            mopts.peaks = replace(mopts.peaks, spec=None, spec_reason=MIG_NO_SPEC)
        environment = reply["environment"]
    allocator = fix_malloc_policy() if device.type == "cpu" else None  # this process's (each child pins its own)
    return Sweep(device, mopts, _calibration(mopts, opts), allocator, options=opts, environment=environment)


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


@dataclass
class Outcome:
    """What measuring one case gave, before it is a Record (serializable: an isolated child returns it).

    Args:
        status: 'ok', 'skipped', 'oom' or 'error'.
        reason: why it is not ok.
        measurement: the Measurement of an ok case.
        oom: it ran out of memory (its series' larger sizes are skipped).
        profile: the memory snapshot taken at an out-of-memory error (--memory-snapshot).
    """

    status: str
    reason: str | None = None
    measurement: Measurement | None = None
    oom: bool = False
    profile: dict | None = None


def measure_here(case: Case, device: torch.device, mopts: MeasureOptions) -> Outcome:
    """Prepare and measure one case in this process (the sweep's, or an isolated case's child)."""
    step = None
    try:
        step = get_workload(case.workload).prepare(case, device)
        return Outcome("ok", measurement=measure(step, device, mopts))
    except SkipCase as e:
        return Outcome("skipped", str(e))
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
    out = Outcome("oom" if oom else "error", reason, oom=oom)
    if oom and mopts.profile is not None and mopts.profile.memory_snapshot:
        out.profile = _snapshot_at_oom(case, device, mopts)
    return out


def outcome_record(case: Case, out: Outcome) -> Record:
    rec = case_record(case, out.status, out.reason, m=out.measurement)
    if out.profile is not None:
        rec.profile = out.profile
    return rec


def run_one(case: Case, sweep: Sweep) -> tuple[Record, bool]:
    """Run one case in this process; returns its record and whether it ran out of memory."""
    out = measure_here(case, resolve_device(case.device), sweep.case_options(case))
    return outcome_record(case, out), out.oom


def run_isolated(case: Case, sweep: Sweep) -> tuple[Record, bool]:
    """Run one case in a fresh child process (workloads.isolate); the Record is built here.

    A child that dies (a signal, an exit without a reply) or runs past the case timeout makes the
    case an `error` record naming the signal or exit code and its stderr's last lines; a SIGKILL
    out of memory (isolate.killed_out_of_memory) makes it `oom`.
    """
    from .isolate import run_child

    opts = sweep.options
    request = {
        "kind": "case", "case": case, "mopts": replace(sweep.case_options(case), telemetry=None),
        "telemetry": opts.telemetry and not opts.fake_clock, "threads": torch.get_num_threads(),
        "mem_limit_bytes": opts.mem_limit_bytes,
    }
    done = run_child(request, name=f"{case.variant}-{case.size_name}={case.size}-{case.id[:8]}",
                     timeout_s=sweep.case_timeout_s, limit_bytes=opts.mem_limit_bytes)
    if done.reply is None:
        return case_record(case, "oom" if done.oom else "error", done.reason), done.oom
    r = done.reply
    m = Measurement.model_validate(r["measurement"]) if r["measurement"] is not None else None
    rec = outcome_record(case, Outcome(r["status"], r["reason"], m, r["oom"], r["profile"]))
    if rec.status == "ok":
        rec.info.update(r["info"])  # the child's allocator policy and memory cap
    return rec, r["oom"]


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
    stop: StopSignals | None = None,
) -> list[Record]:
    """Measure every case in order, handing each Record to `sink` as soon as it exists.

    `oom_at` (series -> smallest size that ran out of memory) seeds the skip rule, e.g. from
    the records of an earlier run that this one resumes. `sweep` is an opened sweep (run_plan
    opens it before writing the header); without one it is opened and closed here. `execute`
    runs one case (default: prepare and measure it in this process, or in a child of its own
    with opts.isolated; data-parallel cases run as the ranks of a launched job, workloads.launch).
    `stop` (an entered StopSignals) ends the sweep with isolate.Interrupted after the case a
    signal arrived in, once its record reached the sink.
    """
    cases = list(cases)
    progress = progress or NullProgress()
    stop = stop or NoStop()
    own = sweep is None
    sweep = sweep or open_sweep(cases, opts, progress)
    sweep.run_id = sweep.run_id or run_id
    oom_at = dict(oom_at or {})
    execute = execute or (run_isolated if sweep.options.isolated else run_one)
    # how its process was set up; an executor of ranks (workloads.launch) says its own
    how = ISOLATED if execute is run_isolated else IN_PROCESS if execute is run_one else None
    records = []
    # Isolated, each child sets its own cap (this process's RLIMIT_AS would be inherited, wrongly sized).
    own_cap = execute is not run_isolated
    capping = memory_cap(sweep.device, opts.mem_limit_bytes) if own_cap else contextlib.nullcontext()
    try:
        with capping as cap:
            for i, case in enumerate(cases):
                stop.check()
                with stop.case():
                    rec = _run_case(case, i, len(cases), sweep, execute, oom_at, progress)
                    if rec.status == "ok":
                        rec.info.setdefault("cpu_malloc", sweep.allocator)
                        rec.info.setdefault("mem_limit", cap)
                        peaks = sweep.measure.peaks
                        rec.info["calibration"] = peaks.source if peaks is not None else None
                        if how is not None:
                            rec.info.setdefault("process", how)
                    rec.run_id = run_id
                    sink(rec)
                    records.append(rec)
                    progress.finish(rec)
    finally:
        if own:
            close_sweep(sweep)
    return records


def _run_case(case: Case, i: int, n: int, sweep: Sweep, execute: Executor, oom_at: dict, progress: Progress) -> Record:
    progress.start(case, i, n)
    t0, started = time.perf_counter(), _now()
    if case.series in oom_at and case.size > oom_at[case.series]:
        why = f"{case.variant} ran out of memory at {case.size_name}={oom_at[case.series]}"
        rec = case_record(case, "skipped", why)
    else:
        rec, oom = execute(case, sweep)
        if oom:
            oom_at[case.series] = min(case.size, oom_at.get(case.series, case.size))
    rec.started_utc, rec.wall_s = started, time.perf_counter() - t0
    return rec


# Statuses that need no re-run on --resume (an error may be transient, so it is re-run).
DONE_STATUSES = ("ok", "oom", "skipped")


def pending_cases(cases: Iterable[Case], results_path: Path) -> list[Case]:
    """The cases without a finished record in `results_path` (all of them if it is absent)."""
    cases = list(cases)
    if not results_path.exists():
        return cases
    done = {r.case_id for r in load_index(results_path).records if r.status in DONE_STATUSES}
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
    stop: StopSignals | None = None,
) -> list[Record]:
    """Run a plan into a results file (header first, then one line per case as it ends).

    The header names this run (run_id, which every record repeats), xfbench's own version
    and commit, the user's working directory's repository, the environment and the
    calibration used; `header_fields` adds to it (a suite run's `suite`). Returns the records
    measured by this call. `stop`: see run_cases (a signal that arrived before this call, e.g.
    during an earlier plan of a suite, stops it before it calibrates).
    """
    cases = list(cases)
    if not cases:  # nothing left to run (a --resume of a finished plan): no empty segment
        return []
    if stop is not None:
        stop.check()
    # The run folder is locked before anything is calibrated: a second xfbench writing it exits 2 at once.
    folder = results_path.parent
    made = not folder.exists()
    try:
        with RunLock(results_path) as lock:
            prior = lock.check().records
            return _run_locked(cases, results_path, lock, prior, command=command, argv=argv, opts=opts,
                               progress=progress, execute=execute, header_fields=header_fields, stop=stop)
    except BaseException:
        if made:  # failed before writing anything (bad input found while calibrating): leave no empty folder
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


def _run_locked(cases, results_path, lock, prior, *, command, argv, opts, progress, execute, header_fields, stop):
    if opts.profile is not None:  # profiler files go into the run folder, paths relative to it
        opts = replace(opts, profile=replace(opts.profile, run_dir=results_path.parent.resolve()))
    sweep = open_sweep(cases, opts, progress)
    try:
        run_id = sweep.run_id = new_run_id()
        if sweep.environment is not None:  # collected by the isolated sweep's setup child
            environment = {**sweep.environment, "calibration": sweep.calibration}
        else:
            environment = collect_environment(calibration=sweep.calibration)
        header = Header(
            run_id=run_id, tool_version=__version__, created_utc=_now(), command=command, argv=list(argv or []),
            **provenance(), environment=environment, warning_hints=hints(), **(header_fields or {}),
        )
        with ResultsWriter(results_path, header, lock=lock) as writer:
            for note in writer.notes:
                (progress or NullProgress()).note(f"note: {note}")
            return run_cases(
                cases, writer.append, opts, progress, oom_at=oom_sizes(prior), sweep=sweep, run_id=run_id,
                execute=execute, stop=stop,
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
