"""NVML readings summarized: pure functions over a recorded window (no NVML, no torch).

A window of Samples (start, background series, end) becomes a record's telemetry dict:
energy from the board's total-energy counter delta, power, clocks, clocks-event
(throttle) reasons, temperature, utilization. Absent figures are None with a reason,
never 0. profilers/telemetry.py reads the device and calls aggregate(); tests feed it
literal series.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from ..reports.units import fmt_time

# Background sampling period of power, clocks, reasons, temperature and utilization.
# Energy comes from the counter delta between the window's two ends, not from these
# samples, which only summarize power and clocks (and NVML refreshes power every ~20-100
# ms anyway): 100 ms is enough, and keeps the sampling thread's GIL and driver calls out
# of the way of a launch-bound step's Python dispatch.
SAMPLE_INTERVAL_S = 0.100
# NVML's power and energy readings refresh every few tens to ~100 ms (GPU and driver
# dependent), so the energy of a window carries up to one refresh of error at each end.
# A window is extended (the step keeps running) until it is at least this long, which
# keeps that error to a few percent; a window that still falls short gets energy=None.
MIN_ENERGY_WINDOW_S = 1.0

# Clocks-event (formerly "throttle") reason bits, nvml.h nvmlClocksEventReason* /
# nvmlClocksThrottleReason* (identical bit values; BoardLimit and Reliability exist only
# in the older ThrottleReasons list).
CLOCKS_EVENT_REASONS = {
    0x001: "gpu_idle",
    0x002: "applications_clocks_setting",
    0x004: "sw_power_cap",
    0x008: "hw_slowdown",
    0x010: "sync_boost",
    0x020: "sw_thermal_slowdown",
    0x040: "hw_thermal_slowdown",
    0x080: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
    0x200: "board_limit",
    0x400: "reliability",
}
# Reasons that mean clocks were held below what the load asked for (power, thermal, or a
# hardware brake). gpu_idle, application clocks, sync boost and display clocks are not.
THROTTLE_REASONS = frozenset(
    {
        "sw_power_cap", "hw_slowdown", "sw_thermal_slowdown", "hw_thermal_slowdown",
        "hw_power_brake_slowdown", "board_limit", "reliability",
    }
)
# The ones that are a fault of the set-up (heat, a hardware slowdown signal, an external
# power brake): the `throttled` warning. sw_power_cap is not among them: a large GEMM holds
# the board at its power limit by design (clocks settle where power = TDP), so it is only
# recorded (clocks_event_reasons, throttle_reasons).
SLOWDOWN_REASONS = frozenset({"hw_slowdown", "sw_thermal_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown"})

ENERGY_METHOD = "NVML total energy counter delta (whole board; nvmlDeviceGetTotalEnergyConsumption)"
POWER_METHOD = "NVML power readings (nvmlDeviceGetPowerUsage) sampled every {:g} ms"
# What the figures describe: the whole GPU, or (MIG) the parent GPU of the slice a case ran on.
SCOPE_GPU = "gpu"
SCOPE_MIG = "mig_slice: clocks, reasons and temperature are the parent GPU's; memory is the slice's"
MIG_ENERGY_REASON = (
    "MIG slice: NVML reads power and energy only for the whole board, which the other slices share, "
    "so none is attributed to this case"
)


def decode_reasons(mask: int | None) -> list[str]:
    """Names of the set bits of a clocks-event reason mask (unknown bits as hex)."""
    if not mask:
        return []
    names = [name for bit, name in CLOCKS_EVENT_REASONS.items() if mask & bit]
    rest = mask & ~sum(CLOCKS_EVENT_REASONS)
    if rest:
        names.append(f"unknown_{rest:#x}")
    return names


@dataclass(frozen=True)
class Sample:
    """One reading of the device; None where the query failed or is unsupported."""

    t_s: float  # time.perf_counter() of the reading
    power_mw: float | None = None
    energy_mj: float | None = None  # cumulative since driver load
    sm_clock_mhz: float | None = None
    mem_clock_mhz: float | None = None
    reasons_mask: int | None = None
    temperature_c: float | None = None
    util_gpu_pct: float | None = None
    util_mem_pct: float | None = None
    mem_used_bytes: int | None = None


def _mean(xs: list[float]) -> float | None:
    return math.fsum(xs) / len(xs) if xs else None


def _integrate(points: list[tuple[float, float]]) -> float | None:
    """Trapezoid integral of (t_s, watts) -> joules; None with fewer than two points."""
    if len(points) < 2:
        return None
    return math.fsum((t1 - t0) * (p0 + p1) / 2.0 for (t0, p0), (t1, p1) in zip(points, points[1:], strict=False))


def null_telemetry(reason: str) -> dict[str, Any]:
    """Every telemetry figure None, with the reason (no driver, CPU device, disabled)."""
    out: dict[str, Any] = {key: None for key in TELEMETRY_KEYS}
    out.update(source="nvml", available=False, reason=reason, energy_reason=reason)
    return out


def aggregate(
    start: Sample,
    end: Sample,
    series: list[Sample],
    *,
    calls: int,
    tokens_per_call: float | None,
    idle_power_w: float | None = None,
    unsupported: dict[str, str] | None = None,
    min_window_s: float = MIN_ENERGY_WINDOW_S,
    interval_s: float = SAMPLE_INTERVAL_S,
    mig: bool = False,
) -> dict[str, Any]:
    """Summarize one window: `start`/`end` bracket it (after synchronizing), `series` lies between.

    Returns the record's telemetry dict (keys: TELEMETRY_KEYS). Energy comes only from the
    counter delta; `energy_power_integral_j` integrates the power samples as a cross-check.
    `mig`: the case ran on a MIG slice, so board power and energy are None with the reason.
    """
    unsupported = dict(unsupported or {})
    points = [start, *series, end]
    window_s = end.t_s - start.t_s
    energy_j, why = None, None
    if mig:
        why = MIG_ENERGY_REASON
        idle_power_w = None
        points = [replace(p, power_mw=None, energy_mj=None) for p in points]
    elif start.energy_mj is None or end.energy_mj is None:
        why = "energy counter unsupported: " + unsupported.get("energy", "not read")
    elif window_s < min_window_s:
        why = f"window {fmt_time(window_s)} is shorter than {min_window_s:g} s (the energy counter's resolution)"
    elif end.energy_mj - start.energy_mj <= 0:
        why = f"energy counter did not advance over {fmt_time(window_s)}"
    else:
        energy_j = (end.energy_mj - start.energy_mj) / 1e3
    tokens = calls * tokens_per_call if tokens_per_call else None

    power_w = [(p.t_s, p.power_mw / 1e3) for p in points if p.power_mw is not None]
    sm = [p.sm_clock_mhz for p in points if p.sm_clock_mhz is not None]
    mem = [p.mem_clock_mhz for p in points if p.mem_clock_mhz is not None]
    masks = [p.reasons_mask for p in points if p.reasons_mask is not None]
    counts: dict[str, int] = {}
    for m in masks:
        for name in decode_reasons(m):
            counts[name] = counts.get(name, 0) + 1
    seen = {name: round(c / len(masks), 4) for name, c in sorted(counts.items())}
    temps = [p.temperature_c for p in points if p.temperature_c is not None]
    used = [p.mem_used_bytes for p in points if p.mem_used_bytes is not None]

    out = null_telemetry("")
    out.update(
        available=True,
        reason=None,
        scope=SCOPE_MIG if mig else SCOPE_GPU,
        interval_s=interval_s,
        samples=len(points),
        window_s=window_s,
        calls=calls,
        energy_j=energy_j,
        energy_method=ENERGY_METHOD if energy_j is not None else None,
        energy_reason=why,
        energy_power_integral_j=_integrate(power_w),
        j_per_token=energy_j / tokens if energy_j is not None and tokens else None,
        tokens_per_j=tokens / energy_j if energy_j and tokens else None,
        power_method=POWER_METHOD.format(interval_s * 1e3) if power_w else None,
        power_mean_w=_mean([w for _, w in power_w]),
        power_max_w=max((w for _, w in power_w), default=None),
        sm_clock_min_mhz=min(sm, default=None),
        sm_clock_max_mhz=max(sm, default=None),
        mem_clock_min_mhz=min(mem, default=None),
        temperature_max_c=max(temps, default=None),
        util_gpu_mean_pct=_mean([p.util_gpu_pct for p in points if p.util_gpu_pct is not None]),
        util_mem_mean_pct=_mean([p.util_mem_pct for p in points if p.util_mem_pct is not None]),
        nvml_device_used_max_bytes=max(used, default=None),
        clocks_event_reasons=seen if masks else None,
        throttle_reasons=sorted(r for r in seen if r in THROTTLE_REASONS) if masks else None,
        unsupported=unsupported or None,
    )
    if idle_power_w is not None:
        out["idle_power_w"] = idle_power_w
        if energy_j is not None:
            out["energy_idle_j"] = idle_power_w * window_s
            out["energy_net_j"] = energy_j - out["energy_idle_j"]
            out["j_per_token_net"] = out["energy_net_j"] / tokens if tokens else None
    return out


# Every key of a record's telemetry dict (NOTE: add new keys here and in aggregate()).
TELEMETRY_KEYS = (
    "source", "available", "reason", "scope", "device_uuid", "nvml_index", "interval_s", "samples", "window_s",
    "calls", "extra_calls", "extension_chunks", "energy_j", "energy_method", "energy_reason", "energy_power_integral_j",
    "j_per_token", "tokens_per_j", "idle_power_w", "energy_idle_j", "energy_net_j", "j_per_token_net",
    "power_method", "power_mean_w", "power_max_w", "power_limit_w", "sm_clock_min_mhz", "sm_clock_max_mhz",
    "mem_clock_min_mhz", "temperature_max_c", "util_gpu_mean_pct", "util_mem_mean_pct",
    "clocks_event_reasons", "throttle_reasons", "other_processes", "gpu_memory",
    "nvml_device_used_max_bytes", "unsupported",
)

# Headline figures copied into record.metrics (scalars, for tables and compare).
METRIC_KEYS = (
    "energy_j", "j_per_token", "tokens_per_j", "power_mean_w", "power_max_w", "sm_clock_min_mhz",
    "energy_net_j", "j_per_token_net",
)


def headline_metrics(tel: dict[str, Any]) -> dict[str, Any]:
    """The scalar figures of a telemetry dict for record.metrics (None where absent)."""
    out = {k: tel.get(k) for k in METRIC_KEYS}
    reasons = tel.get("throttle_reasons")
    out["throttle_reasons"] = ",".join(reasons) if reasons else None
    return out


def split_processes(procs: list[tuple[int, int | None]], own_pid: int) -> tuple[int | None, list[dict], str | None]:
    """(this process's NVML bytes, the other processes, a note) from NVML's process list.

    In a container NVML reports host PIDs, so our own PID may be missing: then one entry
    is assumed to be ours and the rest are counted as others, with a note.
    """
    mine = [used for pid, used in procs if pid == own_pid]
    others = [{"pid": pid, "used_bytes": used} for pid, used in procs if pid != own_pid]
    if mine:
        return mine[0], others, None
    if procs:
        return None, others[1:], "own PID not in NVML's process list (PID namespace?); one entry counted as ours"
    return None, [], None
