"""`xfbench doctor`'s report (profilers.doctor.report) as a table plus a verdict with hints."""

from __future__ import annotations

from typing import Any

from .tables import Cell, Table
from .units import fmt_flops, fmt_pct, fmt_rate, fmt_time


def _nvml_line(nv: dict[str, Any]) -> str:
    if not nv.get("available"):
        return f"not usable: {nv.get('reason')}"
    others = ", ".join(str(p["pid"]) for p in nv.get("other_processes") or []) or "none"
    return (
        f"{nv.get('name')} · persistence {'on' if nv.get('persistence_mode') else 'off'} · "
        f"SM {nv.get('sm_clock_mhz')}/{nv.get('sm_clock_max_mhz')} MHz · mem {nv.get('mem_clock_mhz')} MHz · "
        f"power {nv.get('power_w')} W of {nv.get('power_limit_w')} W limit · {nv.get('temperature_c')} °C · "
        f"reasons {', '.join(nv.get('clocks_event_reasons') or []) or 'none'} · other processes {others}"
    )


def _peaks_line(cal: dict[str, Any] | None, note: str | None) -> str:
    if cal is None:
        return f"none ({note})" if note else "none"
    parts = [f"{d} {fmt_flops(m['flop_per_s'])}" for d, m in cal["matmul"].items()]
    parts.append(f"copy {fmt_rate(cal.get('copy_bytes_per_s'), 'B')}")
    how = "cached" if cal.get("reused") else "measured now"
    return f"{', '.join(parts)} ({how}, {cal.get('threads')} threads)"


def doctor_table(rep: dict[str, Any]) -> Table:
    f, floor = rep["facts"], rep["floor"]
    load = f.get("load_avg")
    other = f.get("other_cpu_busy_cores")
    rows = [
        ("device", f"{f['device']} · clock {f['clock']}"),
        ("timer overhead", f"{fmt_time(f['timer_overhead_s'])} per clock start/stop pair"),
        ("synchronize overhead", fmt_time(f["sync_overhead_s"]) if f["sync_overhead_s"] is not None else "n/a (cpu)"),
        (
            "run-to-run noise",
            f"robust CV {fmt_pct(f['noise_robust_cv'])} (CV {fmt_pct(f['noise_cv'])}, IQR/median "
            f"{fmt_pct(f['noise_iqr_rel'])}, p99/median {f['noise_p99_over_median']:.2f}, stalled windows "
            f"{fmt_pct(f['noise_stall_fraction'])}) over {f['noise_windows']} "
            f"windows in {f['noise_seconds']:.1f} s: {f['noise_kernel']}",
        ),
        (
            "measurement floor",
            f"windows >= {fmt_time(floor['min_window_s'])} keep clock overhead <= 1%; differences below "
            f"~{fmt_pct(floor['smallest_visible_difference_rel'])} between windows are noise",
        ),
        ("calibrated peaks", _peaks_line(f.get("calibration"), f.get("calibration_note"))),
        ("NVML", _nvml_line(f.get("nvml") or {})),
        ("CPU governor", f.get("cpu_governor") or "not readable"),
        ("load average (1 / 5 / 15 min)", " / ".join(f"{x:.2f}" for x in load) if load else "not readable"),
        ("other processes' CPU", f"{other:.2f} cores busy during the noise run" if other is not None else "-"),
        ("torch threads / usable cores", f"{f['torch_threads']} / {f['usable_cores']}"),
    ]
    cells = [[Cell(k), Cell(v)] for k, v in rows]
    return Table("doctor — is this machine fit to benchmark?", ["check", "value"], cells)


def verdict_lines(rep: dict[str, Any]) -> list[str]:
    """The verdict, one line per problem with its hint, then notes that did not change it."""
    lines = [f"verdict: {rep['verdict']}"]
    for p in rep["problems"]:
        lines.append(f"  {p['level']}: {p['message']} -> {p['hint']}")
    for note in rep.get("notes") or ():
        lines.append(f"  note: {note}")
    return lines
