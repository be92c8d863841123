"""The built-in profilers of measure(): CPU contention and NVML telemetry around the timed
phase, peak memory and FLOP counting in passes of their own (protocol in measure.py)."""

from __future__ import annotations

import torch

from ..reports.schema import TimeStats
from .contention import CpuWindow, usable_cores
from .flop_count import cross_check
from .measure import PASS, WINDOW, Context, Contribution, MeasureOptions
from .memory import measure_peak
from .telemetry import NullWindow
from .telemetry_agg import headline_metrics
from .warnings import MeasurementWarning, window_warnings


class CpuContention:
    """Cores other processes kept busy during the timed phase (a real reading: off under a fake clock)."""

    kind = WINDOW

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.window = CpuWindow()

    @classmethod
    def enabled(cls, opts: MeasureOptions) -> bool:
        # Off in a data-parallel rank: its sibling ranks share the CPU by design and would
        # read as contention.
        return not opts.fake_clock and (opts.group is None or opts.group.size == 1)

    def __enter__(self):
        return self.window.__enter__()

    def __exit__(self, *exc):
        return self.window.__exit__(*exc)

    def result(self, timing: TimeStats) -> Contribution:
        cpu = self.window.result()
        # cores the step itself keeps busy: its torch threads on CPU, one feeding thread on a GPU
        demand = torch.get_num_threads() if self.ctx.device.type == "cpu" else 1
        warns = window_warnings(
            throttle_reasons=None, other_gpu_processes=None, other_busy_cores=cpu["cpu_other_busy_cores"],
            demand_cores=demand, usable_cores=usable_cores(),
        )
        return Contribution(telemetry=cpu, warnings=warns)


class NvmlTelemetry:
    """Energy, power, clocks and throttle reasons of the device over the timed phase (NVML)."""

    kind = WINDOW

    def __init__(self, ctx: Context):
        self.ctx = ctx
        tel = ctx.opts.telemetry
        self.window = tel.window(run=ctx.step.run) if tel is not None else NullWindow("telemetry not set up")

    @classmethod
    def enabled(cls, opts: MeasureOptions) -> bool:
        return not opts.fake_clock  # a fake time has no real window to sample

    def __enter__(self):
        return self.window.__enter__()

    def __exit__(self, *exc):
        return self.window.__exit__(*exc)

    def result(self, timing: TimeStats) -> Contribution:
        opts = self.ctx.opts
        tel = self.window.result(timing.n * timing.calls_per_sample, self.ctx.step.tokens, opts.idle_power_w)
        tel["idle_method"] = opts.idle_method
        warns = window_warnings(
            throttle_reasons=tel.get("throttle_reasons"), other_gpu_processes=tel.get("other_processes"),
            other_busy_cores=None, demand_cores=0, usable_cores=usable_cores(),
        )
        return Contribution(metrics=headline_metrics(tel), telemetry=tel, warnings=warns)


class PeakMemory:
    """Peak memory of one call above the memory in use before it, in a pass of its own (a real
    reading, which does not repeat to the byte: off under a fake clock)."""

    kind = PASS

    def __init__(self, ctx: Context):
        self.ctx = ctx

    @classmethod
    def enabled(cls, opts: MeasureOptions) -> bool:
        return opts.memory and not opts.fake_clock

    def result(self, timing: TimeStats) -> Contribution:
        return Contribution(memory=measure_peak(self.ctx.step.run, self.ctx.device))


COMPILED_NOT_COUNTED = (
    "not counted: a torch.compile'd step runs Inductor's generated kernels, which FlopCounterMode does not see "
    "(count the eager variant)"
)


class FlopCount:
    """One more call under torch's FlopCounterMode (outside timing): counted FLOPs against the work the
    implementation dispatches (Step.work_flops)."""

    kind = PASS

    def __init__(self, ctx: Context):
        self.ctx = ctx

    @classmethod
    def enabled(cls, opts: MeasureOptions) -> bool:
        return opts.count_flops

    def result(self, timing: TimeStats) -> Contribution:
        if "compile" in self.ctx.step.info:  # Inductor's generated kernels never reach the counter
            return Contribution(info={"flops_count_error": COMPILED_NOT_COUNTED})
        metrics, info, mismatch = cross_check(self.ctx.step)
        return Contribution(
            metrics=metrics, info=info, warnings=[MeasurementWarning.FLOP_COUNT_MISMATCH] if mismatch else []
        )
