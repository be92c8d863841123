"""Measurement warnings: an Enum of actionable messages, stored in records, shown by reporters."""

from __future__ import annotations

from enum import StrEnum

from ..reports.schema import TimeStats
from .telemetry_agg import SLOWDOWN_REASONS

# IQR/median above this is called noisy (torch.utils.benchmark warns at 10% too).
HIGH_NOISE_IQR_REL = 0.10
# A CUDA window whose host enqueue time (Python dispatch of its calls) reaches this
# fraction of its GPU time was launch-bound: the GPU waited for the next launch, so the
# time is dispatch overhead, not kernel time. A GPU-bound window's enqueue ends well
# before its kernels do (the host runs ahead); the GPU's queue drain after the last
# launch is the only slack, so a window of many short kernels that fills the launch
# queue (about a thousand pending launches block the host) can come close too.
LAUNCH_BOUND_FRACTION = 0.9
# Other processes may keep this many cores busy beyond the cores our own threads leave
# free (kernel threads, a shell, the terminal) before the window counts as oversubscribed.
OTHER_CPU_SLACK_CORES = 0.25
# The governor that holds CPU clocks at their maximum (Linux cpufreq).
PERFORMANCE_GOVERNOR = "performance"


class MeasurementWarning(StrEnum):
    """Each value is the stored code; `hint` says what to do about it."""

    NOT_CONVERGED = "not_converged"
    HIGH_NOISE = "high_noise"
    THROTTLED = "throttled"
    LAUNCH_BOUND = "launch_bound"
    OTHER_GPU_PROCESSES = "other_gpu_processes"
    CPU_GOVERNOR = "cpu_governor"
    THREADS_OVERSUBSCRIBED = "threads_oversubscribed"
    FLOP_COUNT_MISMATCH = "flop_count_mismatch"
    ABOVE_PEAK = "above_peak"
    BELOW_FLOOR = "below_floor"

    @property
    def hint(self) -> str:
        return _HINTS[self]


_HINTS = {
    MeasurementWarning.ABOVE_PEAK: (
        "the step ran faster than the calibrated matmul peak (mfu_measured > 1), so that peak is too low: it was "
        "likely measured under load or is stale; run `xfbench env --recalibrate --device ...` on a quiet machine"
    ),
    MeasurementWarning.BELOW_FLOOR: (
        "the step ran faster than its bandwidth floor (time_over_floor < 1), so the floor is wrong: the calibrated "
        "bandwidth is low (measured under load, or stale: `xfbench env --recalibrate`) or the working set is "
        "served from a cache larger than the one detected (info.floor_note)"
    ),
    MeasurementWarning.FLOP_COUNT_MISMATCH: (
        "counted/work FLOPs (metrics.flops_counted_over_work) outside 0.95..1.05: torch's FlopCounterMode "
        "counted other FLOPs than the work the implementation executes (info.work_flop_convention); "
        "check the work formula and which kernel ran (info.sdpa_backend)"
    ),
    MeasurementWarning.NOT_CONVERGED: (
        "the median's 95% CI did not reach the target before the time cap; "
        "raise --max-time or loosen --target-ci"
    ),
    MeasurementWarning.HIGH_NOISE: (
        f"IQR/median above {HIGH_NOISE_IQR_REL:.0%}: other load on the machine? "
        "run `xfbench doctor`, close other programs, pin --threads"
    ),
    MeasurementWarning.THROTTLED: (
        "the GPU slowed its clocks for heat or a hardware signal (thermal slowdown, hw slowdown, power brake) "
        "during the window: check cooling and the board (nvidia-smi -q -d PERFORMANCE), give it a pause "
        "between runs; power capping at the limit (sw_power_cap) is normal under heavy load and only recorded"
    ),
    MeasurementWarning.LAUNCH_BOUND: (
        f"enqueueing the calls took >= {LAUNCH_BOUND_FRACTION:.0%} of their GPU time (time.host_enqueue_median_s): "
        "Python dispatch, not the kernels, set the time; capture the step in a CUDA graph, use torch.compile "
        "(mode='reduce-overhead'), or give each call more work (larger batch or size)"
    ),
    MeasurementWarning.OTHER_GPU_PROCESSES: (
        "other processes used the GPU during the window: stop them (nvidia-smi lists them) and rerun"
    ),
    MeasurementWarning.CPU_GOVERNOR: (
        f"the CPU frequency governor is not '{PERFORMANCE_GOVERNOR}', so clocks ramp with load: "
        f"sudo cpupower frequency-set -g {PERFORMANCE_GOVERNOR}"
    ),
    MeasurementWarning.THREADS_OVERSUBSCRIBED: (
        "more busy threads than usable cores (torch threads above the core count, or other processes "
        "took CPU during the window): lower --threads or stop the other load (top -o %CPU)"
    ),
}


def time_warnings(stats: TimeStats) -> list[MeasurementWarning]:
    """Pure check of one timing result."""
    out = []
    if not stats.converged:
        out.append(MeasurementWarning.NOT_CONVERGED)
    if stats.iqr_over_median > HIGH_NOISE_IQR_REL:
        out.append(MeasurementWarning.HIGH_NOISE)
    if launch_bound(stats):
        out.append(MeasurementWarning.LAUNCH_BOUND)
    return out


def bound_warnings(metrics: dict) -> list[MeasurementWarning]:
    """Pure check of the roofline figures: a ceiling the step beat is a wrong ceiling, never a result."""
    out = []
    mfu = metrics.get("mfu_measured")
    if mfu is not None and mfu > 1.0:
        out.append(MeasurementWarning.ABOVE_PEAK)
    over = metrics.get("time_over_floor")
    if over is not None and over < 1.0:
        out.append(MeasurementWarning.BELOW_FLOOR)
    return out


def launch_bound(stats: TimeStats) -> bool:
    """Did enqueueing the calls take about as long as running them (clocks with a separate enqueue only)?"""
    enqueue = stats.host_enqueue_median_s
    return enqueue is not None and stats.median_s > 0 and enqueue >= LAUNCH_BOUND_FRACTION * stats.median_s


def oversubscribed(other_busy_cores: float | None, demand_cores: float, usable_cores: int) -> bool:
    """Did other processes use more than the cores our own `demand_cores` threads leave free?"""
    if other_busy_cores is None:
        return False
    spare = max(0.0, usable_cores - demand_cores)
    return other_busy_cores > spare + OTHER_CPU_SLACK_CORES


def environment_warnings(governor: str | None, torch_threads: int, usable_cores: int) -> list[MeasurementWarning]:
    """Machine-wide conditions, the same for every record of a sweep (an unreadable governor is fine)."""
    out = []
    if governor is not None and governor != PERFORMANCE_GOVERNOR:
        out.append(MeasurementWarning.CPU_GOVERNOR)
    if torch_threads > usable_cores:
        out.append(MeasurementWarning.THREADS_OVERSUBSCRIBED)
    return out


def window_warnings(
    *,
    throttle_reasons: list[str] | None,
    other_gpu_processes: list | None,
    other_busy_cores: float | None,
    demand_cores: float,
    usable_cores: int,
) -> list[MeasurementWarning]:
    """Conditions seen during one measured window (telemetry and CPU contention).

    `throttle_reasons` are every clock-limiting reason seen; only a thermal or hardware
    slowdown (SLOWDOWN_REASONS) is a warning, power capping at the limit is not.
    """
    out = []
    if SLOWDOWN_REASONS.intersection(throttle_reasons or ()):
        out.append(MeasurementWarning.THROTTLED)
    if other_gpu_processes:
        out.append(MeasurementWarning.OTHER_GPU_PROCESSES)
    if oversubscribed(other_busy_cores, demand_cores, usable_cores):
        out.append(MeasurementWarning.THREADS_OVERSUBSCRIBED)
    return out


def hints() -> dict[str, str]:
    """code -> hint of every warning, written into results headers so reports need no lookup."""
    return {w.value: w.hint for w in MeasurementWarning}
