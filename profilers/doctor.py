"""Is this machine fit to benchmark? The measuring half of `xfbench doctor`.

examine() measures: clock and synchronize overhead, the run-to-run noise of a fixed small
kernel over a few seconds (coefficient of variation of timed windows, with the CPU time
other processes took meanwhile), the calibrated peaks, NVML state, governor, load and
threads. profilers/verdict.py turns those Facts into OK / NOISY / UNFIT.
"""

from __future__ import annotations

import math
import statistics
import time
from typing import Any

import torch

from .calibrate import calibration_report, load_or_calibrate, torch_threads
from .contention import CpuWindow, load_average, usable_cores
from .device import synchronize
from .env import cpu_governor
from .telemetry import open_telemetry
from .timer import TimerPolicy, make_clock, measure_time
from .verdict import Facts, noise_figures

# Windows of the noise run, how long it lasts by default, and calls that size its windows.
NOISE_WINDOW_S = 0.01
NOISE_SECONDS = 3.0
PROBE_CALLS = 30
# The matmul peak doctor measures when the cache lacks it: the dtype sweeps run by default
# (--dtype auto: float32 on CPU, bfloat16 on CUDA). Every dtype already cached is shown
# too, for free; the others (fp16 is emulated on most CPUs: seconds per size) are left to
# `xfbench env --calibrate` or to the first sweep that needs them.
DOCTOR_DTYPES = {"cpu": ("float32",), "cuda": ("bfloat16",)}

def _median_wall(fn, reps: int) -> float:
    xs = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        xs.append(time.perf_counter() - t0)
    return statistics.median(xs)


class _Kernel:
    """The fixed small kernel of the noise run: `reps` square fp32 matmuls into a fixed output.

    `reps` is sized once, from the fastest of a few probe calls, so that one run() lasts
    about NOISE_WINDOW_S on an undisturbed machine. Sizing it from a typical call instead
    would let a contended machine pick short windows whose median hides the stalls.
    """

    def __init__(self, device: torch.device, n: int):
        gen = torch.Generator(device=device).manual_seed(0)
        self.device = device
        self.a = torch.randn(n, n, device=device, generator=gen)
        self.b = torch.randn(n, n, device=device, generator=gen)
        self.c = torch.empty(n, n, device=device)
        self.reps = 1
        for _ in range(PROBE_CALLS):  # warm
            self.run()
        fastest = math.inf
        for _ in range(PROBE_CALLS):
            t0 = time.perf_counter()
            self.run()
            synchronize(device)
            fastest = min(fastest, time.perf_counter() - t0)
        self.reps = max(1, round(NOISE_WINDOW_S / fastest))

    def run(self) -> None:
        for _ in range(self.reps):
            torch.mm(self.a, self.b, out=self.c)


def measure_noise(device: torch.device, seconds: float = NOISE_SECONDS) -> dict[str, Any]:
    """Time a fixed kernel in NOISE_WINDOW_S windows for `seconds` (never stopping early)."""
    n = 1024 if device.type == "cuda" else 256
    # min_window_s=0: one window is one run() of the pre-sized kernel (~NOISE_WINDOW_S).
    policy = TimerPolicy(
        target_ci_rel=0.0, max_time_s=seconds, min_samples=10, max_samples=10**6, min_window_s=0.0,
        warmup_min_s=0.2, warmup_max_s=1.0,
    )
    kernel = _Kernel(device, n)
    cpu = CpuWindow()
    stats = measure_time(kernel, policy, make_clock(device), window=cpu)
    return {
        "noise_kernel": f"{kernel.reps} x {n}x{n} float32 matmul per window (~{NOISE_WINDOW_S * 1e3:g} ms)",
        **noise_figures(stats.samples_s),
        "noise_iqr_rel": stats.iqr_over_median,
        "noise_seconds": stats.total_s,
        "other_cpu_busy_cores": cpu.result()["cpu_other_busy_cores"],
    }


def examine(
    device: torch.device,
    *,
    noise_seconds: float = NOISE_SECONDS,
    threads: int | None = None,
    calibrate: bool = True,
    recalibrate: bool = False,
) -> Facts:
    """Measure everything verdict() needs on `device` (at `threads` torch threads)."""
    with torch_threads(threads):
        load = load_average()  # before our own work adds to it
        clock = make_clock(device)

        def pair() -> None:
            clock.start()
            clock.stop(1)

        synchronize(device)
        timer_overhead = _median_wall(pair, 2000 if device.type == "cpu" else 200)
        sync = _median_wall(lambda: synchronize(device), 200) if device.type == "cuda" else None
        noise = measure_noise(device, noise_seconds)
        cal, note = None, None
        if calibrate or recalibrate:
            res = load_or_calibrate(device, dtypes=DOCTOR_DTYPES[device.type], recalibrate=recalibrate)
            cal = calibration_report(res)
            note = "; ".join(res.notes) or None
        else:
            note = "skipped (--no-calibrate)"
        tel = open_telemetry(device)
        try:
            nvml = tel.state()
        finally:
            tel.close()
        return Facts(
            device=str(device), torch_threads=torch.get_num_threads(), usable_cores=usable_cores(),
            clock=clock.name, timer_overhead_s=timer_overhead, sync_overhead_s=sync, **noise,
            load_avg=list(load) if load else None, cpu_governor=cpu_governor(), nvml=nvml,
            calibration=cal, calibration_note=note,
        )


