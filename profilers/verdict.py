"""Is this machine fit to benchmark? The pure half of `xfbench doctor`: measured Facts in, a
verdict out (OK / NOISY / UNFIT, one hint per problem), against named thresholds.

profilers/doctor.py measures the Facts; nothing here runs anything.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .telemetry_agg import THROTTLE_REASONS
from .warnings import OTHER_CPU_SLACK_CORES, PERFORMANCE_GOVERNOR, oversubscribed

# Robust coefficient of variation (1.4826 * MAD / median, the normal-consistent spread that a
# few stalled windows cannot inflate; the timer reports medians for the same reason) of 10 ms
# windows of a fixed kernel: up to 2% the adaptive timer reaches its default 2% CI in a few
# dozen windows; above 10% it needs hundreds and small differences between cases drown
# (torch.utils.benchmark also flags 10% IQR/median). The plain CV is reported beside it.
NOISE_CV_OK = 0.02
NOISE_CV_UNFIT = 0.10
MAD_TO_SIGMA = 1.4826
# A window slower than STALL_RATIO x the median was stalled (descheduled, preempted): more
# than STALL_FRACTION_NOISY of them is noisy, more than STALL_FRACTION_UNFIT (one in 20) unfit.
# A quiet 2-core VM shows 0-0.4%; one busy loop beside a 2-thread run, 8-12%.
STALL_RATIO = 1.5
STALL_FRACTION_NOISY = 0.01
STALL_FRACTION_UNFIT = 0.05
# Other processes taking more than this many cores beyond what our threads leave free do
# not just add noise, they slow every window (a busy loop on a 2-core machine halves a
# 2-thread matmul): unfit. Between OTHER_CPU_SLACK_CORES and this it is noisy.
OTHER_CPU_UNFIT_CORES = 0.5
# A clock start/stop pair costing more than this is visible in 10 ms windows (> 1%).
TIMER_OVERHEAD_MAX_S = 100e-6
# Load average per usable core above which the CPU was saturated over the last minute (a
# lagging sign; the CPU time others take during the noise run is the direct one).
LOAD_PER_CORE_MAX = 1.0
# Clock overhead may take this fraction of a window before timings are biased by it.
CLOCK_OVERHEAD_FRACTION = 0.01
# Reasons that mean an idle GPU is already held down by heat or hardware, not just power.
HARD_THROTTLE_REASONS = frozenset(
    {"hw_slowdown", "sw_thermal_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown"}
)

OK, NOISY, UNFIT = "OK", "NOISY", "UNFIT"
_RANK = {OK: 0, NOISY: 1, UNFIT: 2}


@dataclass
class Facts:
    """What doctor measured; every field is plain data (JSON-ready).

    Args:
        device: the examined device ('cpu', 'cuda:0').
        torch_threads: torch intra-op threads during the noise run.
        usable_cores: cores in this process's affinity mask.
        clock: timer clock ('perf_counter', 'cuda_event').
        timer_overhead_s: median wall time of an empty clock start/stop pair.
        sync_overhead_s: median wall time of synchronizing an idle device (None on CPU).
        noise_kernel: what the noise run timed.
        noise_windows: timed windows in the noise run.
        noise_cv: coefficient of variation (stdev / mean) of the windows' per-call times.
        noise_robust_cv: 1.4826 * MAD / median of the same (what the verdict uses).
        noise_iqr_rel: IQR / median of the same.
        noise_p99_over_median: the slow tail: 99th percentile / median.
        noise_stall_fraction: fraction of windows slower than STALL_RATIO x the median.
        noise_seconds: length of the noise run.
        other_cpu_busy_cores: cores other processes kept busy during the noise run.
        load_avg: 1, 5, 15 minute load averages before the noise run.
        cpu_governor: cpufreq governor, None if not readable.
        nvml: NVML state of the device (or why there is none).
        calibration: calibration summary (DOCTOR_DTYPES, measured if not cached, plus any
            dtype already cached), or None when not asked for.
        calibration_note: why there is no calibration, or what to know about it.
    """

    device: str
    torch_threads: int
    usable_cores: int
    clock: str
    timer_overhead_s: float
    sync_overhead_s: float | None
    noise_kernel: str
    noise_windows: int
    noise_cv: float
    noise_robust_cv: float
    noise_iqr_rel: float
    noise_p99_over_median: float
    noise_stall_fraction: float
    noise_seconds: float
    other_cpu_busy_cores: float | None
    load_avg: list[float] | None
    cpu_governor: str | None
    nvml: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] | None = None
    calibration_note: str | None = None

    @property
    def device_type(self) -> str:
        return self.device.split(":")[0]

    def floor(self) -> dict[str, float]:
        """The measurement floor: shortest window with clock overhead <= 1%, and the noise level."""
        return {
            "min_window_s": self.timer_overhead_s / CLOCK_OVERHEAD_FRACTION,
            "noise_robust_cv": self.noise_robust_cv,
            # two windows differing by less than ~2 sigma are indistinguishable
            "smallest_visible_difference_rel": 2.0 * self.noise_robust_cv,
        }


@dataclass(frozen=True)
class Problem:
    code: str
    level: str  # NOISY or UNFIT
    message: str
    hint: str


@dataclass
class Verdict:
    """The level, the problems that set it, and notes that do not change it (optional facts missing)."""

    level: str
    problems: list[Problem]
    notes: list[str] = field(default_factory=list)


def verdict(f: Facts) -> Verdict:
    """Pure: the facts against the named thresholds above. One Problem (with its hint) per finding."""
    p: list[Problem] = []
    if f.noise_robust_cv > NOISE_CV_UNFIT:
        p.append(Problem("noise", UNFIT, f"run-to-run noise (robust CV) {f.noise_robust_cv:.1%} > {NOISE_CV_UNFIT:.0%}",
                         "find and stop what competes for the machine (top -o %CPU, nvidia-smi), then rerun doctor"))
    elif f.noise_robust_cv > NOISE_CV_OK:
        p.append(Problem("noise", NOISY, f"run-to-run noise (robust CV) {f.noise_robust_cv:.1%} > {NOISE_CV_OK:.0%}",
                         "expect wider CIs: raise --max-time, or quiet the machine and rerun doctor"))
    stalls = f"{f.noise_stall_fraction:.1%} of windows stalled (> {STALL_RATIO:g}x the median)"
    if f.noise_stall_fraction > STALL_FRACTION_UNFIT:
        p.append(Problem("stalls", UNFIT, f"{stalls} > {STALL_FRACTION_UNFIT:.0%}",
                         "something preempts the benchmark: stop it (top -o %CPU), or pin --threads below the cores"))
    elif f.noise_stall_fraction > STALL_FRACTION_NOISY:
        p.append(Problem("stalls", NOISY, f"{stalls} > {STALL_FRACTION_NOISY:.0%}",
                         "the benchmark gets preempted: rerun doctor; if it persists, look for periodic jobs (top)"))
    demand = f.torch_threads if f.device_type == "cpu" else 1
    if oversubscribed(f.other_cpu_busy_cores, demand, f.usable_cores):
        spare = max(0.0, f.usable_cores - demand)
        level = UNFIT if f.other_cpu_busy_cores > spare + OTHER_CPU_UNFIT_CORES else NOISY
        p.append(Problem("cpu_contention", level,
                         f"other processes kept {f.other_cpu_busy_cores:.2f} cores busy while "
                         f"{demand} torch thread(s) ran on {f.usable_cores} usable cores",
                         "stop the other load (top -o %CPU), or lower --threads to leave it a core"))
    if f.torch_threads > f.usable_cores:
        p.append(Problem("threads", NOISY, f"{f.torch_threads} torch threads > {f.usable_cores} usable cores",
                         f"pass --threads {f.usable_cores}"))
    if f.load_avg and f.load_avg[0] > LOAD_PER_CORE_MAX * f.usable_cores:
        p.append(Problem("load", NOISY,
                         f"1-minute load average {f.load_avg[0]:.2f} > {LOAD_PER_CORE_MAX:g} x {f.usable_cores} cores",
                         "wait for other jobs to finish (uptime shows the load), then rerun"))
    if f.cpu_governor is not None and f.cpu_governor != PERFORMANCE_GOVERNOR:
        p.append(Problem("governor", NOISY, f"CPU governor is '{f.cpu_governor}'",
                         f"sudo cpupower frequency-set -g {PERFORMANCE_GOVERNOR}"))
    if f.timer_overhead_s > TIMER_OVERHEAD_MAX_S:
        p.append(Problem("timer", NOISY, f"clock start/stop costs {f.timer_overhead_s * 1e6:.0f} µs",
                         "time longer windows (the timer's --target-ci needs more calls per window)"))
    # Peaks are optional here: they say nothing about noise, so their absence is a note.
    notes = []
    if f.calibration is None:
        notes.append(f"no measured peaks ({f.calibration_note or 'not calibrated'}): "
                     "`xfbench env --calibrate` on a quiet machine measures them")
    elif f.calibration_note:
        notes.append(f"calibration: {f.calibration_note}")
    if f.device_type == "cuda":
        p.extend(_gpu_problems(f.nvml))
    level = max((x.level for x in p), key=_RANK.__getitem__, default=OK)
    return Verdict(level, p, notes)


def _gpu_problems(nv: dict[str, Any]) -> list[Problem]:
    if not nv.get("available"):
        return [Problem("nvml", NOISY, f"no NVML telemetry: {nv.get('reason')}",
                        "install the NVIDIA driver's NVML and nvidia-ml-py to get energy, clocks and throttling")]
    p = []
    if nv.get("persistence_mode") is False:
        p.append(Problem("persistence", NOISY, "persistence mode is off (the driver unloads between runs)",
                         "sudo nvidia-smi -pm 1"))
    if nv.get("other_processes"):
        pids = ", ".join(str(x["pid"]) for x in nv["other_processes"])
        p.append(Problem("gpu_processes", NOISY, f"other processes on the GPU: {pids}",
                         "stop them (nvidia-smi lists them) before benchmarking"))
    reasons = set(nv.get("clocks_event_reasons") or ())
    hard = sorted(reasons & HARD_THROTTLE_REASONS)
    soft = sorted((reasons & THROTTLE_REASONS) - HARD_THROTTLE_REASONS)
    if hard:
        p.append(Problem("throttle", UNFIT, f"the idle GPU is held down: {', '.join(hard)}",
                         "check cooling and power delivery (nvidia-smi -q -d PERFORMANCE,TEMPERATURE)"))
    elif soft:
        p.append(Problem("throttle", NOISY, f"clock limits active at idle: {', '.join(soft)}",
                         "check the power limit (nvidia-smi -q -d POWER)"))
    return p


def noise_figures(xs: list[float]) -> dict[str, float]:
    """Pure: window count, CV, robust CV and slow tail of per-call times."""
    srt = sorted(xs)
    mean, med = statistics.fmean(srt), float(np.median(srt))
    mad = float(np.median([abs(x - med) for x in srt]))
    return {
        "noise_windows": len(srt),
        "noise_cv": statistics.stdev(srt) / mean if len(srt) > 1 and mean > 0 else math.inf,
        "noise_robust_cv": MAD_TO_SIGMA * mad / med if med > 0 else math.inf,
        "noise_p99_over_median": float(np.quantile(srt, 0.99)) / med if med > 0 else math.inf,
        "noise_stall_fraction": sum(x > STALL_RATIO * med for x in srt) / len(srt),
    }


def report(f: Facts) -> dict[str, Any]:
    """JSON-ready facts, floor and verdict (what `xfbench doctor --json` prints)."""
    v = verdict(f)
    return {
        "facts": asdict(f),
        "floor": f.floor(),
        "thresholds": {
            "noise_cv_ok": NOISE_CV_OK,
            "noise_cv_unfit": NOISE_CV_UNFIT,
            "other_cpu_slack_cores": OTHER_CPU_SLACK_CORES,
            "other_cpu_unfit_cores": OTHER_CPU_UNFIT_CORES,
            "stall_ratio": STALL_RATIO,
            "stall_fraction_noisy": STALL_FRACTION_NOISY,
            "stall_fraction_unfit": STALL_FRACTION_UNFIT,
            "load_per_core_max": LOAD_PER_CORE_MAX,
            "timer_overhead_max_s": TIMER_OVERHEAD_MAX_S,
        },
        "verdict": v.level,
        "problems": [asdict(p) for p in v.problems],
        "notes": v.notes,
    }
