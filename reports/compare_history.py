"""`xfbench compare --against-history RUN`: each case of a run against its past runs on the same machine.

The baseline of a case is its history on the run's machine fingerprint (reports.history): the
median of its past runs since the last change point (at most the last N), and their noise band,
median ± 3×IQR (history.recent_band).
The history keeps one value per run, not samples, so there is no rank test here: the verdict
compares the run's value (the median of its runs, with --repeat) with the history's median:
  gate = max(threshold, noise_k × band half-width / median);
  slower (larger for peak_mem): the change in the worse direction beyond the gate;
  faster: beyond the gate the other way; same: within it;
  inconclusive: fewer past runs than a band needs (history.MIN_BAND_RUNS).
A run of unchanged code falls outside the 3×IQR fence rarely (the fence rustc-perf uses); the
false-positive model uses the history's difference-based sd (history.noise_sd).
"""

from __future__ import annotations

import math
import statistics

from .between_runs import METRICS, check_metric, repeats
from .compare import (
    INCONCLUSIVE,
    NOISE_K,
    SAME,
    WORDS,
    CaseComparison,
    Comparison,
    HistoryNoise,
    case_name,
    pct,
    signed_pct,
)
from .compare_stats import CI_LEVEL, DEFAULT_ALPHA, expected_false_positive_rate, min_detectable_change
from .errors import BadInput
from .history import MIN_BAND_RUNS, History, fingerprint, level_start, noise_sd, recent_band
from .schema import Record, RunResult

# compare's metric name -> the history's (History.series)
HISTORY_METRIC = {"time": "time", "tokens_per_s": "tokens_per_s", "peak_mem": "peak_mem_bytes"}


def past_values(history: History, run: RunResult, rec: Record, metric: str, last: int, skip: set[str]) -> list[float]:
    """The case's last `last` positive values in `history` on the fingerprint of the machine that
    measured `rec`, oldest first, leaving out the runs in `skip` (the ones being compared)."""
    fp = fingerprint(run.header_of(rec).environment, rec.device)
    points = [p for p in history.series(rec.case_id, fp, last=last + len(skip), metric=HISTORY_METRIC[metric])
              if p.run_id not in skip][-last:]
    return [p.value for p in points if p.value > 0]  # a ratio needs a positive past value


def history_noise(history: History, base: RunResult, cur: RunResult, metric: str = "time",
                  last: int = 30) -> dict[str, HistoryNoise]:
    """case_id -> the band a run of unchanged code falls within, from each ok case's history on the
    current run's machine (both compared runs left out); cases with no band (under
    history.MIN_BAND_RUNS runs at the current level) are absent."""
    skip = {h.run_id for h in (base.headers + cur.headers)}
    out = {}
    for rec in {r.case_id: r for r in cur.records if r.status == "ok"}.values():
        values = past_values(history, cur, rec, metric, last, skip)
        band = recent_band(values)  # since the last change point
        if band is not None:
            sd = noise_sd(values) / abs(band.median) if band.median else None
            out[rec.case_id] = HistoryNoise(band.half_width_rel, band.n, sd)
    return out


def compare_with_history(
    cur: RunResult, history: History, *, metric: str = "time", last: int = 30, threshold: float = 0.05,
    thresholds: dict[str, float] | None = None, noise_k: float = NOISE_K,
) -> Comparison:
    """Every ok case of `cur` against its last `last` runs in `history` on the same fingerprint
    (the run's own segments left out). BadInput when no case of the run has any history."""
    check_metric(metric)
    info, words = METRICS[metric], WORDS[metric]
    sign = 1.0 if info.smaller_is_better else -1.0
    skip = {h.run_id for h in cur.headers or [cur.header]}
    cases: list[CaseComparison] = []
    no_history: list[str] = []
    for cid, rep in repeats(cur, metric).items():
        rec = rep.records[-1]
        values = past_values(history, cur, rec, metric, last, skip)
        if not values:
            no_history.append(case_name(rec.label, rec.variant, rec.size_name, rec.size))
            continue
        th = (thresholds or {}).get(cid, threshold)
        band = recent_band(values)  # the runs since the last change point
        # The baseline is the current level: after an accepted step, the runs before it are history.
        base = band.median if band is not None else statistics.median(values[level_start(values):])
        if rep.median <= 0 or base <= 0:
            no_history.append(case_name(rec.label, rec.variant, rec.size_name, rec.size))
            continue
        ratio = rep.median / base
        w = sign * math.log(ratio)
        if band is None:
            gate, sd, source = th, None, f"history of {len(values)} runs: too few for a band ({MIN_BAND_RUNS})"
            verdict = INCONCLUSIVE
            why = f"{len(values)} past runs on this machine; a noise band needs {MIN_BAND_RUNS}"
        else:
            gate = max(th, noise_k * band.half_width_rel)
            sd = noise_sd(values) / abs(band.median) if band.median else None
            source = f"history band of {band.n} runs"
            g = math.log1p(gate)
            verdict = words[1] if w > g else words[0] if w < -g else SAME
            where = "beyond" if abs(w) > g else "within"
            why = (f"{signed_pct(ratio - 1)} from the median of the {band.n} past runs at the current level, {where} "
                   f"the gate ±{pct(gate)} "
                   f"(max of the threshold {pct(th)} and the band ±{pct(band.half_width_rel)}: median ± "
                   f"{band.fence:g}×IQR)")
        warnings = []
        if band is not None and gate > th:
            warnings.append(f"threshold {pct(th)} is below this case's history band: gate widened to {pct(gate)}")
        fpr = mdc = fpr_t = None
        if sd:
            fpr, fpr_t, mdc = (expected_false_positive_rate(gate, sd), expected_false_positive_rate(th, sd),
                               min_detectable_change(gate, sd))
        cases.append(CaseComparison(
            case_id=cid, label=rec.label, variant=rec.variant, size=rec.size, size_name=rec.size_name,
            device=rec.device, metric=metric, unit=info.unit, baseline=base, current=rep.median,
            baseline_runs=len(values), current_runs=rep.n_runs, ratio=ratio, ci_low=None, ci_high=None,
            ci_level=None, ci_coverage=None, p=None, test=None, threshold=th, gate=gate,
            noise_rel=band.half_width_rel if band else None, noise_source=source, noise_sd_rel=sd, fpr=fpr,
            fpr_threshold=fpr_t, mdc=mdc, verdict=verdict, regression=verdict == words[1], why=why,
            warnings=tuple(warnings),
        ))
    if not cases:
        raise BadInput(f"no case of {len(no_history)} in this run has any history on its machine in {history.path} "
                       "(record runs first: `xfbench run` records each one)")
    notes = [f"not compared: {len(no_history)} case(s) with no history on this machine"] if no_history else []
    notes += [f"{c.name}: {w}" for c in cases for w in c.warnings]
    return Comparison(
        metric=metric, threshold=threshold, alpha=DEFAULT_ALPHA, noise_k=noise_k, ci_level=CI_LEVEL, cases=cases,
        warnings=notes, only_current=no_history, baseline_runs=[], current_runs=sorted(skip),
    )
