"""Measurement warnings: an Enum of actionable messages, stored in records, shown by reporters."""

from __future__ import annotations

from enum import StrEnum

from ..reports.schema import TimeStats

# IQR/median above this is called noisy (torch.utils.benchmark warns at 10% too).
HIGH_NOISE_IQR_REL = 0.10
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
    OTHER_GPU_PROCESSES = "other_gpu_processes"
    CPU_GOVERNOR = "cpu_governor"
    THREADS_OVERSUBSCRIBED = "threads_oversubscribed"
    FLOP_COUNT_MISMATCH = "flop_count_mismatch"

    @property
    def hint(self) -> str:
        return _HINTS[self]


_HINTS = {
    MeasurementWarning.FLOP_COUNT_MISMATCH: (
        "torch's FlopCounterMode counted a different number of FLOPs than the analytic formula "
        "(metrics.flops_counted_over_analytic): check the formula and its convention; the counter "
        "cannot see causal masks and counts recomputation in attention backward"
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
        "the GPU held its clocks down (power cap, thermal or hardware slowdown) during the window: "
        "check cooling and power limit (nvidia-smi -q -d PERFORMANCE), give it a pause between runs"
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
    return out


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
    """Conditions seen during one measured window (telemetry and CPU contention)."""
    out = []
    if throttle_reasons:
        out.append(MeasurementWarning.THROTTLED)
    if other_gpu_processes:
        out.append(MeasurementWarning.OTHER_GPU_PROCESSES)
    if oversubscribed(other_busy_cores, demand_cores, usable_cores):
        out.append(MeasurementWarning.THREADS_OVERSUBSCRIBED)
    return out


def hints() -> dict[str, str]:
    """code -> hint of every warning, written into results headers so reports need no lookup."""
    return {w.value: w.hint for w in MeasurementWarning}
