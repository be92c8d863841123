"""The profile report: what torch.profiler saw inside one step of each profiled case (--profile).

Pure functions from records to format-neutral data: per profiled case (the latest record of
each case, select.latest) a Table "profile: <case>" with the top operators by self time per
step (input shapes, calls, self time, share of the step, the FLOPs torch.profiler counted),
an "other ops" row and the step's time outside any operator (CPU) or the device's idle time
(GPU); its notes say where the step's time went (compute, communication, memory copies), the
profiler's overhead against the timed median, the FLOP cross-check, and which files hold the
trace and the memory snapshot with how to open them. Every figure is the record's own
(profilers.torch_profile.profile_step and cross_checks computed them); nothing is re-derived
here but sums and ratios of them, and each note names its source.

ProfileCase adds what the HTML report draws beside the table: the bar of operator shares
(segments) and the files (paths relative to the run folder). Records that carry only a memory
snapshot (--memory-snapshot without --profile, or a case that ran out of memory) get one
"memory snapshots" table instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .schema import Record, RunResult
from .select import latest
from .tables import Cell, Table
from .units import fmt_bytes, fmt_flop_count, fmt_size, fmt_time

COLUMNS = ["#", "operator", "input shapes", "calls/step", "self time/step", "share of step", "counted FLOPs/step"]
SNAPSHOT_COLUMNS = ["case", "status", "memory snapshot", "size", "how to open / why none"]
# breakdown keys (profilers.torch_profile) -> what the notes and the bar call them
BREAKDOWN_NAMES = {
    "compute": "compute",
    "communication": "communication",
    "memory": "memory copies",
    "outside_ops": "outside ops",
    "idle": "device idle",
}
# The time the ops do not cover: on CPU the step's thread inside no operator, on a GPU the
# step's span covered by no device event.
REMAINDER = {
    "outside_ops": "time outside any op (the step's thread in Python, the framework)",
    "idle": "device idle (the step's span covered by no kernel or copy)",
}
# Shares a little above 1 are rounding (each share is its own float); above this the ops
# overlap (kernels on concurrent streams) and the bar is scaled to fit.
OVERLAP_SLACK = 1e-3
UNLOCATED_NOTE = (
    "paths are relative to the run folder (the folder of results.jsonl); this page does not know where "
    "that folder is from here, so they are text, not links"
)


@dataclass(frozen=True)
class Segment:
    """One part of the bar of operator shares: a table row's share of the profiled step."""

    key: str  # '1'..'k' for the top ops (the table's '#'), 'other', 'outside_ops' or 'idle'
    label: str
    share: float  # of the step, 0..1, as the record has it
    width: float  # of the bar, 0..1: the share, scaled down only when the shares overlap past 100%


@dataclass(frozen=True)
class ProfileFile:
    """A file the profiler wrote, as the record names it (relative to the run folder)."""

    what: str  # 'trace', 'trace (rank 1)', 'memory snapshot'
    path: str
    size_bytes: int | None
    how_to_open: str | None


@dataclass
class ProfileCase:
    """One profiled case: its table, and what the HTML draws beside it."""

    case_id: str
    name: str
    table: Table
    segments: list[Segment] = field(default_factory=list)
    bar_note: str | None = None
    files: list[ProfileFile] = field(default_factory=list)


def case_name(r: Record) -> str:
    """A case as the report names it: 'attention fwd · float32 · … · naive · N=512'."""
    return f"{r.label} · {r.variant} · {r.size_name}={fmt_size(r.size)}"


def profiled(records: list[Record]) -> list[Record]:
    """The latest record of each case that carries a profile (select.latest)."""
    return [r for r in latest(records) if r.profile]


def has_profiles(run: RunResult) -> bool:
    return bool(profiled(run.records))


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, int | float) and not isinstance(x, bool) else None


def _signed_pct(x: float) -> str:
    return f"{100 * x:+.1f}%"


def _remainder_key(p: dict[str, Any]) -> str | None:
    breakdown = p.get("breakdown") or {}
    return next((k for k in ("idle", "outside_ops") if _num(breakdown.get(k)) is not None), None)


def _op_rows(p: dict[str, Any]) -> list[list[Cell]]:
    rows = []
    for i, op in enumerate(p.get("ops") or [], 1):
        rows.append([
            Cell(i),
            Cell(str(op.get("name", "?")), note=op.get("category")),
            Cell(op.get("shapes") or ""),
            Cell(_num(op.get("calls"))),
            Cell(_num(op.get("self_s")), "s"),
            Cell(_num(op.get("share")), "%"),
            Cell(_num(op.get("flops")), "FLOP"),
        ])
    other = p.get("other_ops") or {}
    if other.get("count"):
        rows.append([
            Cell(""), Cell(f"other ops ({other['count']} more)", status="dim"), Cell(""), Cell(None),
            Cell(_num(other.get("self_s")), "s"), Cell(_num(other.get("share")), "%"), Cell(None),
        ])
    key = _remainder_key(p)
    if key is not None:
        share = _num(p["breakdown"][key])
        step = _num(p.get("step_s"))
        rows.append([
            Cell(""), Cell(BREAKDOWN_NAMES[key], status="dim", note=REMAINDER[key]), Cell(""), Cell(None),
            Cell(share * step if share is not None and step is not None else None, "s"), Cell(share, "%"), Cell(None),
        ])
    return rows


def _what_note(p: dict[str, Any]) -> str:
    ops = p.get("ops") or []
    sched = p.get("schedule") or {}
    stack = "; with Python stacks" if p.get("with_stack") else ""
    rank = (f"; rank {p['summary_of_rank']}'s operators (each rank wrote its own trace)"
            if p.get("summary_of_rank") is not None else "")
    return (
        f"top {len(ops)} operators by {p.get('sort_by', 'self time')} per step, grouped by input shape "
        f"(torch.profiler key_averages over {sched.get('active', '?')} recorded steps; schedule wait "
        f"{sched.get('wait', '?')}, warmup {sched.get('warmup', '?')}, active {sched.get('active', '?')}; "
        f"activities {', '.join(p.get('activities') or ['?'])}{stack}{rank}); share = self time / the profiled "
        f"step, {fmt_time(_num(p.get('step_s')))}: {p.get('step_source', 'profiled step wall time')}"
    )


def _breakdown_note(p: dict[str, Any]) -> str | None:
    breakdown = p.get("breakdown")
    if not breakdown:
        return None
    parts = [f"{BREAKDOWN_NAMES.get(k, k)} {_pct(v)}" for k, v in breakdown.items()]
    return f"where the step went: {' · '.join(parts)}; from {p.get('breakdown_source', 'a source not recorded')}"


def _pct(x: Any) -> str:
    v = _num(x)
    return f"{100 * v:.1f}%" if v is not None else "-"


def _overhead_note(p: dict[str, Any]) -> str | None:
    if "timed_median_s" not in p and "overhead_rel" not in p:
        return None
    rel = _num(p.get("overhead_rel"))
    note = p.get("overhead_note") or "how it was computed is not recorded"
    profiled_s, timed_s = _num(p.get("profiled_median_s")), _num(p.get("timed_median_s"))
    if rel is None:
        return f"profiler overhead: not computed ({note})"
    return (f"profiled step {fmt_time(profiled_s)} vs timed median {fmt_time(timed_s)}: {_signed_pct(rel)} "
            f"profiler overhead ({note}); the self times above are the profiled ones, overhead included")


def _flops_note(p: dict[str, Any]) -> str | None:
    if "flops_note" not in p and "counted_flops" not in p:
        return None
    counted = _num(p.get("counted_flops"))
    ratio = _num(p.get("flops_over_work"))
    note = p.get("flops_note") or "how it was computed is not recorded"
    text = f"{fmt_flop_count(counted)}/step" if counted else "none"
    if ratio is None:
        return f"FLOPs counted by torch.profiler: {text}; not compared with the analytic work ({note})"
    return f"FLOPs counted by torch.profiler: {text} = {ratio:.2f} × the analytic work ({note})"


_RANK = re.compile(r"\.rank(\d+)\.")


def profile_files(p: dict[str, Any]) -> list[ProfileFile]:
    """The trace (one per rank where the case ran data-parallel) and the memory snapshot."""
    files = []
    traces = [t for t in p.get("traces") or [] if isinstance(t, str) and t]
    if traces:
        for i, t in enumerate(traces):
            m = _RANK.search(t)
            rank = m.group(1) if m else str(i)
            size = p.get("trace_bytes") if t == p.get("trace") else None
            files.append(ProfileFile(f"trace (rank {rank})", t, size, p.get("how_to_open")))
    elif isinstance(p.get("trace"), str) and p["trace"]:
        files.append(ProfileFile("trace", p["trace"], p.get("trace_bytes"), p.get("how_to_open")))
    if isinstance(p.get("memory_snapshot"), str) and p["memory_snapshot"]:
        files.append(ProfileFile("memory snapshot", p["memory_snapshot"], p.get("memory_snapshot_bytes"),
                                 p.get("memory_snapshot_how_to_open")))
    return files


def file_text(f: ProfileFile) -> str:
    """A file as a note line: 'trace: <path> (4.5 KiB): <how to open it>'."""
    size = f" ({fmt_bytes(f.size_bytes)})" if _num(f.size_bytes) is not None else ""
    how = f": {f.how_to_open}" if f.how_to_open else ""
    return f"{f.what}: {f.path}{size}{how}"


def _file_notes(p: dict[str, Any], files: list[ProfileFile]) -> list[str]:
    notes = [file_text(f) for f in files]
    if p.get("traces") and len(p["traces"]) > 1:
        notes.append("one trace per rank; the sizes are known for the rank whose operators the table shows")
    if p.get("memory_snapshot_note"):
        notes.append(f"memory snapshot: {p['memory_snapshot_note']}")
    if p.get("memory_snapshot_skipped"):
        notes.append(f"memory snapshot: skipped ({p['memory_snapshot_skipped']})")
    return notes


def segments(p: dict[str, Any]) -> tuple[list[Segment], str | None]:
    """The bar of a profile: each top op, the other ops, and the time outside ops (CPU) or idle
    (GPU), each as wide as its share of the step; and a note when the shares overlap past 100%
    (concurrent streams on a GPU), where every width is scaled by the same factor to fit."""
    parts: list[tuple[str, str, float | None]] = []
    for i, op in enumerate(p.get("ops") or [], 1):
        shapes = f" ({op['shapes']})" if op.get("shapes") else ""
        parts.append((str(i), f"#{i} {op.get('name', '?')}{shapes}", _num(op.get("share"))))
    other = p.get("other_ops") or {}
    if other.get("count"):
        parts.append(("other", f"other ops ({other['count']})", _num(other.get("share"))))
    key = _remainder_key(p)
    if key is not None:
        parts.append((key, BREAKDOWN_NAMES[key], _num(p["breakdown"][key])))
    shown = [(k, label, s) for k, label, s in parts if s is not None and s > 0]
    total = sum(s for _, _, s in shown)
    factor, note = 1.0, None
    if total > 1 + OVERLAP_SLACK:
        factor = 1 / total
        note = (f"the shares add up to {100 * total:.1f}% of the step (operators on concurrent streams overlap): "
                f"the bar's widths are the shares × {factor:.3f}, so it fits")
    return [Segment(k, label, s, s * factor) for k, label, s in shown], note


def profile_case(r: Record) -> ProfileCase:
    """The table (and the bar and files) of one record with a profile with operators or an error."""
    p = r.profile or {}
    name = case_name(r)
    files = profile_files(p)
    if "error" in p:
        rows = [[Cell(""), Cell("profiler pass failed (see below)", status="bad", note=str(p["error"])),
                 *[Cell(None) for _ in COLUMNS[2:]]]]
        notes = [f"profiler pass failed: {p['error']}; the timed figures stand (the profiler runs in a pass "
                 "of its own, after timing)", *_file_notes(p, files)]
        return ProfileCase(r.case_id, name, Table(f"profile: {name}", COLUMNS, rows, notes), files=files)
    notes = [
        _what_note(p),
        *([f"profiler: {p['note']}"] if p.get("note") else []),  # e.g. CUDA asked for, no kernel recorded
        *[n for n in (_breakdown_note(p), _overhead_note(p), _flops_note(p)) if n],
        *_file_notes(p, files),
    ]
    segs, bar_note = segments(p)
    return ProfileCase(r.case_id, name, Table(f"profile: {name}", COLUMNS, _op_rows(p), notes),
                       segments=segs, bar_note=bar_note, files=files)


def snapshot_table(records: list[Record]) -> Table | None:
    """Records whose profile holds only memory-snapshot keys (no profiler pass ran: --memory-snapshot
    alone, or a case that ran out of memory): one row each, the snapshot or why none was taken."""
    rows = []
    for r in records:
        p = r.profile or {}
        snap = p.get("memory_snapshot")
        status = Cell(r.status, status="bad" if r.status in ("oom", "error") else None)
        if isinstance(snap, str) and snap:
            how = p.get("memory_snapshot_how_to_open") or ""
            why = f"{how}; {p['memory_snapshot_note']}" if p.get("memory_snapshot_note") else how
            rows.append([Cell(case_name(r)), status, Cell(snap), Cell(_num(p.get("memory_snapshot_bytes")), "B"),
                         Cell(why)])
        else:
            why = p.get("memory_snapshot_skipped") or "no snapshot recorded"
            rows.append([Cell(case_name(r)), status, Cell("none", status="dim"), Cell(None),
                         Cell(f"skipped: {why}", status="dim")])
    if not rows:
        return None
    return Table(
        "memory snapshots (--memory-snapshot)", SNAPSHOT_COLUMNS, rows,
        ["CUDA caching allocator history around one step (torch.cuda.memory._record_memory_history), dumped by "
         "torch.cuda.memory._dump_snapshot; a case that ran out of memory is dumped at the failure; paths are "
         "relative to the run folder"],
    )


def profile_cases(run: RunResult) -> list[ProfileCase]:
    """One ProfileCase per profiled case whose profile holds operators or an error."""
    return [profile_case(r) for r in profiled(run.records) if "ops" in r.profile or "error" in r.profile]


def snapshot_only(run: RunResult) -> list[Record]:
    return [r for r in profiled(run.records) if "ops" not in r.profile and "error" not in r.profile]


def profile_report(run: RunResult) -> tuple[list[ProfileCase], list[Table]]:
    """The profiled cases, and every table of the profile report: each case's (the same Table
    objects), then the snapshot-only records' table."""
    cases = profile_cases(run)
    snaps = snapshot_table(snapshot_only(run))
    return cases, [c.table for c in cases] + ([snaps] if snaps is not None else [])


def profile_tables(run: RunResult) -> list[Table]:
    """Every table of the profile report: one per profiled case, then the snapshot-only records' table."""
    return profile_report(run)[1]


def profile_intro(run: RunResult) -> list[str]:
    cases = profile_cases(run)
    snaps = snapshot_only(run)
    parts = []
    if cases:
        parts.append(
            f"{len(cases)} case{'s' if len(cases) != 1 else ''} profiled with torch.profiler in a pass of "
            "its own after timing (the timed figures above never ran under the profiler): the operators that "
            "took the step's time, where the rest went, and the files to open in a trace viewer"
        )
    if snaps:
        parts.append(f"{len(snaps)} case{'s' if len(snaps) != 1 else ''} with a memory snapshot only")
    return parts
