"""Data-parallel report: pure functions from `xfbench parallel` records to format-neutral Tables.

Per label (model, dtype, scaling, batch, T): world sizes are rows and strategies columns, each
cell stacking global and per-rank tokens/s (±CI), the scaling efficiency against `single`
(±CI), the exposed communication, peak memory per rank and the bytes each rank sends; then the
ranks' spread (stragglers) and their memory. Collectives: per label, message sizes are rows and
each op has time, algbw and busbw columns (nccl-tests). These replace the generic tables for
the `parallel` and `collective` workloads (reports.document.WORKLOAD_TABLES): an exponent over
world sizes or message bytes says nothing, and a collective has no FLOP/s. Every formula in a
caption is the one the records' info strings name; reports never import workloads (torch).
"""

from __future__ import annotations

import math
from typing import Any

from .schema import Record, RunResult
from .select import latest
from .tables import Cell, Table, results_tables, scaling_table, synthetic_notes, warning_notes
from .units import fmt_time

# What marks the records these tables are for: every `xfbench parallel` case names its world
# size, every collective case its message size. Records of these workloads without it (a file
# from elsewhere) get the generic tables, grouped by metadata as any workload is.
PARALLEL, COLLECTIVE = "parallel", "collective"  # the workloads whose records these tables read
WORLD_SIZE = "world_size"
MESSAGE_BYTES = "message_bytes"
BASELINE = "single"  # the strategy scaling efficiency divides by (workloads.parallel: one device)
# A rank whose median step is this much above the fastest rank's is marked: a few percent is the
# noise of one host's scheduling, more than that is worth a look (a slow GPU, a busy core).
STRAGGLER_SPREAD = 0.05
NO_TOKENS_DEFINITION = "tokens/s: these records carry no info['tokens_definition']"


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) else None


def _by_label(records: list[Record]) -> dict[str, list[Record]]:
    out: dict[str, list[Record]] = {}
    for r in records:
        out.setdefault(r.label, []).append(r)
    return out


def _status_cell(r: Record) -> Cell:
    """The status of a record that did not run; its reason is listed under the table."""
    text = {"oom": "OOM", "skipped": "skipped (see below)"}.get(r.status, f"{r.status} (see below)")
    return Cell(text, status="dim" if r.status == "skipped" else "bad", note=r.reason)


def _distinct(recs: list[Record], key: str) -> list[str]:
    return list(dict.fromkeys(str(r.info[key]) for r in recs if r.info.get(key) is not None))


def _per_variant(recs: list[Record], key: str, what: str) -> list[str]:
    """'<variant> <what>: <info[key]>' once per distinct (variant, text)."""
    seen = dict.fromkeys((r.variant, str(r.info[key])) for r in recs if r.info.get(key) is not None)
    return [f"{variant} {what}: {text}" for variant, text in seen]


def _ran(r: Record | None) -> bool:
    return r is not None and r.status == "ok" and r.time is not None


def peak_per_rank(r: Record) -> float | None:
    """The highest of the ranks' own peaks (never summed); the record's peak without ranks."""
    peaks = [p for rank in r.ranks or [] if (p := _num(rank.peak_mem_bytes)) is not None]
    if peaks:
        return max(peaks)
    peak = _num(r.metrics.get("peak_mem_bytes"))
    if peak is None and r.memory is not None:
        peak = _num(r.memory.peak_bytes)
    return peak


def memory_per_rank(r: Record) -> tuple[float | None, str]:
    """(bytes, what): the rank's state + the step's peak above it where the record counts the state
    (metrics.mem_per_rank_bytes: what FSDP shards shows here), else the peak above the baseline alone."""
    total = _num(r.metrics.get("mem_per_rank_bytes"))
    if total is not None:
        return total, "memory/rank"
    return peak_per_rank(r), "peak mem/rank"


def exposed_comm_half_frac(r: Record) -> float | None:
    """The 95% CI half-width of exposed_comm_frac, in units of the step (exposed_comm_ci_s /
    median step time); None where the record carries no exposed_comm_ci_s."""
    half, t = _num(r.metrics.get("exposed_comm_ci_s")), r.time.median_s if r.time is not None else None
    return half / t if half is not None and t else None


# --- data-parallel ----------------------------------------------------------------------------


def _efficiency_cell(r: Record, by_case: dict[str, Record]) -> Cell:
    if r.variant == BASELINE:
        return Cell(1.0, "ratio", label="efficiency ", suffix=" (baseline)", status="dim",
                    note="the baseline: efficiency 1 by definition")
    eff = _num(r.metrics.get("scaling_efficiency"))
    if eff is None:
        return Cell(None, label="efficiency ", status="dim", note=r.info.get("scaling_efficiency"))
    base = by_case.get(str(r.metrics.get("baseline_case_id")))
    level = min(r.time.ci_level, base.time.ci_level) if _ran(base) else r.time.ci_level
    return Cell(eff, "ratio", ci_rel=_num(r.metrics.get("scaling_efficiency_ci_rel")), ci_level=level,
                label="efficiency ")


def _points(half: float | None, r: Record) -> str:
    """' ±x pp' of the step, with the CI's level where it is below 95% (few samples)."""
    if half is None:
        return ""
    level = min(r.time.ci_level, 0.95)
    return f" ±{100 * half:.1f} pp" + (f" ({level:.0%} CI)" if level < 0.95 else "")


def _exposed_cell(r: Record) -> Cell:
    frac = _num(r.metrics.get("exposed_comm_frac"))
    if frac is not None:
        half = exposed_comm_half_frac(r)
        negative = frac < 0
        return Cell(
            frac, "%", label="exposed comm ", suffix=_points(half, r),
            status="dim" if negative else None,
            note="below 0: the step without gradient sync took longer; nothing measurable is exposed"
            if negative else None,
        )
    why = r.info.get("exposed_comm")
    if why:
        return Cell(None, label="exposed comm ", note=str(why))
    if _num(r.metrics.get("comm_bytes_per_rank_per_step")) == 0 and r.variant == BASELINE:
        return Cell("none", label="exposed comm ", status="dim", note="one device: no communication")
    return Cell(None, label="exposed comm ")


def strategy_cell(r: Record | None, by_case: dict[str, Record]) -> Cell:
    """One (world size, strategy) cell: global tokens/s ±CI, then per rank, efficiency, exposed
    comm, peak memory per rank and bytes sent per rank per step, one line each."""
    if r is None:
        return Cell("", status="dim")
    if not _ran(r):
        return _status_cell(r)
    t, m = r.time, r.metrics
    more = (
        Cell(_num(m.get("tokens_per_s_per_rank")), "tok/s", ci_rel=t.ci_rel, ci_level=t.ci_level, label="per rank "),
        _efficiency_cell(r, by_case),
        _exposed_cell(r),
        Cell(memory_per_rank(r)[0], "B", label=f"{memory_per_rank(r)[1]} "),
        *([Cell(_num(m.get("state_bytes_per_rank")), "B", label="state/rank ")]
          if m.get("state_bytes_per_rank") is not None else []),
        Cell(_num(m.get("comm_bytes_per_rank_per_step")), "B", label="comm/rank/step "),
    )
    return Cell(
        _num(m.get("tokens_per_s")), "tok/s", ci_rel=t.ci_rel, ci_level=t.ci_level, label="global ", more=more,
        status="warn" if r.warnings else None, note=", ".join(r.warnings) or None,
    )


def _parallel_notes(recs: list[Record], hints: dict[str, str] | None) -> list[str]:
    ok = [r for r in recs if _ran(r)]
    if not ok:  # nothing measured: only what happened to each case
        return [f"{r.variant} at {r.size_name}={r.size}: {r.status}: {r.reason}" for r in recs if r.reason]
    notes = [*synthetic_notes(recs), *(_distinct(ok, "tokens_definition") or [NO_TOKENS_DEFINITION])]
    notes.append(
        "global: the job's tokens/s, per rank: one rank's tokens / the same step time; both ± the step time's "
        "relative 95% CI of the median (a rate is tokens / median, so its relative CI is the time's)"
    )
    efficiency = [text for text in _distinct([r for r in ok if r.metrics.get("scaling_efficiency") is not None],
                                             "scaling_efficiency")]
    notes += [f"efficiency = {text}" for text in efficiency]
    if any(r.variant == BASELINE for r in ok):
        notes.append(f"{BASELINE} (the plain model on one device) is the baseline: its efficiency is 1 by "
                     "definition, with no CI")
    for r in ok:
        if r.variant != BASELINE and r.metrics.get("scaling_efficiency") is None:
            notes.append(f"{r.variant} at {r.size_name}={r.size}: no efficiency: "
                         f"{r.info.get('scaling_efficiency') or 'the record carries no scaling_efficiency'}")
    measured = [r for r in ok if r.metrics.get("exposed_comm_frac") is not None]
    if measured:
        notes.append(
            "exposed comm = (synchronized step - the same step with gradient sync skipped) / synchronized step, "
            "± its 95% CI half-width in percentage points (pp) of the step (metrics.exposed_comm_ci_s / step); "
            "below 0: the step without sync took longer, so nothing measurable is exposed"
        )
        bare = sorted({f"{r.variant} at {r.size_name}={r.size}" for r in measured
                       if r.metrics.get("exposed_comm_ci_s") is None})
        if bare:
            notes.append(f"exposed comm without a CI ({', '.join(bare)}): the record carries no exposed_comm_ci_s "
                         "(written before xfbench recorded it)")
    notes += _per_variant(ok, "exposed_comm", "exposed comm")
    notes += _per_variant(ok, "comm_bytes_formula", "comm/rank/step")
    methods = sorted({rank.memory_method for r in ok for rank in r.ranks or [] if rank.memory_method}
                     | {r.memory.method for r in ok if r.memory is not None and not r.ranks})
    notes.append(
        "peak mem/rank: the highest of the ranks' own peaks (record.ranks; memory is per rank, never summed), "
        "measured in a separate pass above the memory in use before a step"
        + (f" ({', '.join(methods)})" if methods else "")
    )
    notes += _distinct([r for r in ok if r.metrics.get("mem_per_rank_bytes") is not None], "memory_per_rank")
    notes += _per_variant(ok, "wrapper", "runs as")
    backends = sorted({str(r.info.get("backend") or r.params.get("backend")) for r in ok
                       if r.info.get("backend") or r.params.get("backend")})
    if backends:
        notes.append(f"backend: {', '.join(backends)}")
    notes += [f"{r.variant} at {r.size_name}={r.size}: {r.status}: {r.reason}" for r in recs
              if r.status != "ok" and r.reason]
    notes += warning_notes(recs, hints)
    return notes


def parallel_table(label: str, recs: list[Record], hints: dict[str, str] | None = None,
                   by_case: dict[str, Record] | None = None) -> Table:
    """One table per label: rows are world sizes, columns strategies (first seen, `single` first
    as the workload plans it); each cell is strategy_cell's stack.

    Args:
        label: the records' label.
        recs: the latest record of each of its cases.
        hints: warning code -> what to do (the results header's warning_hints).
        by_case: case_id -> record, to find each efficiency's baseline (default: recs).
    """
    by_case = by_case or {r.case_id: r for r in recs}
    strategies = list(dict.fromkeys(r.variant for r in recs))
    sizes = sorted({r.size for r in recs})
    cell = {(r.size, r.variant): r for r in recs}
    rows = [[Cell(n, "size"), *(strategy_cell(cell.get((n, s)), by_case) for s in strategies)] for n in sizes]
    title = f"{label} — tokens/s, scaling efficiency, exposed comm and memory per rank by world size"
    return Table(title, [recs[0].size_name, *strategies], rows, _parallel_notes(recs, hints))


def _rank_medians(r: Record) -> list[tuple[int, float]]:
    return [(rank.rank, m) for rank in r.ranks or [] if (m := _num(rank.median_s)) is not None]


def ranks_table(label: str, recs: list[Record]) -> Table | None:
    """Per (strategy, world size) that ran on more than one rank: the slowest and fastest rank's
    median, their spread, and the highest and lowest peak memory of a rank."""
    rows = []
    for r in sorted((r for r in recs if _ran(r) and len(r.ranks or []) > 1), key=lambda r: (r.size, r.variant)):
        medians = _rank_medians(r)
        if not medians:
            continue
        slow, fast = max(medians, key=lambda x: x[1]), min(medians, key=lambda x: x[1])
        spread = _num(r.metrics.get("rank_spread_rel"))
        if spread is None and fast[1] > 0:
            spread = (slow[1] - fast[1]) / fast[1]
        peaks = [(rank.rank, p) for rank in r.ranks if (p := _num(rank.peak_mem_bytes)) is not None]
        high = max(peaks, key=lambda x: x[1]) if peaks else None
        low = min(peaks, key=lambda x: x[1]) if peaks else None
        threads = sorted({rank.threads for rank in r.ranks if rank.threads is not None})
        hosts = list(dict.fromkeys(rank.host for rank in r.ranks if rank.host))
        rows.append([
            Cell(r.variant), Cell(r.size, "size"),
            Cell(slow[1], "s", label=f"rank {slow[0]}: "), Cell(fast[1], "s", label=f"rank {fast[0]}: "),
            Cell(spread, "%", status="warn" if spread is not None and spread > STRAGGLER_SPREAD else None),
            Cell(high[1], "B", label=f"rank {high[0]}: ") if high else Cell(None),
            Cell(low[1], "B", label=f"rank {low[0]}: ") if low else Cell(None),
            Cell(", ".join(str(t) for t in threads) or "-"), Cell(", ".join(hosts) or "-"),
        ])
    if not rows:
        return None
    return Table(
        f"{label} — ranks: stragglers and memory per rank",
        ["strategy", recs[0].size_name, "slowest rank", "fastest rank", "spread", "highest peak mem",
         "lowest peak mem", "threads/rank", "hosts"],
        rows,
        [
            *synthetic_notes(recs),
            "slowest, fastest rank: the median of that rank's own window times (record.ranks); spread = "
            "(slowest - fastest) / fastest (metrics.rank_spread_rel); the step time above is the max over ranks "
            "of each window, so it is at least the slowest rank's median",
            f"a spread above {STRAGGLER_SPREAD:.0%} is highlighted: a straggler holds every rank back at each "
            "gradient sync",
            "peak mem: each rank's own peak in the memory pass (never summed)",
        ],
    )


DDP_LOGGING = (
    "DDP's own log: the sampled averages DistributedDataParallel's reducer keeps (_get_ddp_logging_data: "
    "avg_backward_compute_time, avg_backward_comm_time, avg_backward_compute_comm_overlap_time), '-' where it "
    "recorded none"
)


def comm_table(label: str, recs: list[Record]) -> Table | None:
    """Per (strategy, world size) with a no-sync pass or DDP's own log: the step with and without
    gradient sync, their difference (exposed comm) ±CI, bytes sent, and DDP's logged backward times."""
    keys = ("nosync_time_s", "ddp_backward_compute_s", "ddp_backward_comm_s", "ddp_backward_overlap_s")
    rows, shown = [], sorted((r for r in recs if _ran(r) and any(k in r.metrics for k in keys)),
                             key=lambda r: (r.size, r.variant))
    for r in shown:
        m, t = r.metrics, r.time
        exposed, half = _num(m.get("exposed_comm_s")), _num(m.get("exposed_comm_ci_s"))
        rows.append([
            Cell(r.variant), Cell(r.size, "size"),
            Cell(t.median_s, "s", ci_rel=t.ci_rel, ci_level=t.ci_level),
            Cell(_num(m.get("nosync_time_s")), "s"),
            Cell(exposed, "s", suffix=f" ±{fmt_time(half)}" if half is not None and exposed is not None else ""),
            Cell(_num(m.get("comm_bytes_per_rank_per_step")), "B"),
            *(Cell(_num(m.get(k)), "s") for k in keys[1:]),
        ])
    if not rows:
        return None
    return Table(
        f"{label} — gradient sync: the step with and without it, and DDP's own log",
        ["strategy", recs[0].size_name, "step", "step without sync", "exposed comm", "sent/rank/step",
         "DDP backward compute", "DDP backward comm", "DDP overlap"],
        rows,
        [
            *synthetic_notes(recs),
            "step: median ±95% CI of the median (relative), the max over ranks of each window; step without sync: "
            "the same step with gradient sync skipped (metrics.nosync_time_s); exposed comm = step - step without "
            "sync, ± its 95% CI half-width (metrics.exposed_comm_ci_s) where the record has one",
            *_per_variant(shown, "comm_bytes_formula", "sent/rank/step"),
            DDP_LOGGING,
        ],
    )


def _is_data_parallel(recs: list[Record]) -> bool:
    return any(WORLD_SIZE in r.params for r in recs)


def _generic(records: list[Record], hints: dict[str, str] | None) -> list[Table]:
    if not records:
        return []
    scaling = scaling_table(records)
    return results_tables(records, hints) + ([scaling] if scaling else [])


def parallel_tables(run: RunResult) -> list[Table]:
    """Every data-parallel table of a run: per label, parallel_table, comm_table, ranks_table.

    A label whose records name no world size (params['world_size']) gets the generic tables.
    """
    recs = [r for r in latest(run.records) if r.workload == PARALLEL]
    by_case = {r.case_id: r for r in recs}
    hints = run.header.warning_hints
    tables, others = [], []
    for label, rs in _by_label(recs).items():
        if not _is_data_parallel(rs):
            others += rs
            continue
        tables.append(parallel_table(label, rs, hints, by_case))
        tables += [t for t in (comm_table(label, rs), ranks_table(label, rs)) if t is not None]
    return tables + _generic(others, hints)


# --- collectives ------------------------------------------------------------------------------


def _bandwidth_cells(r: Record | None) -> list[Cell]:
    if r is None:
        return [Cell("", status="dim")] * 3
    if not _ran(r):
        return [_status_cell(r), Cell(""), Cell("")]
    t, m = r.time, r.metrics
    return [
        Cell(t.median_s, "s", ci_rel=t.ci_rel, ci_level=t.ci_level, status="warn" if r.warnings else None,
             note=", ".join(r.warnings) or None),
        Cell(_num(m.get("algbw_bytes_per_s")), "B/s"),
        Cell(_num(m.get("busbw_bytes_per_s")), "B/s"),
    ]


def _factor_notes(recs: list[Record]) -> list[str]:
    """'all_reduce: busbw = algbw · 2(n-1)/n (1 at 2 ranks)', the value read off the records."""
    out = {}
    for r in recs:
        if not _ran(r) or "busbw_factor" not in r.info:
            continue
        alg, bus = _num(r.metrics.get("algbw_bytes_per_s")), _num(r.metrics.get("busbw_bytes_per_s"))
        n = r.params.get(WORLD_SIZE) or r.metrics.get(WORLD_SIZE)
        value = f" ({bus / alg:.3g} at {n} ranks)" if alg and bus is not None and n else ""
        out.setdefault(r.variant, f"{r.variant}: busbw = algbw · {r.info['busbw_factor']}{value}")
    return list(out.values())


def collective_table(label: str, recs: list[Record], hints: dict[str, str] | None = None) -> Table:
    """One table per label: rows are message sizes, each op (first seen) has time, algbw and busbw."""
    ops = list(dict.fromkeys(r.variant for r in recs))
    sizes = sorted({r.size for r in recs})
    cell = {(r.size, r.variant): r for r in recs}
    rows = [[Cell(n, "B"), *(c for op in ops for c in _bandwidth_cells(cell.get((n, op))))] for n in sizes]
    columns = [recs[0].size_name, *(f"{op} {what}" for op in ops for what in ("time", "algbw", "busbw"))]
    notes = [
        *synthetic_notes(recs),
        "time: median per call ±95% CI of the median (relative), each window the max over ranks; algbw and busbw "
        "are bytes / that median, so their relative CI is the time's (not repeated)",
        *(f"bandwidth: {c}" for c in _distinct(recs, "bandwidth_convention")),
        *_factor_notes(recs),
        *_distinct(recs, "message_definition"),
        *_distinct(recs, "backend_note"),
        *(f"{r.variant} at {r.size_name}={r.size}: {r.status}: {r.reason}" for r in recs
          if r.status != "ok" and r.reason),
        *warning_notes(recs, hints),
    ]
    return Table(f"{label} — collective time, algbw and busbw by message size", columns, rows, notes)


def _is_collective(recs: list[Record]) -> bool:
    return any(MESSAGE_BYTES in r.params for r in recs)


def collective_tables(run: RunResult) -> list[Table]:
    """One collective_table per label; a label whose records name no message size
    (params['message_bytes']) gets the generic tables."""
    recs = [r for r in latest(run.records) if r.workload == COLLECTIVE]
    hints = run.header.warning_hints
    tables, others = [], []
    for label, rs in _by_label(recs).items():
        if _is_collective(rs):
            tables.append(collective_table(label, rs, hints))
        else:
            others += rs
    return tables + _generic(others, hints)
