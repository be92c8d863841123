"""The findings of a run in words, each with the measured numbers it rests on.

Per workload a function states what its sweep shows (attention: the fitted exponents, the
best implementation's speed-up over naive at the largest N, where the recurrent baseline
and attention cross; models: tokens/s and MFU per size and their exponents); any other
workload gets the generic exponents. Then the warnings and failures that matter. Pure:
from the records alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from .scaling import exponent, fit_series, ran, series
from .schema import Record, RunResult
from .select import latest
from .tables import SYNTHETIC_NOTE
from .units import fmt_exponent, fmt_pct, fmt_rate, fmt_size, fmt_time

RECURRENT = "lstm"  # the attention workload's recurrent baseline (workloads.attention.IMPLS)
NAIVE = "naive"
FAR = 1e12  # an extrapolated crossover past this length is named as 'beyond', not computed


@dataclass(frozen=True)
class Finding:
    """One sentence of the summary; `status` 'warn' or 'bad' marks one that qualifies the rest."""

    text: str
    status: str | None = None
    workload: str | None = None


def _by_label(records: list[Record]) -> dict[str, list[Record]]:
    out: dict[str, list[Record]] = {}
    for r in records:
        out.setdefault(r.label, []).append(r)
    return out


def exponent_findings(records: list[Record], workload: str) -> list[Finding]:
    """Per table: the fitted time and memory exponents of each series, and the span fitted."""
    out = []
    fits = fit_series(records)
    for label in dict.fromkeys(f.label for f in fits):
        mine = [f for f in fits if f.label == label and f.time_exponent is not None]
        if not mine:
            continue
        name = mine[0].size_name
        span = mine[0].fit_sizes
        parts = [
            f"{f.variant} {name}^{fmt_exponent(f.time_exponent)}"
            + (f" (memory {name}^{fmt_exponent(f.memory_exponent)})" if f.memory_exponent is not None else "")
            for f in mine
        ]
        where = f" over {name}={fmt_size(span[0])}..{fmt_size(span[-1])}" if span else ""
        out.append(Finding(f"{label}: time per call grows as {', '.join(parts)}{where} "
                           "(log-log least squares over the larger half of the sizes)", workload=workload))
    return out


def _speedup(label: str, recs: list[Record]) -> Finding | None:
    """The fastest non-naive, non-recurrent implementation over naive at the largest N naive ran."""
    ok = ran(recs)
    naive = {r.size: r for r in ok if r.variant == NAIVE}
    if not naive:
        return None
    n = max(naive)
    rivals = [r for r in ok if r.size == n and r.variant not in (NAIVE, RECURRENT)]
    if not rivals:
        return None
    best = min(rivals, key=lambda r: r.time.median_s)
    base = naive[n]
    ratio = base.time.median_s / best.time.median_s
    overlap = best.time.ci_high_s >= base.time.ci_low_s and base.time.ci_high_s >= best.time.ci_low_s
    backend = best.info.get("sdpa_backend") or best.info.get("backend")
    which = f"{best.variant}" + (f" (backend {backend})" if backend and backend != best.variant else "")
    verdict = "; their 95% CIs overlap, so the difference is within the noise" if overlap else ""
    return Finding(
        f"{label}: at {best.size_name}={fmt_size(n)}, the fastest implementation, {which}, takes "
        f"{fmt_time(best.time.median_s)} per call against naive's {fmt_time(base.time.median_s)}: "
        f"{ratio:.2f}x naive's speed{verdict}",
        workload="attention",
    )


def _log_cross(n0: float, d0: float, n1: float, d1: float) -> float:
    """Where a log-log line through (n0, d0) and (n1, d1) crosses d = 0 (d = log of a time ratio)."""
    t = d0 / (d0 - d1)
    return math.exp(math.log(n0) + t * (math.log(n1) - math.log(n0)))


def _crossover(label: str, recs: list[Record]) -> Finding | None:
    """Where the recurrent baseline and the fastest attention implementation at each N cross."""
    ok = ran(recs)
    rnn = {r.size: r.time.median_s for r in ok if r.variant == RECURRENT}
    att: dict[float, float] = {}
    for r in ok:
        if r.variant != RECURRENT:
            att[r.size] = min(att.get(r.size, math.inf), r.time.median_s)
    sizes = sorted(set(rnn) & set(att))
    if len(sizes) < 2:
        return None
    name = recs[0].size_name
    d = [math.log(att[n] / rnn[n]) for n in sizes]  # < 0: attention faster
    for (n0, d0), (n1, d1) in zip(zip(sizes, d, strict=True), zip(sizes[1:], d[1:], strict=True), strict=False):
        if d0 == 0:
            return Finding(f"{label}: attention and the {RECURRENT} baseline take the same time at {name}={n0}",
                           workload="attention")
        if (d0 < 0) != (d1 < 0):
            n = _log_cross(n0, d0, n1, d1)
            after = "attention" if d1 < 0 else f"the {RECURRENT} baseline"
            return Finding(
                f"{label}: attention (its fastest implementation at each {name}) and the {RECURRENT} baseline "
                f"cross at {name} ≈ {fmt_size(round(n))} (log-log interpolation between {name}={n0} and {n1}); "
                f"above it {after} is faster",
                workload="attention",
            )
    faster = "attention" if d[-1] < 0 else f"the {RECURRENT} baseline"
    ratio = math.exp(abs(d[-1]))
    k_att = exponent([(float(n), att[n]) for n in sizes[-2:]])
    k_rnn = exponent([(float(n), rnn[n]) for n in sizes[-2:]])
    text = (f"{label}: {faster} is faster at every {name} measured ({fmt_size(sizes[0])}..{fmt_size(sizes[-1])}; "
            f"{ratio:.1f}x at {name}={fmt_size(sizes[-1])})")
    if k_att is not None and k_rnn is not None and d[-1] < 0 and k_att > k_rnn:
        log_n = math.log(sizes[-1]) - d[-1] / (k_att - k_rnn)  # in logs: near-equal slopes cross far out
        where = f"near {name} ≈ {fmt_size(round(math.exp(log_n)))}" if log_n < math.log(FAR) else (
            f"only beyond {name} = {fmt_size(FAR)}")
        text += (f"; extrapolating the last two sizes' slopes (attention {fmt_exponent(k_att)}, "
                 f"{RECURRENT} {fmt_exponent(k_rnn)}), they would cross {where} (not measured)")
    return Finding(text, workload="attention")


def attention_findings(records: list[Record]) -> list[Finding]:
    out = exponent_findings(records, "attention")
    for label, recs in _by_label(records).items():
        out += [f for f in (_speedup(label, recs), _crossover(label, recs)) if f is not None]
    return out


def model_findings(records: list[Record]) -> list[Finding]:
    """Per mode table: tokens/s and MFU per model, and tokens/s ~ params^k."""
    out = []
    for (label, variant), recs in series(records).items():
        ok = sorted(ran(recs), key=lambda r: r.size)
        if not ok:
            continue
        parts = []
        for r in ok:
            mfu = r.metrics.get("mfu_measured")
            parts.append(
                f"{r.params.get('preset', fmt_size(r.size))} {fmt_rate(r.metrics.get('tokens_per_s'), 'tok')}"
                + (f" (MFU {fmt_pct(mfu)})" if isinstance(mfu, int | float) else "")
            )
        k = exponent([(float(r.size), r.metrics.get("tokens_per_s")) for r in ok])
        slope = f"; tokens/s ~ params^{fmt_exponent(k)}" if k is not None else ""
        out.append(Finding(f"{label} · {variant}: {', '.join(parts)}{slope}", workload="model"))
    return out


# workload -> its findings from its latest records; others get exponent_findings
WORKLOAD_FINDINGS: dict[str, Callable[[list[Record]], list[Finding]]] = {
    "attention": attention_findings,
    "model": model_findings,
}


def caveats(records: list[Record], hints: dict[str, str]) -> list[Finding]:
    """The warnings and failures that qualify the findings, most serious first."""
    out = []
    if any(r.time is not None and r.time.clock == "fake" for r in records):
        out.append(Finding(SYNTHETIC_NOTE, "bad"))
    failed = [r for r in records if r.status in ("oom", "error")]
    if failed:
        what = ", ".join(f"{r.variant} at {r.size_name}={fmt_size(r.size)}: {r.status}" for r in failed[:6])
        more = f" and {len(failed) - 6} more" if len(failed) > 6 else ""
        out.append(Finding(f"{len(failed)} of {len(records)} cases failed ({what}{more})", "bad"))
    codes: dict[str, int] = {}
    for r in records:
        for w in r.warnings:
            codes[w] = codes.get(w, 0) + 1
    for code, n in sorted(codes.items(), key=lambda kv: -kv[1]):
        hint = hints.get(code)
        out.append(Finding(f"{n} of {len(records)} cases carry the warning {code}" + (f": {hint}" if hint else ""),
                           "warn"))
    return out


def findings(run: RunResult) -> list[Finding]:
    """What the run shows, per workload in first-seen order, then its caveats."""
    records = latest(run.records)
    by_workload: dict[str, list[Record]] = {}
    for r in records:
        by_workload.setdefault(r.workload, []).append(r)
    out = []
    for workload, recs in by_workload.items():
        out += WORKLOAD_FINDINGS.get(workload, lambda rs, w=workload: exponent_findings(rs, w))(recs)
    hints: dict[str, str] = {}
    for h in run.headers or [run.header]:
        hints.update(h.warning_hints)
    return out + caveats(records, hints)
