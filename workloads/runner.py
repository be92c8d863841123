"""The runner loop: Case -> prepare -> measure time and memory -> Record -> sink.

Failures are data: an out-of-memory or an error becomes that case's Record, larger
sizes of an out-of-memory series are skipped with the reason, and the sweep goes on.
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import torch

from .. import __version__
from ..profilers.contention import CpuWindow, usable_cores
from ..profilers.cpu import fix_malloc_policy
from ..profilers.device import cache_policy, release_cached_memory, resolve_device, use_device
from ..profilers.env import collect_environment, cpu_governor, git_info
from ..profilers.flop_count import check_ratio, count_flops, counted_over_analytic
from ..profilers.memory import is_oom, measure_peak, memory_cap
from ..profilers.roofline import Peaks, compute_key, roofline_metrics
from ..profilers.telemetry import NullWindow, Telemetry, open_telemetry
from ..profilers.telemetry_agg import headline_metrics
from ..profilers.timer import TimerPolicy, make_clock, measure_time
from ..profilers.warnings import MeasurementWarning, environment_warnings, hints, time_warnings, window_warnings
from ..reports.schema import Header, Record
from ..reports.store import ResultsWriter, load_results
from . import get_workload
from .base import Case, SkipCase, Step


class Progress(Protocol):
    def start(self, case: Case, index: int, total: int) -> None: ...

    def finish(self, record: Record) -> None: ...


class NullProgress:
    def start(self, case: Case, index: int, total: int) -> None:
        pass

    def finish(self, record: Record) -> None:
        pass


@dataclass(frozen=True)
class RunOptions:
    """How to run a plan.

    Args:
        policy: timer stopping rules.
        threads: torch intra-op threads, set before the first case and recorded.
        measure_memory: run the separate peak-memory pass.
        mem_limit_bytes: optional cap on memory beyond what is in use at the start.
        fake_clock: deterministic FakeClock instead of the real one (tests, --fake-clock).
        peaks: calibrated (and spec-sheet) peaks for MFU and roofline; None leaves those
            metrics None. Measured once per sweep, before it (profilers.calibrate).
        peak_flops_override: the user's peak in FLOP/s (--peak-tflops); replaces the
            spec-sheet peak in mfu_spec.
        telemetry: sample NVML around each timed window (energy, power, clocks).
        idle_baseline: measure the idle device's power once and subtract it from energy.
        count_flops: run each step once more under FlopCounterMode (outside timing) and
            record counted/analytic FLOPs.
    """

    policy: TimerPolicy = TimerPolicy()
    threads: int | None = None
    measure_memory: bool = True
    mem_limit_bytes: int | None = None
    fake_clock: bool = False
    peaks: Peaks | None = None
    peak_flops_override: float | None = None
    telemetry: bool = True
    idle_baseline: bool = False
    count_flops: bool = False


@dataclass
class SweepContext:
    """What is set up once per sweep and shared by its cases.

    Args:
        telemetry: the device's NVML telemetry (or why there is none).
        idle_power_w: idle baseline, when asked for and measurable.
        idle_method: how the baseline was measured, or why it is missing.
        env_warnings: machine-wide warnings added to every record.
    """

    telemetry: Telemetry | None = None
    idle_power_w: float | None = None
    idle_method: str | None = None
    env_warnings: tuple[MeasurementWarning, ...] = ()


@contextlib.contextmanager
def _windows(*windows) -> Iterator[None]:
    """Enter every window around the timed phase (and exit them in reverse order)."""
    with contextlib.ExitStack() as stack:
        for w in windows:
            stack.enter_context(w)
        yield


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _record(case: Case, status: str, reason: str | None = None, **kw) -> Record:
    return Record(
        case_id=case.id, workload=case.workload, label=case.label, variant=case.variant,
        size=case.size, size_name=case.size_name, params=case.params, device=case.device,
        status=status, reason=reason, **kw,
    )


def _measure(
    case: Case, step: Step, device: torch.device, opts: RunOptions, sweep: SweepContext | None = None
) -> Record:
    sweep = sweep or SweepContext()
    policy = cache_policy(device, step.working_set_bytes)
    if policy.input_sets > 1:
        step.rotate(policy.input_sets)
    tel_window = (
        sweep.telemetry.window(run=step.run) if sweep.telemetry else NullWindow("telemetry not set up (no sweep)")
    )
    cpu_window = CpuWindow()
    timing = measure_time(
        step, opts.policy, make_clock(device, opts.fake_clock), window=_windows(cpu_window, tel_window)
    )
    memory = measure_peak(step.run, device) if opts.measure_memory else None
    t = timing.median_s
    metrics = {
        "flops_per_call": step.flops,
        "flop_per_s": step.flops / t if t > 0 else None,
        "tokens_per_call": step.tokens,
        "tokens_per_s": step.tokens / t if t > 0 else None,
        "peak_mem_bytes": memory.peak_bytes if memory else None,
    }
    tf32 = torch.get_float32_matmul_precision() != "highest"
    roof, roof_info = roofline_metrics(
        flops=step.flops, bytes_moved=step.bytes_moved, time_s=t,
        dtype_key=compute_key(step.info.get("dtype"), device.type, tf32),
        peaks=opts.peaks, peak_flops_override=opts.peak_flops_override,
    )
    tel = tel_window.result(timing.n * timing.calls_per_sample, step.tokens, sweep.idle_power_w)
    tel.update(cpu_window.result(), idle_method=sweep.idle_method)
    metrics.update(roof)
    metrics.update(headline_metrics(tel))
    threads = torch.get_num_threads()
    info = {**step.info, "cache_policy": policy.description, "threads": threads, **roof_info}
    warns = [*time_warnings(timing), *sweep.env_warnings]
    if opts.count_flops:
        try:
            counted = count_flops(step)
        except RuntimeError as e:  # a cross-check that cannot run must not fail the measured case
            # (e.g. torch's module tracker refuses autograd.grad() through an nn.Module's leaves)
            info["flops_count_error"] = f"{type(e).__name__}: {str(e).splitlines()[0]}"[:300]
        else:
            ratio = counted_over_analytic(counted.total, step.flops)
            metrics.update(flops_counted_per_call=counted.total or None, flops_counted_over_analytic=ratio)
            info["flops_counted_by_module"] = dict(counted.per_module)
            if ratio is not None and check_ratio(ratio):
                warns.append(MeasurementWarning.FLOP_COUNT_MISMATCH)
    if not opts.fake_clock:  # a fake time is not disturbed by load: keep its records reproducible
        warns += window_warnings(
            throttle_reasons=tel.get("throttle_reasons"), other_gpu_processes=tel.get("other_processes"),
            other_busy_cores=tel.get("cpu_other_busy_cores"),
            demand_cores=threads if device.type == "cpu" else 1, usable_cores=usable_cores(),
        )
    return _record(
        case, "ok", time=timing, memory=memory, metrics=metrics, info=info, telemetry=tel,
        warnings=[w.value for w in dict.fromkeys(warns)],
    )


def _run_one(case: Case, opts: RunOptions, sweep: SweepContext | None = None) -> tuple[Record, bool]:
    """Run one case; returns its record and whether it ran out of memory."""
    device = resolve_device(case.device)
    step = None
    try:
        step = get_workload(case.workload).prepare(case, device)
        return _measure(case, step, device, opts, sweep), False
    except SkipCase as e:
        return _record(case, "skipped", str(e)), False
    except Exception as e:  # failures are data: the sweep goes on
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        reason = f"{type(e).__name__}: {first}"[:500]
        return _record(case, "oom" if is_oom(e) else "error", reason), is_oom(e)
    finally:
        if step is not None:
            step.close()
        del step
        gc.collect()
        release_cached_memory(device)


def run_cases(
    cases: Iterable[Case],
    sink: Callable[[Record], None],
    opts: RunOptions = RunOptions(),
    progress: Progress | None = None,
    oom_at: dict[tuple, float] | None = None,
) -> list[Record]:
    """Measure every case in order, handing each Record to `sink` as soon as it exists.

    `oom_at` (series -> smallest size that ran out of memory) seeds the skip rule, e.g. from
    the records of an earlier run that this one resumes.
    """
    cases = list(cases)
    progress = progress or NullProgress()
    torch.set_num_threads(opts.threads or torch.get_num_threads())  # explicit, and recorded per case
    oom_at = dict(oom_at or {})
    records = []
    device = resolve_device(cases[0].device) if cases else torch.device("cpu")
    use_device(device)  # streams, events and graph capture use the current device
    malloc = fix_malloc_policy() if device.type == "cpu" else None
    sweep = SweepContext(
        telemetry=open_telemetry(device, opts.telemetry),
        env_warnings=tuple(
            environment_warnings(cpu_governor(), torch.get_num_threads(), usable_cores()) if not opts.fake_clock else ()
        ),
    )
    if opts.idle_baseline:
        sweep.idle_power_w, sweep.idle_method = sweep.telemetry.idle_power()
    with contextlib.closing(sweep.telemetry), memory_cap(device, opts.mem_limit_bytes) as cap:
        for i, case in enumerate(cases):
            progress.start(case, i, len(cases))
            t0, started = time.perf_counter(), _now()
            if case.series in oom_at and case.size > oom_at[case.series]:
                rec = _record(
                    case, "skipped",
                    f"{case.variant} ran out of memory at {case.size_name}={oom_at[case.series]}",
                )
            else:
                rec, oom = _run_one(case, opts, sweep)
                if oom:
                    oom_at[case.series] = min(case.size, oom_at.get(case.series, case.size))
            if rec.status == "ok":
                rec.info.update(cpu_malloc=malloc, mem_limit=cap)
            rec.started_utc, rec.wall_s = started, time.perf_counter() - t0
            sink(rec)
            records.append(rec)
            progress.finish(rec)
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
) -> list[Record]:
    """Run a plan into a results file (header first, then one line per case as it ends).

    Returns the records measured by this call.
    """
    torch.set_num_threads(opts.threads or torch.get_num_threads())
    prior = load_results(results_path).records if results_path.exists() else []
    calibration = None
    if opts.peaks is not None or opts.peak_flops_override:
        calibration = opts.peaks.summary() if opts.peaks is not None else {}
        calibration["peak_flops_override"] = opts.peak_flops_override
    header = Header(
        tool_version=__version__, created_utc=_now(), command=command, argv=list(argv or []),
        git=git_info(), environment=collect_environment(calibration=calibration), warning_hints=hints(),
    )
    with ResultsWriter(results_path, header) as writer:
        return run_cases(cases, writer.append, opts, progress, oom_at=oom_sizes(prior))


def oom_sizes(records: Iterable[Record]) -> dict[tuple, float]:
    """Series -> smallest size with an out-of-memory record (the key is Case.series)."""
    out: dict[tuple, float] = {}
    for r in records:
        if r.status == "oom":
            key = (r.workload, r.label, r.variant)
            out[key] = min(r.size, out.get(key, r.size))
    return out
