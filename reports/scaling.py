"""Scaling fits over a sweep: log-log exponents of time and memory versus the swept size."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .schema import Record
from .select import latest

FAILED = ("oom", "error")


def fit_loglog(xs: list[float], ys: list[float]) -> float | None:
    """Least-squares slope of log(y) against log(x): the exponent k in y ~ x^k.

    None with fewer than two distinct x values or any non-positive value.
    """
    if len(xs) != len(ys) or any(v <= 0 for v in (*xs, *ys)):
        return None
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    if len(set(lx)) < 2:
        return None
    mx, my = math.fsum(lx) / len(lx), math.fsum(ly) / len(ly)
    sxx = math.fsum((x - mx) ** 2 for x in lx)
    sxy = math.fsum((x - mx) * (y - my) for x, y in zip(lx, ly, strict=True))
    return sxy / sxx


def larger_half(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points at the larger half of the sizes (the upper ceil(n/2), at least two).

    Small sizes are dominated by fixed overheads, so exponents are fitted where the
    asymptotic term dominates.
    """
    pts = sorted(points)
    keep = max(2, math.ceil(len(pts) / 2))
    return pts[-keep:]


def exponent(points: list[tuple[float, float | None]]) -> float | None:
    """fit_loglog over (size, value) points; points without a positive value are left out.

    None with fewer than two points left.
    """
    pts = [(x, y) for x, y in points if y is not None and y > 0]
    return fit_loglog([x for x, _ in pts], [y for _, y in pts]) if len(pts) >= 2 else None


def series(records: list[Record]) -> dict[tuple[str, str], list[Record]]:
    """The latest record of each case, grouped per series (label, variant), in first-seen order."""
    groups: dict[tuple[str, str], list[Record]] = {}
    for r in latest(records):
        groups.setdefault((r.label, r.variant), []).append(r)
    return groups


def ran(recs: list[Record]) -> list[Record]:
    """The records that ran and were timed."""
    return [r for r in recs if r.status == "ok" and r.time is not None]


@dataclass(frozen=True)
class SeriesFit:
    """Scaling summary of one series (label, variant)."""

    label: str
    variant: str
    size_name: str
    time_exponent: float | None
    memory_exponent: float | None
    fit_sizes: tuple[float, ...]
    largest_ok: float | None
    failed: tuple[str, ...]  # e.g. ('oom at N=8192',)


def fit_series(records: list[Record]) -> list[SeriesFit]:
    """One SeriesFit per (label, variant), in first-seen order, from the latest record of each case."""
    out = []
    for (label, variant), recs in series(records).items():
        ok = ran(recs)
        t_pts = larger_half([(float(r.size), r.time.median_s) for r in ok])
        m_pts = larger_half(
            [(float(r.size), float(r.memory.peak_bytes)) for r in ok
             if r.memory is not None and r.memory.peak_bytes]
        )
        failed = tuple(f"{r.status} at {r.size_name}={r.size}" for r in recs if r.status in FAILED)
        out.append(
            SeriesFit(
                label=label, variant=variant, size_name=recs[0].size_name,
                time_exponent=exponent(t_pts),
                memory_exponent=exponent(m_pts),
                fit_sizes=tuple(p[0] for p in t_pts) if len(t_pts) >= 2 else (),
                largest_ok=max((float(r.size) for r in ok), default=None),
                failed=failed,
            )
        )
    return out
