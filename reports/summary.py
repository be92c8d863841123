"""The findings of a run in words, each with the measured numbers it rests on.

Per workload a function states what its sweep shows (attention: the fitted exponents, the
best implementation's speed-up over naive at the largest N, where the recurrent baseline
and attention cross; models: tokens/s and MFU per size and their exponents; data-parallel:
tokens/s, scaling efficiency and exposed comm per strategy at the largest world size, and
memory per rank; collectives: peak busbw per op); any other workload gets the generic
exponents. An exponent over world sizes or message bytes says nothing, so those two state
none (a label of theirs whose records name no world or message size gets the generic ones).
Then the warnings and failures that matter. Pure: from the records alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from .parallel_report import BASELINE, MESSAGE_BYTES, WORLD_SIZE, exposed_comm_half_frac, memory_per_rank
from .scaling import exponent, fit_series, ran, series
from .schema import Record, RunResult
from .select import latest
from .tables import SYNTHETIC_NOTE
from .units import fmt_bytes, fmt_exponent, fmt_pct, fmt_rate, fmt_size, fmt_time

RECURRENT = "lstm"  # the attention workload's recurrent baseline (workloads.attention.IMPLS)
NAIVE = "naive"
FAR = 1e12  # an extrapolated crossover past this length is named as 'beyond', not computed
SHARDED, REPLICATED = "fsdp", "ddp"  # the parallel workload's strategies whose memory per rank is compared


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


def _num(x: object) -> float | None:
    return float(x) if isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) else None


def _strategy_text(r: Record, by_case: dict[str, Record]) -> str:
    """'ddp at 2 ranks: 11.8 ktok/s (5.89 ktok/s per rank), scaling efficiency 0.50 ±0.05, exposed comm 24.0%'."""
    m = r.metrics
    text = f"{r.variant} at {fmt_size(r.size)} {r.size_name}: {fmt_rate(_num(m.get('tokens_per_s')), 'tok')}"
    per_rank = _num(m.get("tokens_per_s_per_rank"))
    if per_rank is not None and r.size != 1:
        text += f" ({fmt_rate(per_rank, 'tok')} per rank)"
    eff, ci = _num(m.get("scaling_efficiency")), _num(m.get("scaling_efficiency_ci_rel"))
    if eff is not None:
        base = by_case.get(str(m.get("baseline_case_id")))
        level = min(r.time.ci_level, base.time.ci_level) if base is not None and base.time is not None else (
            r.time.ci_level)
        text += f", scaling efficiency {eff:.2f}" + (f" ±{eff * ci:.2f} ({level:.0%} CI)" if ci is not None else "")
    else:
        text += ", no scaling efficiency (" + str(r.info.get("scaling_efficiency") or "no baseline") + ")"
    frac = _num(m.get("exposed_comm_frac"))
    if frac is not None:
        half = exposed_comm_half_frac(r)
        text += f", exposed comm {fmt_pct(frac)}" + (f" ±{100 * half:.1f} pp" if half is not None else "") + (
            " of the step" if frac >= 0 else " of the step (below 0: nothing measurable exposed)")
    return text


def _overhead_finding(label: str, alone: list[Record], base: Record | None) -> Finding | None:
    """Each strategy's step at one rank against `single`'s (metrics.time_over_single): the
    wrapper's own cost, with no other rank to talk to."""
    parts = []
    for r in alone:
        ratio, ci = _num(r.metrics.get("time_over_single")), _num(r.metrics.get("scaling_efficiency_ci_rel"))
        if ratio is not None:
            parts.append(f"{ratio:.2f}" + (f" ±{100 * ci:.0f}%" if ci is not None else "") + f" under {r.variant}")
    if base is None or not parts:
        return None
    return Finding(f"{label}: at world size 1 (no other rank to talk to), step time / {BASELINE}'s "
                   f"({fmt_time(base.time.median_s)}) is {', '.join(parts)}: the wrapper's own cost (± the two "
                   "medians' relative CIs in quadrature)", workload="parallel")


def _memory_finding(label: str, at: list[Record]) -> Finding | None:
    """Peak memory per rank of each strategy at one world size; FSDP's against DDP's where both ran."""
    peaks = {r.variant: p for r in at if (p := memory_per_rank(r)[0]) is not None}
    if len(peaks) < 2:
        return None
    n, name = at[0].size, at[0].size_name
    what = ("memory per rank (state + the step's peak above it)" if all(memory_per_rank(r)[1] == "memory/rank"
            for r in at) else "peak memory per rank")
    text = (f"{label}: {what} at {fmt_size(n)} {name} (the highest rank's, never summed): "
            + ", ".join(f"{v} {fmt_bytes(p)}" for v, p in peaks.items()))
    if peaks.get(SHARDED) and peaks.get(REPLICATED):
        text += f"; {SHARDED}/{REPLICATED} = {peaks[SHARDED] / peaks[REPLICATED]:.2f}x"
    return Finding(text, workload="parallel")


def parallel_findings(records: list[Record]) -> list[Finding]:
    """Per label: each strategy's tokens/s, efficiency ±CI and exposed comm at the largest world
    size it ran, against the one-device baseline; then peak memory per rank at that size."""
    out = []
    for label, recs in _by_label(records).items():
        if not any(WORLD_SIZE in r.params for r in recs):
            out += exponent_findings(recs, "parallel")
            continue
        ok = ran(recs)
        by_case = {r.case_id: r for r in recs}
        base = next((r for r in ok if r.variant == BASELINE), None)
        rivals = [r for r in ok if r.variant != BASELINE]
        if not rivals:
            continue
        n = max(r.size for r in rivals)
        at = [r for r in rivals if r.size == n]
        against = (f"{BASELINE} (one device) {fmt_rate(_num(base.metrics.get('tokens_per_s')), 'tok')}"
                   if base is not None else f"no {BASELINE} baseline ran")
        out.append(Finding(f"{label}: {'; '.join(_strategy_text(r, by_case) for r in at)}; against {against}",
                           workload="parallel"))
        overhead = _overhead_finding(label, [r for r in rivals if r.size == 1], base)
        if overhead is not None:
            out.append(overhead)
        memory = _memory_finding(label, at + ([base] if base is not None and n == base.size else []))
        if memory is not None:
            out.append(memory)
    return out


def collective_findings(records: list[Record]) -> list[Finding]:
    """Per label: each op's peak busbw (nccl-tests convention) and the message size it was reached at."""
    out = []
    for label, recs in _by_label(records).items():
        if not any(MESSAGE_BYTES in r.params for r in recs):
            out += exponent_findings(recs, "collective")
            continue
        parts, at_edge, sizes = [], [], sorted({r.size for r in ran(recs)})
        for op in dict.fromkeys(r.variant for r in recs):
            mine = [r for r in ran(recs) if r.variant == op and _num(r.metrics.get("busbw_bytes_per_s")) is not None]
            if not mine:
                continue
            best = max(mine, key=lambda r: r.metrics["busbw_bytes_per_s"])
            if best.size == max(r.size for r in mine):
                at_edge.append(op)
            parts.append(f"{op} {fmt_rate(best.metrics['busbw_bytes_per_s'], 'B')} at {fmt_bytes(best.size)}")
        if not parts:
            continue
        edge = ""
        if at_edge:
            which = "each" if len(at_edge) == len(parts) else ", ".join(at_edge)
            edge = (f" ({which} at the largest message measured, of {fmt_bytes(sizes[0])}..{fmt_bytes(sizes[-1])}: "
                    "the bandwidth may still rise with size)")
        notes = list(dict.fromkeys(str(r.info["backend_note"]) for r in recs if r.info.get("backend_note")))
        out.append(Finding(f"{label}: peak busbw (nccl-tests convention) {', '.join(parts)}{edge}"
                           + "".join(f"; {n}" for n in notes), workload="collective"))
    return out


# workload -> its findings from its latest records; others get exponent_findings
WORKLOAD_FINDINGS: dict[str, Callable[[list[Record]], list[Finding]]] = {
    "attention": attention_findings,
    "model": model_findings,
    "parallel": parallel_findings,
    "collective": collective_findings,
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
