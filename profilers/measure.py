"""One entry point that measures a Step: the timed phase, then each enabled profiler.

measure(step, device, ...) -> Measurement (reports.schema): the timer runs the step until
its CI target or cap; profilers of kind WINDOW bracket exactly that timed phase (NVML
telemetry, other processes' CPU use); profilers of kind PASS run the step again in a pass
of their own, after timing (peak memory, FLOP counting, torch.profiler, memory snapshots). The Measurement is plain,
serializable data, so a child process or a data-parallel rank can hand it to the parent,
which alone builds Records and writes files.

PROFILERS is the registry: adding a profiler is one module with a class that follows the
Profiler protocol plus one line here. No workload knows which profilers ran.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from ..reports.schema import Measurement, TimeStats
from .device import cache_policy
from .roofline import Peaks, compute_key, roofline_metrics
from .timer import TimerPolicy, make_clock, measure_time
from .warnings import MeasurementWarning, bound_warnings, time_warnings

WINDOW = "window"  # entered right before the first timed window, exited right after the last
PASS = "pass"  # runs the step itself, after the timed phase (never inside it)


@dataclass
class Contribution:
    """What one profiler adds to a Measurement (merged in registry order)."""

    metrics: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    telemetry: dict[str, Any] = field(default_factory=dict)
    memory: Any = None  # reports.schema.MemoryStats
    warnings: list[MeasurementWarning] = field(default_factory=list)
    profile: dict[str, Any] | None = None  # torch.profiler summary, memory snapshot (merged key by key)


@dataclass
class MeasureOptions:
    """Which profilers run, and what they measure against.

    Args:
        policy: the timer's stopping rules.
        fake_clock: deterministic FakeClock; profilers whose readings cannot be reproduced
            (other processes' CPU use) are left out, so a fake run repeats exactly.
        memory: run the separate peak-memory pass.
        count_flops: run the FLOP-counting pass (FlopCounterMode) and compare with the
            work the implementation dispatches.
        telemetry: the sweep's opened NVML telemetry (profilers.telemetry.Telemetry), or None.
        idle_power_w, idle_method: the idle baseline subtracted from energy, and how it was taken.
        peaks: calibrated (and spec-sheet) peaks for MFU and roofline; None leaves them None.
        peak_flops_override: the user's peak in FLOP/s (replaces the spec sheet in mfu_spec).
        env_warnings: machine-wide warnings added to every measurement.
        group: the data-parallel ranks (profilers.collective.RankGroup) this process is one of:
            rank 0 makes the timer's decisions for all, and a window's sample is its max over
            ranks; None for one process.
        profile: the torch.profiler and memory-snapshot passes (profilers.torch_profile.
            ProfileOptions, with this case's folder), or None.
    """

    policy: TimerPolicy = TimerPolicy()
    fake_clock: bool = False
    memory: bool = True
    count_flops: bool = False
    telemetry: Any = None
    idle_power_w: float | None = None
    idle_method: str | None = None
    peaks: Peaks | None = None
    peak_flops_override: float | None = None
    env_warnings: tuple[MeasurementWarning, ...] = ()
    group: Any = None
    profile: Any = None


@dataclass
class Context:
    """What a profiler may look at: the step, its device and the options."""

    step: Any  # workloads.base.Step (profilers know only its run(), flops, tokens, ... attributes)
    device: torch.device
    opts: MeasureOptions


class Profiler(Protocol):
    """One kind of measurement beside the timer.

    A WINDOW profiler is a context manager around the timed phase; a PASS profiler runs the
    step itself after it. Both report through result().
    """

    kind: str

    def __init__(self, ctx: Context) -> None: ...

    @classmethod
    def enabled(cls, opts: MeasureOptions) -> bool: ...

    def result(self, timing: TimeStats) -> Contribution: ...


# name -> "module:Class"; imported lazily, run in this order.
PROFILERS = {
    "cpu": "xfbench.profilers.passes:CpuContention",
    "telemetry": "xfbench.profilers.passes:NvmlTelemetry",
    "memory": "xfbench.profilers.passes:PeakMemory",
    "flops": "xfbench.profilers.passes:FlopCount",
    "torch_profile": "xfbench.profilers.torch_profile:TorchProfile",
    "memory_snapshot": "xfbench.profilers.torch_profile:MemorySnapshot",
}


def profiler_class(name: str) -> type:
    module, _, cls = PROFILERS[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def enabled_profilers(opts: MeasureOptions) -> list[type]:
    return [c for c in map(profiler_class, PROFILERS) if c.enabled(opts)]


@contextlib.contextmanager
def _all(windows: list) -> Iterator[None]:
    with contextlib.ExitStack() as stack:
        for w in windows:
            stack.enter_context(w)
        yield


def measure(step: Any, device: torch.device, opts: MeasureOptions = MeasureOptions()) -> Measurement:
    """Time `step` on `device`, run every enabled profiler, and derive rates, MFU and roofline.

    Args:
        step: a workloads Step (run(), flops, tokens, bytes_moved, traffic, work_flops,
            working_set_bytes, inputs, rotate(), info).
        device: where it runs (the clock and the peaks follow it).
        opts: which profilers run and the peaks they measure against.
    """
    policy = cache_policy(device, step)
    if policy.input_sets > 1:
        step.rotate(policy.input_sets)
    ctx = Context(step, device, opts)
    profilers = [cls(ctx) for cls in enabled_profilers(opts)]
    windows = [p for p in profilers if p.kind == WINDOW]
    clock = make_clock(device, opts.fake_clock)
    if opts.group is None:
        timing = measure_time(step, opts.policy, clock, window=_all(windows))
    else:
        from .collective import rank_window_times

        clock = opts.group.clock(clock)
        timing = measure_time(step, opts.policy, clock, window=_all(windows), agree=opts.group)
    # The code path as it stood at the end of the timed phase: the passes below run the step
    # again, and what they trigger (a recompile, say) is not the timed loop's.
    step_info = dict(step.info)
    parts = [p.result(timing) for p in profilers]

    t = timing.median_s
    metrics: dict[str, Any] = {
        "flops_per_call": step.flops,
        "flop_per_s": step.flops / t if t > 0 else None,
        "tokens_per_call": step.tokens,
        "tokens_per_s": step.tokens / t if t > 0 else None,
        "peak_mem_bytes": None,
    }
    tf32 = torch.get_float32_matmul_precision() != "highest"
    roof, roof_info = roofline_metrics(
        flops=step.flops, bytes_moved=step.bytes_moved, time_s=t,
        dtype_key=compute_key(step_info.get("dtype"), device.type, tf32),
        peaks=opts.peaks, peak_flops_override=opts.peak_flops_override, traffic=step.traffic,
        cache_resident=policy.cache_resident,
    )
    metrics.update(roof)
    info = {**step_info, "cache_policy": policy.description, "threads": torch.get_num_threads(), **roof_info}
    if opts.group is not None:
        info["rank_samples_s"] = rank_window_times(clock, timing.warmup_calls)[opts.group.rank]
        info["time_over_ranks"] = f"max over {opts.group.size} ranks of each window (rank 0 decides when to stop)"
    warns = [*time_warnings(timing), *bound_warnings(roof), *opts.env_warnings]
    telemetry: dict[str, Any] = {}
    profile: dict[str, Any] = {}
    memory = None
    for part in parts:
        metrics.update(part.metrics)
        info.update(part.info)
        telemetry.update(part.telemetry)
        profile.update(part.profile or {})
        memory = part.memory if part.memory is not None else memory
        warns += part.warnings
    if memory is not None:
        metrics["peak_mem_bytes"] = memory.peak_bytes
    return Measurement(
        time=timing, memory=memory, metrics=metrics, info=info, telemetry=telemetry or None,
        warnings=[w.value for w in dict.fromkeys(warns)], profile=profile or None,
    )
