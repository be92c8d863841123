"""The summary states what a run shows with its measured numbers, and is right about them:
exponents, speed-up over naive at the largest N, the recurrent crossover, model rates; and a
workload it has never seen still gets a section and findings (grouping by record metadata)."""

import math

import pytest

from xfbench.reports.document import build_document
from xfbench.reports.schema import Header, Record, RunResult, TimeStats
from xfbench.reports.store import load_results
from xfbench.reports.summary import attention_findings, caveats, findings
from xfbench.reports.units import fmt_time

FIXTURES = "tests/fixtures"
LABEL = "attention fwd · float32 · full"


def _time(median: float, ci_rel: float = 0.01, clock: str = "perf_counter") -> TimeStats:
    lo, hi = median * (1 - ci_rel), median * (1 + ci_rel)
    return TimeStats(
        n=10, calls_per_sample=1, warmup_calls=1, median_s=median, mean_s=median, min_s=lo, max_s=hi, p10_s=lo,
        p90_s=hi, iqr_s=0.0, iqr_over_median=0.0, ci_low_s=lo, ci_high_s=hi, ci_rel=ci_rel, target_ci_rel=0.02,
        converged=True, total_s=1.0, clock=clock, samples_s=[median] * 10,
    )


def _rec(variant: str, n: int, median: float, workload: str = "attention", status: str = "ok", **kw) -> Record:
    return Record(
        case_id=f"{workload}-{variant}-{n}", workload=workload, label=kw.pop("label", LABEL), variant=variant, size=n,
        size_name="N", params={"seq_len": n, "impl": variant}, device="cpu", status=status,
        time=_time(median, **kw) if status == "ok" else None, reason=None if status == "ok" else "out of memory",
    )


def _run(records: list[Record]) -> RunResult:
    header = Header(run_id="r1", tool_version="0", created_utc="2026-01-01T00:00:00Z", command="attention")
    return RunResult(header=header, headers=[header], records=records)


def test_the_crossover_is_interpolated_in_log_log_where_the_two_curves_cross():
    # attention 1e-8·N², lstm 1e-5·N: equal at N = 1000, between the measured 512 and 2048
    recs = [_rec(v, n, 1e-8 * n**2 if v == "naive" else 1e-5 * n) for v in ("naive", "lstm") for n in (512, 2048)]
    text = " ".join(f.text for f in attention_findings(recs))
    assert "cross at N ≈ 1000 " in text and "above it the lstm baseline is faster" in text


def test_no_crossover_in_range_is_said_and_extrapolated_only_as_such():
    recs = [_rec(v, n, 1e-9 * n**2 if v == "naive" else 1e-5 * n) for v in ("naive", "lstm") for n in (256, 512)]
    text = " ".join(f.text for f in attention_findings(recs))
    assert "attention is faster at every N measured" in text
    # 1e-9·N² = 1e-5·N at N = 10,000: the last two sizes' slopes (2 and 1) extrapolate to it exactly
    assert "cross near N ≈ 10K (not measured)" in text


def test_near_parallel_slopes_extrapolate_to_beyond_not_to_an_overflow():
    recs = [_rec("naive", 256, 1e-6), _rec("naive", 512, 2.0001e-6), _rec("lstm", 256, 1e-3), _rec("lstm", 512, 2e-3)]
    text = " ".join(f.text for f in attention_findings(recs))
    assert "they would cross only beyond N = 1T (not measured)" in text


def test_the_speedup_is_the_fastest_rival_over_naive_at_the_largest_naive_length():
    recs = [_rec("naive", 1024, 4e-3), _rec("sdpa", 1024, 1e-3), _rec("flash", 1024, 2e-3), _rec("lstm", 1024, 1e-4),
            _rec("naive", 512, 1e-3), _rec("sdpa", 512, 9e-4)]
    (speed,) = [f.text for f in attention_findings(recs) if "fastest implementation" in f.text]
    assert f"at N=1024, the fastest implementation, sdpa, takes {fmt_time(1e-3)}" in speed  # not the lstm baseline
    assert "4.00x naive's speed" in speed and "overlap" not in speed


def test_a_speedup_inside_the_cis_says_it_is_noise():
    recs = [_rec("naive", 256, 1.00e-3, ci_rel=0.05), _rec("sdpa", 256, 0.98e-3, ci_rel=0.05)]
    (speed,) = [f.text for f in attention_findings(recs) if "fastest implementation" in f.text]
    assert "their 95% CIs overlap, so the difference is within the noise" in speed


def test_exponents_in_the_summary_are_the_fitted_ones():
    recs = [_rec("naive", n, 1e-9 * n**2) for n in (256, 512, 1024, 2048)]
    (exp,) = [f.text for f in attention_findings(recs) if "grows as" in f.text]
    assert "naive N^2.00" in exp and "over N=1024..2048" in exp


def test_failures_synthetic_times_and_warnings_are_caveats_with_their_hints():
    recs = [_rec("naive", 256, 1e-3, clock="fake"), _rec("naive", 512, 1e-3, status="oom")]
    recs[0].warnings = ["not_converged"]
    out = caveats(recs, {"not_converged": "raise --max-time"})
    assert [f.status for f in out] == ["bad", "bad", "warn"]
    assert "1 of 2 cases failed (naive at N=512: oom)" in out[1].text
    assert out[2].text == "1 of 2 cases carry the warning not_converged: raise --max-time"


def test_a_workload_reports_have_never_seen_gets_a_section_tables_and_exponents():
    recs = [_rec("ddp", n, 1e-6 * n, workload="parallel", label="parallel ddp") for n in (2, 4, 8)]
    doc = build_document(_run(recs), generated_utc="2026-01-01T00:00:00Z")
    (section,) = doc.sections
    assert section.workload == "parallel" and section.key == "workload-parallel"
    assert [t.title.split(" —")[0] for t in section.tables][:1] == ["parallel ddp"]
    assert any("ddp N^1.00" in f.text for f in doc.summary)
    assert any(s.kind == "time_memory" for s in section.figures)


@pytest.mark.parametrize("name", ["report_attention", "report_model", "results_v1"])
def test_every_fixture_gives_findings_with_numbers(name):
    run = load_results(f"{FIXTURES}/{name}.jsonl")
    stated = [f for f in findings(run) if f.status is None]  # findings, not caveats
    assert stated and all(any(ch.isdigit() for ch in f.text) for f in stated)


def test_the_model_summary_gives_tokens_per_s_and_mfu_per_size_from_the_records():
    run = load_results(f"{FIXTURES}/report_model.jsonl")
    train = [r for r in run.records if r.params.get("mode") == "train"]
    (line,) = [f.text for f in findings(run) if f.text.startswith(train[0].label)]
    for r in train:
        assert f"{r.params['preset']} " in line
        assert f"(MFU {100 * r.metrics['mfu_measured']:.1f}%)" in line
    k = math.log(train[1].metrics["tokens_per_s"] / train[0].metrics["tokens_per_s"]) / math.log(
        train[1].size / train[0].size)
    assert f"tokens/s ~ params^{k:.2f}" in line
