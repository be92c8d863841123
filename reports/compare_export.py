"""Exports of a comparison: JSON, Markdown (PR comment / step summary), github-action-benchmark's custom format.

JSON (`to_json`), schema COMPARE_SCHEMA, keys in this order:
  schema, metric, threshold, alpha, noise_k, ci_level, baseline_runs, current_runs,
  summary {cases, <worse>, <better>, same, inconclusive}, regressions [case_id],
  differences [{field, baseline, current, blocking, text}], warnings [str],
  only_baseline [name], only_current [name],
  cases [{case_id, name, label, variant, size, size_name, device, metric, unit, baseline,
          current, baseline_runs, current_runs, ratio, change, ci_low, ci_high, change_low,
          change_high, ci_level, ci_coverage, p, test, threshold, gate, noise_rel, noise_source,
          noise_sd_rel, fpr, fpr_threshold, mdc, verdict, regression, why, text, warnings}]
Relative figures are fractions (0.05 = 5%); ratio and its CI are current / baseline; values are
in `unit` (SI); a figure that does not apply or is unknown is null.
"""

from __future__ import annotations

import json
import math

from .between_runs import check_metric, repeats
from .compare import Comparison, case_name, comparison_table
from .markdown import MARKS, escape, table_md
from .schema import RunResult

COMPARE_SCHEMA = "xfbench.compare/1"  # bump on any change that is not purely additive

_CASE_KEYS = (
    "case_id", "name", "label", "variant", "size", "size_name", "device", "metric", "unit", "baseline",
    "current", "baseline_runs", "current_runs", "ratio", "change", "ci_low", "ci_high", "change_low",
    "change_high", "ci_level", "ci_coverage", "p", "test", "threshold", "gate", "noise_rel", "noise_source",
    "noise_sd_rel", "fpr", "fpr_threshold", "mdc", "verdict", "regression", "why", "text", "warnings",
)

# github-action-benchmark's `tool:` input for each metric: which way is better.
GITHUB_BENCHMARK_TOOL = {
    "time": "customSmallerIsBetter",
    "tokens_per_s": "customBiggerIsBetter",
    "peak_mem": "customSmallerIsBetter",
}


def _finite(x):
    """JSON has no NaN or infinity: null in their place."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, list | tuple):
        return [_finite(v) for v in x]
    return x


def to_dict(cmp: Comparison) -> dict:
    """The comparison as plain data with the keys documented above."""
    cases = [{k: _finite(getattr(c, k)) for k in _CASE_KEYS} for c in cmp.cases]
    return {
        "schema": COMPARE_SCHEMA,
        "metric": cmp.metric,
        "threshold": cmp.threshold,
        "alpha": cmp.alpha,
        "noise_k": cmp.noise_k,
        "ci_level": cmp.ci_level,
        "baseline_runs": cmp.baseline_runs,
        "current_runs": cmp.current_runs,
        "summary": cmp.summary,
        "regressions": [c.case_id for c in cmp.regressions],
        "differences": [
            {"field": d.field, "baseline": _finite(d.base), "current": _finite(d.current), "blocking": d.blocking,
             "text": d.text}
            for d in cmp.differences
        ],
        "warnings": cmp.warnings,
        "only_baseline": cmp.only_baseline,
        "only_current": cmp.only_current,
        "failed": cmp.failed,
        "cases": cases,
    }


def to_json(cmp: Comparison) -> str:
    """to_dict(cmp) as indented JSON (strict: no NaN)."""
    return json.dumps(to_dict(cmp), indent=2, allow_nan=False, default=str) + "\n"


def headline(cmp: Comparison) -> str:
    """'1 regression in 12 cases' / 'no regressions in 12 cases', with the other verdicts' counts."""
    n, k = len(cmp.cases), len(cmp.regressions)
    what = f"{k} regression{'s' * (k != 1)}" if k else "no regressions"
    rest = ", ".join(f"{v} {word}" for word, v in list(cmp.summary.items())[2:] if v)
    failed = f"; {len(cmp.failed)} case{'s' * (len(cmp.failed) != 1)} now failing" if cmp.failed else ""
    return f"{what} in {n} case{'s' * (n != 1)}" + (f" ({rest})" if rest else "") + failed


def to_markdown(cmp: Comparison) -> str:
    """GitHub Markdown for a step summary or a pull-request comment: the headline, warnings, the table."""
    mark = MARKS["bad"] if cmp.failing else "✅"
    lines = [f"## {mark} {escape(headline(cmp))}", ""]
    for c in cmp.regressions:
        lines.append(f"- {MARKS['bad']} **{escape(c.name)}**: {escape(c.text)}")
    lines += [f"- {MARKS['bad']} **failing:** {escape(f)}" for f in cmp.failed]
    if cmp.failing:
        lines.append("")
    if cmp.warnings:
        lines += [f"- {MARKS['warn']} **warning:** {escape(w)}" for w in cmp.warnings] + [""]
    lines.append(table_md(comparison_table(cmp)))
    return "\n".join(lines) + "\n"


def github_benchmark(run: RunResult, metric: str = "time") -> str:
    """One results file in github-action-benchmark's custom format: a JSON list of
    {"name", "unit", "value", "range", "extra"}, one entry per ok case.

    Set the action's `tool:` to GITHUB_BENCHMARK_TOOL[metric]: customSmallerIsBetter for time and
    peak_mem, customBiggerIsBetter for tokens_per_s. value: median of the case's per-run values
    (SI units). range: with one run, '±' the larger distance of the 95% CI of the median from the
    median (for tokens/s, tokens per call over the time CI's bounds); with several, '±' half the
    between-run range; peak_mem with one run has none. The name holds the device, so a name
    means one case across commits.
    """
    info = check_metric(metric)
    out = []
    for rep in repeats(run, metric).values():
        r = rep.records[-1]
        value = rep.median
        entry: dict = {"name": f"{case_name(r.label, r.variant, r.size_name, r.size)} [{r.device}]",
                       "unit": info.unit, "value": value}
        if rep.n_runs >= 2:
            entry["range"] = f"± {_g((max(rep.values) - min(rep.values)) / 2)}"
            how = f"{rep.n_runs} runs, range: half the between-run range"
        elif metric != "peak_mem" and r.time is not None:
            lo, hi = r.time.ci_low_s, r.time.ci_high_s
            if metric == "tokens_per_s":
                tokens = r.metrics.get("tokens_per_call") or value * r.time.median_s
                lo, hi = tokens / hi, tokens / lo
            entry["range"] = f"± {_g(max(abs(hi - value), abs(value - lo)))}"
            how = f"1 run, n = {r.time.n} windows, range: {r.time.ci_level:.0%} CI of the median"
        else:
            how = "1 run"
        entry["extra"] = f"{how}; value: {info.what}" + (", median over runs" if rep.n_runs >= 2 else "")
        out.append(entry)
    return json.dumps(out, indent=2, allow_nan=False) + "\n"


def _g(x: float) -> str:
    return f"{x:.4g}"
