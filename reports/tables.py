"""Format-neutral tables built once from records; renderers only draw them.

The terminal renderer (reports/terminal.py) is the one that exists; Markdown, CSV or HTML
renderers to come need only map Cell and Table, never rebuild the grouping or the notes.
Grouping comes from record metadata, never from workload names: label -> one table,
size -> row, variant -> column. A resumed case shows only its latest record (select.latest).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .scaling import fit_series
from .schema import Record, RunResult
from .select import latest
from .units import fmt_bytes, fmt_energy, fmt_exponent, fmt_flops, fmt_size, fmt_time_ci

# Shown wherever a table's times come from --fake-clock (profilers FakeClock), so its
# tidy numbers are never read as a measurement.
SYNTHETIC_NOTE = (
    "times are synthetic: a deterministic FakeClock (--fake-clock) made them, not a measurement; "
    "so are the rates and exponents computed from them"
)
ENERGY_NOTE = "energy per token: NVML board energy counter over the timed window / tokens"


@dataclass(frozen=True)
class Cell:
    text: str
    style: str | None = None  # 'bad' | 'warn' | 'dim' | None: renderers map it to colour


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[Cell]]
    notes: list[str] = field(default_factory=list)


def result_cell(r: Record | None) -> Cell:
    """Median time ±CI, throughput and peak memory of one record; its status otherwise."""
    if r is None:
        return Cell("", "dim")
    if r.status == "oom":
        return Cell("OOM", "bad")
    if r.status == "error":
        return Cell("error (see below)", "bad")
    if r.status == "skipped":
        return Cell("skipped (see below)", "dim")
    t = r.time
    lines = [fmt_time_ci(t.median_s, t.ci_rel, t.ci_level), fmt_flops(r.metrics.get("flop_per_s"))]
    if r.memory is not None:
        lines.append(fmt_bytes(r.memory.peak_bytes))
    mfu = r.metrics.get("mfu_measured")
    if mfu is not None:
        lines.append(f"{mfu:.2f} of peak")
    counted = r.metrics.get("flops_counted_over_work")
    if counted is not None:
        lines.append(f"counted/work {counted:.2f}")
    elif r.metrics.get("flops_counted_over_convention") is not None:  # a v1 record: counted / convention FLOPs
        lines.append(f"counted/convention {r.metrics['flops_counted_over_convention']:.2f}")
    j_per_token = r.metrics.get("j_per_token")
    if j_per_token is not None:
        lines.append(f"{fmt_energy(j_per_token)}/token")
    return Cell("\n".join(lines), "warn" if r.warnings else None)


def synthetic_notes(recs: list[Record]) -> list[str]:
    """SYNTHETIC_NOTE when any record was timed by the fake clock."""
    return [SYNTHETIC_NOTE] if any(r.time is not None and r.time.clock == "fake" for r in recs) else []


def warning_notes(recs: list[Record], hints: dict[str, str] | None) -> list[str]:
    """Which warnings the highlighted cells carry, then each one's hint from the results header."""
    warned = sorted({w for r in recs for w in r.warnings})
    if not warned:
        return []
    return [
        f"highlighted cells carry warnings: {', '.join(warned)}",
        *(f"  {w}: {hints[w]}" for w in warned if hints and w in hints),
    ]


def flop_notes(recs: list[Record]) -> list[str]:
    """Which FLOPs are which: the convention that FLOP/s and MFU divide, and, where FLOPs were
    counted, the work convention the counted FLOPs are compared with."""
    conventions = sorted({str(r.info["flop_convention"]) for r in recs if "flop_convention" in r.info})
    counted = [r for r in recs if r.metrics.get("flops_counted_over_work") is not None]
    work = sorted({str(r.info.get("work_flop_convention", "the convention above")) for r in counted})
    return [
        *(f"FLOPs (convention): {c}" for c in conventions),
        *(["counted/work = FLOPs torch's FlopCounterMode counted in one more call / work FLOPs:"] if work else []),
        *(f"  work: {w}" for w in work),
    ]


def peak_note(recs: list[Record]) -> str | None:
    """What 'of peak' divides by, from the records themselves."""
    peaks = {
        (r.info.get("peak_dtype"), r.metrics.get("peak_measured_flop_per_s"))
        for r in recs
        if r.metrics.get("mfu_measured") is not None
    }
    if not peaks:
        return None
    which = ", ".join(f"{d} {fmt_flops(p)}" for d, p in sorted(peaks, key=str))
    return f"of peak: FLOP/s / this machine's calibrated dense matmul peak ({which}; measured, not spec)"


def results_tables(records: list[Record], hints: dict[str, str] | None = None) -> list[Table]:
    """One table per label: rows are sizes, columns are variants; `hints` explain warning codes.

    Pass latest(records) when a file may hold reruns (all_tables does).
    """
    by_label: dict[str, list[Record]] = {}
    for r in records:
        by_label.setdefault(r.label, []).append(r)
    tables = []
    for label, recs in by_label.items():
        variants = list(dict.fromkeys(r.variant for r in recs))
        sizes = sorted({r.size for r in recs})
        cell = {(r.size, r.variant): r for r in recs}
        rows = [
            [Cell(fmt_size(s))] + [result_cell(cell.get((s, v))) for v in variants] for s in sizes
        ]
        methods = sorted({r.memory.method for r in recs if r.memory is not None})
        notes = [
            *synthetic_notes(recs),
            "cell: median time per call ±95% CI of the median (relative) · "
            "FLOP/s = convention FLOPs / median · peak memory above baseline"
            + (f" ({', '.join(methods)})" if methods else ""),
            *flop_notes(recs),
        ]
        for variant, reason in dict.fromkeys((r.variant, r.reason) for r in recs if r.status != "ok"):
            notes.append(f"{variant}: {reason}")
        for variant, why in dict.fromkeys((r.variant, r.info.get("flops_count_error")) for r in recs):
            if why:
                notes.append(f"{variant}: FLOPs not counted ({why})")
        peak = peak_note(recs)
        if peak:
            notes.append(peak)
        if any(r.metrics.get("j_per_token") is not None for r in recs):
            notes.append(ENERGY_NOTE)
        notes += warning_notes(recs, hints)
        title = f"{label} — median time/call ±95% CI · FLOP/s · peak memory"
        tables.append(Table(title, [recs[0].size_name, *variants], rows, notes))
    return tables


def scaling_table(records: list[Record]) -> Table | None:
    """Per series: fitted log-log exponents of time and memory, and the largest size that ran."""
    fits = fit_series(records)
    if not fits:
        return None
    rows = []
    for f in fits:
        span = f"{fmt_size(f.fit_sizes[0])}..{fmt_size(f.fit_sizes[-1])}" if f.fit_sizes else "-"
        rows.append(
            [
                Cell(f.label),
                Cell(f.variant),
                Cell(fmt_exponent(f.time_exponent)),
                Cell(fmt_exponent(f.memory_exponent)),
                Cell(span),
                Cell(fmt_size(f.largest_ok) if f.largest_ok is not None else "none", "bad" if f.failed else None),
                Cell(", ".join(f.failed) or "", "bad" if f.failed else None),
            ]
        )
    name = fits[0].size_name
    return Table(
        "scaling: time ~ size^k, memory ~ size^k (least squares in log-log)",
        ["table", "variant", "time k", "memory k", f"fit over {name}", f"largest {name} that ran", "failed"],
        rows,
        [
            *synthetic_notes(records),
            "fitted over the larger half of the sizes that ran; k≈2 is quadratic in the swept size, k≈1 linear",
        ],
    )


def all_tables(run: RunResult) -> list[Table]:
    """The generic tables of a run, from the latest record of each case."""
    records = latest(run.records)
    tables = results_tables(records, run.header.warning_hints)
    scaling = scaling_table(records)
    return tables + ([scaling] if scaling else [])
