"""A calibration report (profilers.calibrate.calibration_report) as a format-neutral table."""

from __future__ import annotations

from typing import Any

from .tables import Cell, Table
from .units import fmt_bytes, fmt_flops, fmt_rate


def _ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def calibration_table(rep: dict[str, Any]) -> Table:
    """One row per dtype (measured dense matmul peak beside the spec sheet), then copy bandwidth."""
    rows = []
    for dtype, m in rep["matmul"].items():
        sizes = ", ".join(f"{n}: {fmt_flops(v)}" for n, v in m["by_size"].items())
        if m["skipped"]:
            sizes += f" (skipped {'; '.join(m['skipped'])})"
        rows.append(
            [
                Cell(f"{dtype} matmul"),
                Cell(fmt_flops(m["flop_per_s"]), None if m["flop_per_s"] else "bad"),
                Cell(fmt_flops(m["spec_flop_per_s"]) if m["spec_flop_per_s"] else "-", "dim"),
                Cell(_ratio(m["of_spec"])),
                Cell(sizes, "dim"),
            ]
        )
    spec_bw = rep.get("spec_mem_bytes_per_s")
    bw = rep.get("copy_bytes_per_s")
    rows.append(
        [
            Cell("copy bandwidth"),
            Cell(fmt_rate(bw, "B")),
            Cell(fmt_rate(spec_bw, "B") if spec_bw else "-", "dim"),
            Cell(_ratio(bw / spec_bw if bw and spec_bw else None)),
            Cell(f"dst.copy_(src) of {fmt_bytes(rep.get('copy_buffer_bytes'))}, read + write bytes counted", "dim"),
        ]
    )
    how = "cached" if rep["reused"] else f"measured now ({', '.join(rep['measured_now'])}) in {rep['elapsed_s']:.1f} s"
    notes = [
        f"{rep['device']} ({rep['device_name']}), {rep['threads']} torch threads, torch {rep['torch']}, "
        f"clock {rep['clock']}; {how}; calibrated {rep['created_utc']}",
        "measured: best over square sizes of the median time of (n,n)@(n,n), 2n^3 FLOPs; "
        f"spec: {rep['spec']}",
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
