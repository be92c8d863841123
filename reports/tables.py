"""Format-neutral tables built once from records; renderers only draw them.

Cells are typed (value, unit, CI, status, note); the terminal, HTML, Markdown and LaTeX
renderers only format cells and rows, never rebuild the grouping or the notes. Display units
come from reports/units.py alone.
Grouping comes from record metadata, never from workload names: label -> one table,
size -> row, variant -> column. A resumed case shows only its latest record (select.latest).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Literal

from .scaling import fit_series
from .schema import Record, RunResult
from .select import latest
from .units import DIGITS, fmt_flops, fmt_hours, fmt_pct, fmt_size, fmt_unit, plain, scale, sci

# Shown wherever a table's times come from --fake-clock (profilers FakeClock), so its
# tidy numbers are never read as a measurement.
SYNTHETIC_NOTE = (
    "times are synthetic: a deterministic FakeClock (--fake-clock) made them, not a measurement; "
    "so are the rates and exponents computed from them"
)
PLANTED_NOTE = (
    "planted slowdown: these steps busy-waited {} of each call's own time after it (XFBENCH_PLANT_SLOWDOWN, "
    "a test of regression detection): not the code's own speed"
)
ENERGY_NOTE = "energy per token: NVML board energy counter over the timed window / tokens"


Status = Literal["bad", "warn", "dim"]

# Cell.unit values that are not SI units with display steps (units.steps_for): how to show them.
KINDS = {
    "%": "a fraction shown as a percentage: 0.123 -> 12.3%",
    "ratio": "a dimensionless ratio, 2 decimals: 0.53",
    "k": "a fitted exponent, 2 decimals: 2.01",
    "size": "a swept value (seq_len, params): 4096, 125M",
    "count": "a large count (tokens, FLOPs) in short scientific notation: 2.028e20",
    "h": "a duration in hours: 72 h (3 days)",
}


@dataclass(frozen=True)
class Cell:
    """One table cell, typed: renderers format it, nobody pre-formats it.

    Args:
        value: a number in SI `unit` (None or NaN show '-'), or text (then `unit` is None).
        unit: an SI unit with display steps ('s', 'B', 'FLOP/s', 'tok/s', 'J/token'; see
            units.steps_for), or one of KINDS; None for text or a bare number.
        ci_rel: the CI of `value` as a relative half-width (shown '±2.0%'); ci_level its coverage.
        status: 'bad' | 'warn' | 'dim' | None: renderers map it to colour.
        note: why the cell looks as it does (an HTML title; other renderers may footnote it).
        label, suffix: fixed text before and after the value ('counted/work ', ' of peak').
        more: further values stacked under this one in the same cell, one line each.
    """

    value: float | int | str | None = None
    unit: str | None = None
    ci_rel: float | None = None
    ci_level: float = 0.95
    status: Status | None = None
    note: str | None = None
    label: str = ""
    suffix: str = ""
    more: tuple[Cell, ...] = ()

    @property
    def lines(self) -> list[Cell]:
        """This cell's own value, then each stacked one (each without `more`)."""
        return [replace(self, more=()), *self.more]

    @property
    def numeric(self) -> bool:
        return _is_number(self.value)

    @property
    def text(self) -> str:
        """The cell as plain text, one line per stacked value (the terminal's rendering)."""
        return "\n".join(line_text(c) for c in self.lines)

    @property
    def sort_key(self) -> float | str:
        """What a sortable table sorts this cell by: the raw SI value, else the text."""
        return float(self.value) if self.numeric else self.text


def _is_number(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def value_text(c: Cell, digits: int = DIGITS) -> str:
    """The value of one line of a cell with its display unit, no label, suffix or CI: '1.23 ms'."""
    v = c.value
    if not _is_number(v):
        return "-" if v is None else str(v)
    if not math.isfinite(v):
        return "-"
    match c.unit:
        case None:
            return plain(v, digits)
        case "%":
            return fmt_pct(v)
        case "ratio" | "k":
            return f"{v:.2f}"
        case "size":
            return fmt_size(v)
        case "count":
            return sci(v)
        case "h":
            return fmt_hours(v)
        case unit:
            return fmt_unit(v, unit, digits)


def ci_text(c: Cell) -> str:
    """' ±2.0%', with the level when it is below 95%: ' ±9.0% (75% CI)'; '' without a CI."""
    if c.ci_rel is None or not _is_number(c.value):
        return ""
    level = f" ({c.ci_level:.0%} CI)" if c.ci_level < 0.95 else ""
    return f" ±{100 * c.ci_rel:.1f}%{level}"


def line_text(c: Cell, digits: int = DIGITS) -> str:
    """One line of a cell as plain text: label, value, CI, suffix."""
    return f"{c.label}{value_text(c, digits)}{ci_text(c)}{c.suffix}"


def ci_digits(value: float, ci_rel: float | None, most: int = 4) -> int:
    """Significant digits the CI supports: the last shown digit is the CI half-width's first,
    so 1.0123 ms ±2% shows 1.01 ms and ±0.1% shows 1.012 ms (2 to `most` digits)."""
    if not ci_rel or not value or not math.isfinite(value) or not math.isfinite(ci_rel):
        return DIGITS
    half = abs(value) * ci_rel
    digits = math.floor(math.log10(abs(value))) - math.floor(math.log10(half)) + 1
    return min(max(digits, 2), most)


def paper_digits(c: Cell) -> int:
    """Significant digits of a cell's value in a paper or a CI summary (LaTeX, Markdown): as many
    as its CI supports (ci_digits), else DIGITS."""
    return ci_digits(float(c.value), c.ci_rel) if c.ci_rel is not None and c.numeric else DIGITS


def numeric_column(cells: list[Cell]) -> bool:
    """A column to right-align: it holds numbers, and no text but blanks and statuses (OOM)."""
    text = [c for c in cells if not c.numeric and c.value not in (None, "", "-") and c.status is None]
    return any(c.numeric for c in cells) and not text


def column_unit(cells: list[Cell]) -> str | None:
    """The unit shared by every numeric, unstacked cell of a column, when there is one and all
    of them scale to the same display symbol (so a header can carry it); None otherwise."""
    symbols = set()
    for c in cells:
        if c.value is None or c.more:
            if c.more:
                return None
            continue
        if not c.numeric or c.unit is None or c.unit in KINDS or c.label or c.suffix:
            return None
        if not math.isfinite(c.value):
            continue
        symbols.add(scale(c.value, c.unit)[1])
    return symbols.pop() if len(symbols) == 1 else None


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[Cell]]
    notes: list[str] = field(default_factory=list)


def result_cell(r: Record | None) -> Cell:
    """Median time ±CI, throughput and peak memory of one record; its status otherwise."""
    if r is None:
        return Cell("", status="dim")
    if r.status == "oom":
        return Cell("OOM", status="bad", note=r.reason)
    if r.status == "error":
        return Cell("error (see below)", status="bad", note=r.reason)
    if r.status == "skipped":
        return Cell("skipped (see below)", status="dim", note=r.reason)
    t = r.time
    more = [Cell(r.metrics.get("flop_per_s"), "FLOP/s")]
    if r.memory is not None:
        more.append(Cell(r.memory.peak_bytes, "B"))
    mfu = r.metrics.get("mfu_measured")
    if mfu is not None:
        more.append(Cell(mfu, "ratio", suffix=" of peak"))
    counted = r.metrics.get("flops_counted_over_work")
    if counted is not None:
        more.append(Cell(counted, "ratio", label="counted/work "))
    elif r.metrics.get("flops_counted_over_convention") is not None:  # a v1 record: counted / convention FLOPs
        more.append(Cell(r.metrics["flops_counted_over_convention"], "ratio", label="counted/convention "))
    j_per_token = r.metrics.get("j_per_token")
    if j_per_token is not None:
        more.append(Cell(j_per_token, "J/token"))
    return Cell(
        t.median_s, "s", ci_rel=t.ci_rel, ci_level=t.ci_level, more=tuple(more),
        status="warn" if r.warnings else None, note=", ".join(r.warnings) or None,
    )


def synthetic_notes(recs: list[Record]) -> list[str]:
    """SYNTHETIC_NOTE when any record was timed by the fake clock; PLANTED_NOTE when any step was
    slowed on purpose (XFBENCH_PLANT_SLOWDOWN, the test of `xfbench compare`)."""
    notes = [SYNTHETIC_NOTE] if any(r.time is not None and r.time.clock == "fake" for r in recs) else []
    planted = sorted({r.info["planted_slowdown"] for r in recs if r.info.get("planted_slowdown")})
    if planted:
        notes.append(PLANTED_NOTE.format(", ".join(f"{p:.0%}" for p in planted)))
    return notes


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
            [Cell(s, "size")] + [result_cell(cell.get((s, v))) for v in variants] for s in sizes
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
                Cell(f.time_exponent, "k"),
                Cell(f.memory_exponent, "k"),
                Cell(span),
                Cell(f.largest_ok, "size", status="bad" if f.failed else None) if f.largest_ok is not None
                else Cell("none", status="bad" if f.failed else None),
                Cell(", ".join(f.failed) or "", status="bad" if f.failed else None),
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
