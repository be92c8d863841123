"""The between-run table: each repeated case's spread between runs beside its within-run CI.

Samples inside one run cannot see what changes between runs (another process's cache, the
frequency the CPU settled at, where the allocator put the buffers); `xfbench run --repeat K`
measures it. This table puts the two side by side, so a reader sees when the within-run CI
(the ± a single run prints) understates the real noise.
"""

from __future__ import annotations

from .between_runs import repeats
from .schema import RunResult
from .select import latest
from .tables import Cell, Table


def repeats_table(run: RunResult) -> Table | None:
    """One row per case measured in 2 or more runs (None when no case was): the runs' medians, their
    spread, and the within-run CI of the latest run."""
    reps = repeats(run, "time")
    many = {cid: r for cid, r in reps.items() if r.n_runs >= 2}
    if not many:
        return None
    rows = []
    for rec in latest(run.records):
        rep = many.get(rec.case_id)
        if rep is None or rec.time is None:
            continue
        ratio = rep.spread_rel / rec.time.ci_rel if rec.time.ci_rel else None
        rows.append([
            Cell(f"{rec.label} · {rec.variant} · {rec.size_name}={rec.size}"),
            Cell(rep.n_runs, None),
            Cell(min(rep.values), "s"),
            Cell(max(rep.values), "s"),
            Cell(rep.spread_rel, "%", status="warn" if ratio is not None and ratio > 2 else None),
            Cell(rec.time.ci_rel, "%", label="±"),
            Cell(ratio, "ratio"),
        ])
    return Table(
        title="Between-run spread (--repeat) beside the within-run CI",
        columns=["case", "runs", "fastest run", "slowest run", "spread", "within-run CI", "spread / CI"],
        rows=rows,
        notes=[
            "spread: (slowest - fastest) / median of the runs' medians, each run a fresh process; within-run "
            "CI: the latest run's 95% CI of the median (relative half-width); spread / CI above 2 (marked): a "
            "single run's CI understates the noise; `xfbench compare` then tests the runs' medians against each other",
        ],
    )
