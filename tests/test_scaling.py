"""Log-log exponent fits on literal data, and the generic tables built from a resumed or faked run."""

import pytest

from xfbench.reports.scaling import fit_loglog, fit_series, larger_half
from xfbench.reports.schema import Header, Record, RunResult, TimeStats
from xfbench.reports.select import latest
from xfbench.reports.tables import SYNTHETIC_NOTE, all_tables


def test_fit_recovers_exact_power_laws():
    xs = [256, 512, 1024, 2048]
    assert fit_loglog(xs, [x**2 for x in xs]) == pytest.approx(2.0)
    assert fit_loglog(xs, [3 * x for x in xs]) == pytest.approx(1.0)
    assert fit_loglog(xs, [7.0] * 4) == pytest.approx(0.0)


def test_fit_rejects_degenerate_input():
    assert fit_loglog([1, 1], [2, 3]) is None
    assert fit_loglog([1, 2], [0, 3]) is None


def test_larger_half_keeps_upper_sizes():
    pts = [(n, float(n)) for n in (256, 512, 1024, 2048, 4096)]
    assert [p[0] for p in larger_half(pts)] == [1024, 2048, 4096]
    assert [p[0] for p in larger_half(pts[:2])] == [256, 512]


def _time(median: float, clock: str) -> TimeStats:
    return TimeStats(
        n=10, calls_per_sample=1, warmup_calls=2, median_s=median, mean_s=median, min_s=median, max_s=median,
        p10_s=median, p90_s=median, iqr_s=0.0, iqr_over_median=0.0, ci_low_s=median, ci_high_s=median, ci_rel=0.01,
        target_ci_rel=0.02, converged=True, total_s=10 * median, clock=clock, samples_s=[median] * 10,
    )


def _rec(n: int, status: str = "ok", reason: str | None = None, clock: str = "perf_counter") -> Record:
    ok = status == "ok"
    return Record(
        case_id=f"case-{n}", workload="attention", label="attention fwd", variant="naive", size=n, size_name="N",
        params={"seq_len": n}, device="cpu", status=status, reason=reason,
        time=_time(1e-6 * n * n, clock) if ok else None, metrics={"flop_per_s": 1e9} if ok else {},
    )


def _run(records: list[Record]) -> RunResult:
    header = Header(run_id="r", tool_version="t", created_utc="2025-01-01T00:00:00+00:00", command="attention")
    return RunResult(header=header, records=records)


def test_a_resumed_case_shows_only_its_latest_record():
    # --resume reran N=128 after an error: the file holds both records, every table only the rerun.
    records = [_rec(64), _rec(128, "error", "boom"), _rec(128)]
    assert [r.status for r in latest(records)] == ["ok", "ok"] and latest(records)[1] is records[2]
    results, scaling = all_tables(_run(records))
    assert results.rows[1][1].text.startswith("16.4 ms ±1.0%")
    assert not any("boom" in note for note in results.notes)
    (row,) = scaling.rows
    assert [c.text for c in row[2:]] == ["2.00", "-", "64..128", "128", ""]
    (fit,) = fit_series(records)
    assert fit.failed == () and fit.largest_ok == 128


def test_fake_clock_times_are_marked_synthetic():
    fake = all_tables(_run([_rec(64, clock="fake"), _rec(128, clock="fake")]))
    assert all(SYNTHETIC_NOTE in t.notes for t in fake)
    real = all_tables(_run([_rec(64), _rec(128)]))
    assert not any(SYNTHETIC_NOTE in t.notes for t in real)


def test_time_with_ci_names_a_level_below_95_percent():
    from xfbench.reports.units import fmt_time_ci

    assert fmt_time_ci(1.01e-3, 0.02) == "1.01 ms ±2.0%"
    assert fmt_time_ci(1.01e-3, 0.09, 0.75) == "1.01 ms ±9.0% (75% CI)"
