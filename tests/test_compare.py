"""`xfbench compare` as a library: verdicts on literal RunResults, repeats, comparability, exports."""

import json
import math
import statistics

import pytest

from xfbench.reports import compare_export
from xfbench.reports.between_runs import METRICS, metric_samples, metric_value, repeats
from xfbench.reports.compare import (
    CALIBRATION_TOLERANCE,
    COLUMNS,
    WITHIN_ONLY,
    HistoryNoise,
    comparability,
    compare,
    comparison_table,
)
from xfbench.reports.compare_stats import expected_false_positive_rate, iqr_rel, min_detectable_change, pooled_log_sd
from xfbench.reports.errors import BadInput
from xfbench.reports.schema import Header, MemoryStats, Record, RunResult, TimeStats
from xfbench.reports.store import ResultsWriter, load_results

LABEL = "attention fwd · float32"
ENV = {
    "hostname": "vm", "cpu_model": "AMD EPYC", "torch": "2.13.0+cpu", "cuda": None, "cudnn": None,
    "cuda_devices": [], "torch_threads": 2,
    "calibration": {"level": "quick", "device_name": "AMD EPYC", "threads": 2,
                    "measured_flop_per_s": {"float32": 1.15e11}},
}


def tight(center: float, n: int = 20, step: float = 0.0005) -> list[float]:
    """n distinct samples around `center`, spread ±n/2 steps (relative): IQR/median ~ n/2 * step."""
    return [center * (1 + step * (i - n / 2)) for i in range(n)]


def time_stats(samples: list[float]) -> TimeStats:
    s = sorted(samples)
    med = statistics.median(s)
    q1, _, q3 = statistics.quantiles(s, n=4, method="inclusive")
    lo, hi = s[1], s[-2]
    return TimeStats(
        n=len(s), calls_per_sample=1, warmup_calls=0, median_s=med, mean_s=statistics.fmean(s), min_s=s[0],
        max_s=s[-1], p10_s=s[1], p90_s=s[-2], iqr_s=q3 - q1, iqr_over_median=(q3 - q1) / med, ci_low_s=lo,
        ci_high_s=hi, ci_rel=max(hi - med, med - lo) / med, target_ci_rel=0.02, converged=True,
        total_s=sum(s), clock="perf_counter", samples_s=list(samples),
    )


def record(run_id: str, samples: list[float] | None, *, case: str = "c1", variant: str = "naive", size: int = 128,
           threads: int = 2, peak: int | None = None, workload: str = "attention", status: str = "ok") -> Record:
    metrics = {"tokens_per_call": 128}
    if samples:
        metrics["tokens_per_s"] = 128 / statistics.median(samples)
    if peak is not None:
        metrics["peak_mem_bytes"] = peak
    return Record(
        run_id=run_id, case_id=case, workload=workload, label=LABEL, variant=variant, size=size, size_name="N",
        params={"impl": variant, "seq_len": size, "dtype": "float32"}, device="cpu", status=status,
        time=time_stats(samples) if samples else None,
        memory=MemoryStats(method="vmhwm", peak_bytes=peak) if peak is not None else None,
        metrics=metrics, info={"threads": threads, "dtype": "float32"},
    )


def header(run_id: str, **env) -> Header:
    return Header(run_id=run_id, tool_version="0.1.0", created_utc="2026-01-01T00:00:00+00:00", command="run",
                  environment={**ENV, **env})


def run(*segments: tuple[Header, list[Record]]) -> RunResult:
    headers = [h for h, _ in segments]
    return RunResult(header=headers[0], headers=headers, records=[r for _, recs in segments for r in recs])


def one_run(name: str, samples, **kw) -> RunResult:
    env = kw.pop("env", {})
    return run((header(name, **env), [record(name, samples, **kw)]))


def repeated(name: str, centers: list[float], factor: float = 1.0) -> RunResult:
    """One segment per run, each with tight samples around center * factor."""
    return run(*[(header(f"{name}{i}"), [record(f"{name}{i}", tight(c * factor, 10))]) for i, c in enumerate(centers)])


# A quiet history for case c1 (band ±1%, sd 0.5% over 20 runs): single runs may then be called
# slower or faster; with within-run samples alone they never are (test_within_run_only_never_decides).
QUIET = {"c1": HistoryNoise(0.01, 20, 0.005)}
QUIET_SOURCE = "history band of 20 runs"

# --- verdicts -------------------------------------------------------------------------------------


def test_a_a_identical_distributions_are_the_same():
    base = one_run("b", tight(1e-3))
    cur = one_run("c", list(reversed(tight(1e-3))))  # the same distribution, another order
    cmp = compare(base, cur)
    (c,) = cmp.cases
    assert c.verdict == "same"
    assert cmp.regressions == []
    assert c.p == 1.0
    assert c.ratio == pytest.approx(1.0)
    # log ratios of sample j to sample i ~ 0.05% x (j - i); the 95% CI drops the 120 of 400 pairs
    # with |j - i| >= 5 on each side (k = 128, the tabled critical value 127 + 1): ±4 steps = ±0.2%.
    assert c.text == "time +0.0% [-0.2%, +0.2%], p = 1, same"
    assert cmp.summary == {"cases": 1, "slower": 0, "faster": 0, "same": 1, "inconclusive": 0}


def test_a_a_interleaved_draws_are_the_same():
    samples = tight(1e-3, 40)
    cmp = compare(one_run("b", samples[0::2]), one_run("c", samples[1::2]))
    assert cmp.cases[0].verdict == "same"
    assert cmp.cases[0].p > 0.5


def test_within_run_only_never_decides():
    """One run a side, no history: the samples differ plainly, but between-run noise is unknown."""
    base = tight(1e-3)
    cmp = compare(one_run("b", base), one_run("c", [1.1 * x for x in base]))
    (c,) = cmp.cases
    assert c.verdict == "inconclusive" and not c.regression and not cmp.failing
    assert c.p == pytest.approx(2 / math.comb(40, 20)) and c.noise_source == WITHIN_ONLY
    assert c.why.endswith(f"but {WITHIN_ONLY}: not called slower")


def test_a_clear_ten_percent_slowdown_is_slower_and_named():
    base = tight(1e-3)
    cmp = compare(one_run("b", base), one_run("c", [1.1 * x for x in base]), history_noise=QUIET)
    (c,) = cmp.cases
    assert c.verdict == "slower" and c.regression
    assert [r.name for r in cmp.regressions] == [f"{LABEL} · naive · N=128"]
    assert c.ratio == pytest.approx(1.1, rel=1e-12)
    # 20 vs 20, exact: P(U <= 0) = 1 / C(40, 20); the CI's bounds are the 128th smallest and largest
    # differences: log 1.1 ± 4 steps of 0.05% (see the A/A test).
    assert c.p == pytest.approx(2 / math.comb(40, 20))
    assert c.test == "Mann–Whitney U, two-sided, exact"
    assert c.text == "time +10.0% [+9.8%, +10.2%], p < 0.0001, slower"
    assert c.gate == 0.05  # the history band (1%) is below the threshold
    assert c.noise_source == QUIET_SOURCE
    assert c.fpr == pytest.approx(expected_false_positive_rate(0.05, 0.005))
    assert "lies beyond the gate (5%" in c.why
    assert cmp.summary["slower"] == 1


def test_a_clear_speedup_is_faster():
    base = tight(1e-3)
    cmp = compare(one_run("b", base), one_run("c", [x / 1.1 for x in base]), history_noise=QUIET)
    assert cmp.cases[0].verdict == "faster"
    assert cmp.regressions == []


def test_tokens_per_s_falls_when_time_rises():
    base = tight(1e-3)
    cmp = compare(one_run("b", base), one_run("c", [1.1 * x for x in base]), metric="tokens_per_s", history_noise=QUIET)
    (c,) = cmp.cases
    assert (c.verdict, c.unit) == ("slower", "tok/s")
    assert c.ratio == pytest.approx(1 / 1.1, rel=1e-12)
    assert c.text.startswith("tokens_per_s -9.1% [")
    assert c.baseline == pytest.approx(128 / 1e-3, rel=1e-3)


def test_ten_percent_within_a_25_percent_between_run_spread_is_inconclusive():
    # Three runs a side: medians 1.0, 1.3, 1.2 ms (spread 0.3 / 1.2 = 25%), current 10% slower on each.
    # The runs are the unit: Student's t on log per-run values, checked against scipy.
    from scipy import stats

    centers = [1.0e-3, 1.3e-3, 1.2e-3]
    cmp = compare(repeated("b", centers), repeated("c", centers, 1.1))
    (c,) = cmp.cases
    assert (c.baseline_runs, c.current_runs) == (3, 3)
    assert c.noise_source == "between-run t-test of 3+3 runs"
    la = [math.log(x) for x in centers]
    lb = [math.log(1.1 * x) for x in centers]
    ref = stats.ttest_ind(lb, la)
    assert c.ratio == pytest.approx(1.1)  # ratio of geometric means
    assert c.p == pytest.approx(ref.pvalue, rel=1e-9)
    se = (lb[0] - la[0]) / ref.statistic  # scipy's standard error of the difference
    assert c.gate == pytest.approx(math.expm1(stats.t.ppf(1 - 0.01 / 2, 4) * se), rel=1e-9)  # RUNS_ALPHA
    assert c.ci_low == pytest.approx(1.1 * math.exp(-stats.t.ppf(0.975, 4) * se), rel=1e-9)
    assert c.verdict == "inconclusive" and not c.regression  # a real 10%, but within what the runs show
    assert "more runs would tell" in c.why
    sigma = pooled_log_sd([[1.0, 1.3, 1.2], [1.1, 1.43, 1.32]])
    assert c.noise_sd_rel == pytest.approx(sigma)
    assert c.fpr == 0.01 / 2  # the t-test's own bound: an A/A alarm needs t beyond its alpha/2 quantile
    hw = stats.t.ppf(0.975, 4) * se
    need = max(math.log1p(c.gate), math.log1p(0.05) + hw)  # the critical change, and the CI clear of 5%
    assert c.mdc == pytest.approx(math.expm1(need + stats.norm.ppf(0.8) * se), rel=1e-9)
    assert cmp.regressions == []


def test_ten_percent_over_quiet_runs_is_slower():
    # Five runs a side 1% apart: the between-run test sees 10% plainly.
    centers = [1.00e-3, 1.01e-3, 0.99e-3, 1.005e-3, 0.995e-3]
    cmp = compare(repeated("b", centers), repeated("c", centers, 1.1))
    (c,) = cmp.cases
    assert c.verdict == "slower" and c.regression
    assert c.gate == 0.05 and c.p < 1e-6 and c.ci_low > 1.05
    assert c.text.startswith("time +10.0% [") and c.text.endswith(", slower")


def test_the_same_ten_percent_on_one_run_each_would_be_slower():
    # The per-run medians the test above hides in between-run noise, seen as single runs.
    cmp = compare(one_run("b", tight(1.2e-3, 10)), one_run("c", tight(1.32e-3, 10)), history_noise=QUIET)
    assert cmp.cases[0].verdict == "slower"


def test_history_noise_widens_the_gate():
    base = tight(1e-3)
    cur = [1.1 * x for x in base]
    plain = compare(one_run("b", base), one_run("c", cur), history_noise=QUIET)
    assert plain.cases[0].verdict == "slower"
    cmp = compare(one_run("b", base), one_run("c", cur), history_noise={"c1": 0.15})
    (c,) = cmp.cases
    assert (c.gate, c.noise_source) == (0.15, "history band")
    assert c.verdict == "inconclusive"
    assert "within the history band (±15%)" in c.why
    assert c.fpr is None  # a bare band gives no sd
    h = compare(one_run("b", base), one_run("c", cur), history_noise={"c1": HistoryNoise(0.15, 20, 0.05)})
    (c,) = h.cases
    assert c.noise_source == "history band of 20 runs"
    assert c.fpr == pytest.approx(expected_false_positive_rate(0.15, 0.05))
    assert c.mdc == pytest.approx(min_detectable_change(0.15, 0.05))


def test_interleaved_rounds_are_paired_so_drift_cancels():
    """`xfbench ab` rounds: the machine drifts by 30% over the job, B is 10% slower in every round.
    Unpaired, the drift hides it; paired by round, it is plain."""
    drift = [1.0e-3, 1.1e-3, 1.2e-3, 1.3e-3, 1.15e-3]

    def rounds(name, factor):
        segs = []
        for i, c in enumerate(drift, 1):
            h = header(f"{name}{i}")
            h.suite = {"repeat": i, "repeats": len(drift), "interleaved": True}
            segs.append((h, [record(f"{name}{i}", tight(c * factor, 10))]))
        return run(*segs)

    (c,) = compare(rounds("a", 1.0), rounds("b", 1.1)).cases
    assert c.noise_source == "between-run paired t-test of 5 interleaved rounds"
    assert c.verdict == "slower" and c.ratio == pytest.approx(1.1)
    plain = compare(repeated("a", drift), repeated("b", drift, 1.1)).cases[0]
    assert plain.noise_source == "between-run t-test of 5+5 runs" and plain.verdict == "inconclusive"


def test_threshold_below_the_noise_warns():
    centers = [1.0e-3, 1.3e-3, 1.2e-3]
    cmp = compare(repeated("b", centers), repeated("c", centers), threshold=0.02)
    (c,) = cmp.cases
    assert c.gate > 0.5  # 3+3 runs this far apart: only a large change would be significant
    name = f"{LABEL} · naive · N=128"
    assert (
        f"{name}: threshold 2% is below this case's noise: gate widened to {100 * c.gate:.1f}% (between-run t-test "
        "of 3+3 runs)" in cmp.warnings
    )
    sigma = pooled_log_sd([centers, centers])
    fpr_2 = expected_false_positive_rate(0.02, sigma, 3, 3)
    assert fpr_2 > 0.3
    assert any(w.startswith(f"{name}: threshold 2% alone would flag {100 * fpr_2:.1f}% of A/A") for w in cmp.warnings)


def test_within_run_only_is_flagged():
    cmp = compare(one_run("b", tight(1e-3)), one_run("c", tight(1e-3)))
    assert f"1 of 1 cases: {WITHIN_ONLY}" in cmp.warnings


def test_wide_within_run_samples_widen_the_gate_to_the_fence():
    base = tight(1e-3, 20, step=0.01)  # IQR/median = 9.5 steps of 1% / median
    cur = [1.1 * x for x in base]
    cmp = compare(one_run("b", base), one_run("c", cur))
    (c,) = cmp.cases
    assert c.gate == pytest.approx(3 * max(iqr_rel(base), iqr_rel(cur)))
    assert c.gate == pytest.approx(3 * 0.095 / 0.995)
    assert c.verdict == "inconclusive"  # significant, but inside the within-run fence
    assert "within the within-run noise fence (3×IQR/median = 28.6%)" in c.why


def test_peak_mem_compares_per_run_values_without_a_test():
    mib = 2**20
    cmp = compare(one_run("b", tight(1e-3), peak=100 * mib), one_run("c", tight(1e-3), peak=110 * mib),
                  metric="peak_mem")
    (c,) = cmp.cases
    assert (c.verdict, c.p, c.ci_low, c.unit) == ("larger", None, None, "B")
    assert c.regression
    assert c.text == "peak_mem +10.0% (1+1 runs), larger"
    assert cmp.summary == {"cases": 1, "larger": 1, "smaller": 0, "same": 0, "inconclusive": 0}
    same = compare(one_run("b", tight(1e-3), peak=100 * mib), one_run("c", tight(1e-3), peak=103 * mib),
                   metric="peak_mem")
    assert same.cases[0].verdict == "same"
    assert "within the gate ±5%" in same.cases[0].why


def test_nothing_in_common_names_the_counts_and_workloads():
    base = run((header("b"), [record("b", tight(1e-3), case="a1"), record("b", tight(1e-3), case="a2")]))
    cur = one_run("c", tight(1e-3), case="m1", workload="model")
    with pytest.raises(BadInput) as e:
        compare(base, cur)
    msg = str(e.value)
    assert "no case in common" in msg
    assert "the baseline has 2 ok cases (attention)" in msg
    assert "the current has 1 ok case (model)" in msg


def test_a_failed_case_is_not_in_common():
    cur = run((header("c"), [record("c", None, status="oom")]))
    with pytest.raises(BadInput, match="the current has no ok case with time"):
        compare(one_run("b", tight(1e-3)), cur)


def test_different_threads_are_refused_then_allowed():
    base = one_run("b", tight(1e-3), threads=2)
    cur = one_run("c", tight(1e-3), threads=1)
    with pytest.raises(BadInput, match=r"threads: 2 \(baseline\) vs 1 \(current\)") as e:
        compare(base, cur)
    assert "--allow-different-env" in str(e.value)
    cmp = compare(base, cur, allow_different_env=True)
    assert "environments differ: threads: 2 (baseline) vs 1 (current)" in cmp.warnings
    assert [d.field for d in cmp.differences] == ["threads"]


def test_comparability_names_each_field_that_differs():
    base = one_run("b", tight(1e-3))
    env = {"torch": "2.14.0+cpu", "hostname": "runner-7", "cpu_model": "Intel Xeon",
           "calibration": {**ENV["calibration"], "level": "full",
                           "measured_flop_per_s": {"float32": 1.15e11 * (1 + CALIBRATION_TOLERANCE) * 1.01}}}
    cur = one_run("c", tight(1e-3), env=env)
    diffs = comparability(base, cur, [(base.records[0], cur.records[0])])
    by_field = {d.field: d for d in diffs}
    assert set(by_field) == {"torch", "hostname", "cpu_model", "calibration level", "calibration peak float32"}
    assert by_field["torch"].text == "torch: 2.13.0+cpu (baseline) vs 2.14.0+cpu (current)"
    assert not by_field["hostname"].blocking and not by_field["calibration level"].blocking
    assert by_field["calibration peak float32"].blocking
    assert "11.1% apart, tolerance 10%" in by_field["calibration peak float32"].text


def test_a_new_hostname_alone_is_a_warning_not_a_refusal():
    cmp = compare(one_run("b", tight(1e-3)), one_run("c", tight(1e-3), env={"hostname": "runner-9"}))
    assert "environments differ: hostname: vm (baseline) vs runner-9 (current)" in cmp.warnings


def test_a_field_an_older_file_lacks_is_unknown_not_different():
    base = one_run("b", tight(1e-3))
    cur = one_run("c", tight(1e-3))
    del cur.headers[0].environment["cpu_model"]
    assert comparability(base, cur, [(base.records[0], cur.records[0])]) == []


def test_bad_settings_are_bad_input():
    base, cur = one_run("b", tight(1e-3)), one_run("c", tight(1e-3))
    with pytest.raises(BadInput, match="unknown metric 'flops'"):
        compare(base, cur, metric="flops")
    with pytest.raises(BadInput, match="threshold"):
        compare(base, cur, threshold=-0.1)
    with pytest.raises(BadInput, match="alpha"):
        compare(base, cur, alpha=0)


def test_unmatched_cases_are_counted():
    base = run((header("b"), [record("b", tight(1e-3)), record("b", tight(1e-3), case="x", variant="sdpa")]))
    cmp = compare(base, one_run("c", tight(1e-3)))
    assert cmp.only_baseline == [f"{LABEL} · sdpa · N=128"]
    assert "not compared: 1 case(s) only in the baseline, 0 only in the current" in cmp.warnings


# --- repeats ------------------------------------------------------------------------------------


def test_repeats_take_the_latest_ok_record_of_each_segment(tmp_path):
    path = tmp_path / "results.jsonl"
    for run_id, medians in [("r1", [1.0e-3, 1.05e-3]), ("r2", [1.2e-3])]:
        with ResultsWriter(path, header(run_id)) as w:
            for m in medians:  # within a segment a later record replaces the earlier one
                w.append(record(run_id, tight(m, 10)))
            w.append(record(run_id, None, case="c2", status="error"))
    reps = repeats(load_results(path), "time")
    assert set(reps) == {"c1"}  # c2 never ran ok
    r = reps["c1"]
    assert r.n_runs == 2
    assert r.values == pytest.approx((1.05e-3, 1.2e-3), rel=1e-3)  # r1's second record, then r2's
    b, c = r.values
    assert r.spread_rel == pytest.approx((c - b) / ((b + c) / 2))
    assert r.sd_rel == pytest.approx(math.log(c / b) / math.sqrt(2))
    assert len(r.samples("time")) == 20


def test_one_run_has_no_spread():
    r = repeats(one_run("b", tight(1e-3)), "time")["c1"]
    assert (r.n_runs, r.spread_rel, r.sd_rel) == (1, None, None)


def test_metric_samples_and_values():
    rec = record("b", [1e-3, 2e-3, 4e-3], peak=5000)
    assert metric_samples(rec, "time") == [1e-3, 2e-3, 4e-3]
    assert metric_samples(rec, "tokens_per_s") == pytest.approx([128e3, 64e3, 32e3])
    assert metric_samples(rec, "peak_mem") == [5000.0]
    assert metric_value(rec, "time") == 2e-3
    assert metric_value(rec, "tokens_per_s") == pytest.approx(64e3)
    assert metric_value(rec, "peak_mem") == 5000.0
    assert metric_value(record("b", [1e-3, 1e-3]), "peak_mem") is None
    assert METRICS["tokens_per_s"].smaller_is_better is False
    assert (METRICS["time"].unit, METRICS["peak_mem"].unit) == ("s", "B")


# --- table and exports ------------------------------------------------------------------------


def _slow():
    base = tight(1e-3)
    return compare(one_run("b", base), one_run("c", [1.1 * x for x in base]), history_noise=QUIET)


def test_comparison_table_cells_are_typed():
    t = comparison_table(_slow())
    assert t.columns == list(COLUMNS)
    (row,) = t.rows
    cells = dict(zip(t.columns, row, strict=True))
    assert cells["verdict"].value == "slower" and cells["verdict"].status == "bad"
    assert cells["baseline"].unit == "s" and cells["baseline"].value == pytest.approx(1e-3, rel=1e-3)
    assert cells["change [CI]"].text == "+10.0% [+9.8%, +10.2%]"
    assert cells["p"].text == "< 0.0001"
    assert cells["gate"].text == "5.0%" and cells["gate"].note == QUIET_SOURCE
    assert cells["FPR"].value == pytest.approx(expected_false_positive_rate(0.05, 0.005))
    assert any("Mann–Whitney U" in n for n in t.notes)
    assert any("Hodges–Lehmann on log values" in n for n in t.notes)
    assert any("alpha = 0.002" in n for n in t.notes)
    assert any(n.startswith("gate = max(threshold 5%, 1 × noise)") for n in t.notes)
    assert f"noise: {QUIET_SOURCE} (1 case)" in t.notes


def test_markdown_headline_and_table():
    md = compare_export.to_markdown(_slow())
    lines = md.splitlines()
    assert lines[0] == "## ❌ 1 regression in 1 case"
    assert "| case | runs | baseline | current | change \\[CI\\] | p | gate | FPR | MDC | verdict |" in lines
    assert "❌ slower" in md
    assert f"- ❌ **{LABEL} · naive · N=128**: time +10.0% \\[+9.8%, +10.2%\\], p &lt; 0.0001, slower" in lines
    ok = compare_export.to_markdown(compare(one_run("b", tight(1e-3)), one_run("c", tight(1e-3))))
    assert ok.splitlines()[0] == "## ✅ no regressions in 1 case (1 same)"


def test_json_has_a_schema_and_stable_keys():
    data = json.loads(compare_export.to_json(_slow()))
    assert data["schema"] == compare_export.COMPARE_SCHEMA == "xfbench.compare/1"
    assert list(data) == [
        "schema", "metric", "threshold", "alpha", "noise_k", "ci_level", "baseline_runs", "current_runs",
        "summary", "regressions", "differences", "warnings", "only_baseline", "only_current", "failed", "cases",
    ]
    (case,) = data["cases"]
    assert list(case) == list(compare_export._CASE_KEYS)
    assert (case["verdict"], case["regression"], case["case_id"]) == ("slower", True, "c1")
    assert data["regressions"] == ["c1"]
    assert case["ratio"] == pytest.approx(1.1)
    assert case["fpr"] == pytest.approx(expected_false_positive_rate(0.05, 0.005))
    assert data["baseline_runs"] == ["b"] and data["current_runs"] == ["c"]


def test_github_benchmark_custom_format_and_tool_direction():
    res = one_run("b", tight(1e-3), peak=2**20)
    entries = json.loads(compare_export.github_benchmark(res, "time"))
    (e,) = entries
    assert set(e) == {"name", "unit", "value", "range", "extra"}
    assert e["name"] == f"{LABEL} · naive · N=128 [cpu]"
    assert e["unit"] == "s" and e["value"] == pytest.approx(1e-3, rel=1e-3)
    t = res.records[0].time
    assert e["range"] == f"± {max(t.ci_high_s - t.median_s, t.median_s - t.ci_low_s):.4g}"
    (tok,) = json.loads(compare_export.github_benchmark(res, "tokens_per_s"))
    assert tok["unit"] == "tok/s" and tok["value"] == pytest.approx(128e3, rel=1e-3)
    (mem,) = json.loads(compare_export.github_benchmark(res, "peak_mem"))
    assert (mem["unit"], mem["value"], "range" in mem) == ("B", 2**20, False)
    for metric, info in METRICS.items():
        tool = compare_export.GITHUB_BENCHMARK_TOOL[metric]
        assert tool == ("customSmallerIsBetter" if info.smaller_is_better else "customBiggerIsBetter")


def test_github_benchmark_with_repeats_uses_the_median_run():
    entries = json.loads(compare_export.github_benchmark(repeated("r", [1.0e-3, 1.3e-3, 1.2e-3]), "time"))
    (e,) = entries
    assert e["value"] == pytest.approx(1.2e-3, rel=1e-3)
    assert e["range"] == f"± {(1.3e-3 - 1.0e-3) / 2:.4g}"
    assert e["extra"].startswith("3 runs")


def test_a_real_results_file_against_itself_and_a_slowed_copy():
    from pathlib import Path

    base = load_results(Path(__file__).parent / "fixtures" / "report_attention.jsonl")
    same = compare(base, base)
    assert same.regressions == [] and same.summary["same"] == same.summary["cases"] == 16
    cur = base.model_copy(deep=True)
    (slowed,) = [r for r in cur.records if r.variant == "naive" and r.size == 256]
    slowed.time.samples_s = [1.2 * s for s in slowed.time.samples_s]
    slowed.time.median_s *= 1.2
    cmp = compare(base, cur)  # one run a side: nothing decided on within-run samples alone
    assert cmp.regressions == [] and cmp.summary["inconclusive"] >= 1
    quiet = {r.case_id: HistoryNoise(0.01, 20, 0.005) for r in base.records}
    cmp = compare(base, cur, history_noise=quiet)
    assert [c.case_id for c in cmp.regressions] == [slowed.case_id]
    # the rest: same where their CI lies within ±5%, else inconclusive (wide CIs against a 5% gate)
    assert cmp.summary["same"] + cmp.summary["inconclusive"] == 15 and cmp.summary["faster"] == 0


def test_a_zero_peak_has_no_relative_change_and_is_left_out():
    base = run((header("b"), [record("b", tight(1e-3), peak=0), record("b", tight(1e-3), case="c2", peak=100)]))
    cur = run((header("c"), [record("c", tight(1e-3), peak=50), record("c", tight(1e-3), case="c2", peak=100)]))
    assert set(repeats(base, "peak_mem")) == {"c2"}
    cmp = compare(base, cur, metric="peak_mem")
    assert [c.case_id for c in cmp.cases] == ["c2"]
    assert "not compared: 0 case(s) only in the baseline, 1 only in the current" in cmp.warnings
