"""A calibration report (profilers.calibrate.calibration_report) as a format-neutral table."""

from __future__ import annotations

from typing import Any

from .tables import Cell, Table
from .units import fmt_bytes, fmt_flops, plain

# What each bandwidth row measures and counts, and which floors divide by it.
BANDWIDTH_ROWS = {
    "read": (
        "read bandwidth",
        "{kernel} over {buffer}{span}: bytes read counted; 'read' floors (decode: weights, KV cache) divide by it",
    ),
    "copy": (
        "copy bandwidth",
        "{kernel} between the halves of {buffer}{span}: bytes read + written counted; 'read_write' floors divide "
        "by it",
    ),
}
LEVEL_NOTES = {
    "full": "level full: every size, normal timer caps",
    "quick": "level quick: fewer sizes, short timer caps (a sweep's own first calibration); "
    "`xfbench env --calibrate` measures the full one",
}


def _quick(level: str | None) -> str:
    return " [quick]" if level == "quick" else ""


def calibration_table(rep: dict[str, Any]) -> Table:
    """One row per dtype (measured dense matmul peak beside the spec sheet), then read and copy bandwidth."""
    rows = []
    for dtype, m in rep["matmul"].items():
        sizes = ", ".join(f"{n}: {fmt_flops(v)}" for n, v in m["by_size"].items())
        if m["skipped"]:
            sizes += f" (skipped {'; '.join(m['skipped'])})"
        rows.append(
            [
                Cell(f"{dtype} matmul"),
                Cell(m["flop_per_s"], "FLOP/s", status=None if m["flop_per_s"] else "bad"),
                Cell(m["spec_flop_per_s"] or None, "FLOP/s", status="dim"),
                Cell(m["of_spec"], "ratio"),
                Cell(sizes + _quick(m.get("level")), status="dim"),
            ]
        )
    spec_bw = rep.get("spec_mem_bytes_per_s")
    cache = rep.get("cache_bytes")
    for kind, (name, detail) in BANDWIDTH_ROWS.items():
        bw, buffer = rep.get(f"{kind}_bytes_per_s"), rep.get(f"{kind}_buffer_bytes")
        if bw is None:
            continue
        span = f" ({plain(buffer / cache)}x the {rep['cache_name']} of {fmt_bytes(cache)})" if cache and buffer else ""
        rows.append(
            [
                Cell(name),
                Cell(bw, "B/s"),
                Cell(spec_bw or None, "B/s", status="dim"),
                Cell(bw / spec_bw if spec_bw else None, "ratio"),
                Cell(
                    detail.format(kernel=rep.get(f"{kind}_kernel"), buffer=fmt_bytes(buffer), span=span)
                    + _quick(rep.get(f"{kind}_level")),
                    status="dim",
                ),
            ]
        )
    how = "cached" if rep["reused"] else f"measured now ({', '.join(rep['measured_now'])}) in {rep['elapsed_s']:.1f} s"
    notes = [
        f"{rep['device']} ({rep['device_name']}), {rep['threads']} torch threads, torch {rep['torch']}, "
        f"clock {rep['clock']}; {how}; calibrated {rep.get('measured_utc') or rep['created_utc']}",
        "measured: best over square sizes of the median time of (n,n)@(n,n), 2n^3 FLOPs; "
        f"spec: {rep['spec']}",
        LEVEL_NOTES[rep["level"]],
        f"cache: {rep['path']} (--recalibrate refreshes it)",
    ]
    if rep.get("peak_flops_override"):
        notes.append(f"user peak (--peak-tflops): {fmt_flops(rep['peak_flops_override'])}, used for mfu_spec")
    notes.extend(f"note: {n}" for n in rep.get("notes") or [])
    return Table(
        "calibration — measured peaks of this machine (MFU divides by these)",
        ["figure", "measured", "spec (dense)", "measured/spec", "detail"],
        rows,
        notes,
    )
