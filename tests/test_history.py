"""Run history in SQLite: migrations, idempotent recording, fingerprints, series, bands, change points, reports."""

from __future__ import annotations

import math
import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from xfbench.reports import history as hist
from xfbench.reports.errors import BadInput
from xfbench.reports.history import (
    SCHEMA_VERSION,
    History,
    change_points,
    default_db_path,
    fingerprint,
    fingerprint_fields,
    noise_band,
    noise_sd,
    recent_band,
    sparkline,
    step_rel,
)
from xfbench.reports.history_report import history_html, history_table
from xfbench.reports.schema import Header, Record, RunResult, TimeStats, case_id
from xfbench.reports.store import ResultsWriter, load_results

ENV = {
    "hostname": "ci-1", "os": "Linux", "cpu_model": "AMD EPYC", "cuda_devices": [], "torch": "2.5.0+cpu",
    "cuda": None, "torch_threads": 2, "load_avg": [0.1, 0.2, 0.3], "calibration": {"level": "quick"},
}
GPU_ENV = {**ENV, "cuda": "12.4", "cuda_devices": [{"index": 0, "name": "NVIDIA H100", "uuid": "GPU-1"}]}


def time_stats(median: float) -> TimeStats:
    return TimeStats(
        n=6, calls_per_sample=1, warmup_calls=2, median_s=median, mean_s=median, min_s=median, max_s=median,
        p10_s=median, p90_s=median, iqr_s=0.0, iqr_over_median=0.0, ci_low_s=0.99 * median,
        ci_high_s=1.01 * median, ci_rel=0.01, target_ci_rel=0.02, converged=True, total_s=1.0,
        clock="perf_counter", samples_s=[median] * 6,
    )


def rec(run_id: str, median: float | None, size: int = 128, variant: str = "naive",
        label: str = "attention fwd", status: str = "ok", device: str = "cpu") -> Record:
    params = {"impl": variant, "seq_len": size}
    return Record(
        run_id=run_id, case_id=case_id("attention", params, device), workload="attention", label=label,
        variant=variant, size=size, size_name="N", params=params, device=device, status=status,
        reason=None if status == "ok" else "out of memory",
        time=time_stats(median) if median is not None else None,
        metrics={"tokens_per_s": 1000.0 / median if median else None, "peak_mem_bytes": 4096},
    )


def header(run_id: str, created: str, env: dict | None = None, **extra) -> Header:
    return Header(run_id=run_id, tool_version="0.0.test", created_utc=created, command="attention",
                  environment=env if env is not None else ENV, **extra)


def run(run_id: str, created: str, records: list[Record], env: dict | None = None, **extra) -> RunResult:
    h = header(run_id, created, env, **extra)
    return RunResult(header=h, headers=[h], records=records)


def day(i: int) -> str:
    return f"2026-01-{i + 1:02d}T00:00:00+00:00"


def series_db(tmp_path, medians: list[float], label: str = "attention fwd") -> History:
    """A history with one run per value (one case), a day apart."""
    h = History(tmp_path / "h.sqlite")
    for i, m in enumerate(medians):
        h.record(run(f"r{i:02d}", day(i), [rec(f"r{i:02d}", m, label=label)]))
    return h


# --- the database ------------------------------------------------------------------------------


def test_a_fresh_database_is_created_at_the_current_version_in_wal_mode(tmp_path):
    path = tmp_path / "sub" / "h.sqlite"
    with History(path) as h:
        assert h.version == SCHEMA_VERSION == 1
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"meta", "runs", "results", "fingerprints"}
    assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("1",)
    with History(path) as h:  # reopening migrates nothing
        assert h.version == 1


def test_a_newer_database_is_refused(tmp_path):
    path = tmp_path / "h.sqlite"
    History(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    db.commit()
    db.close()
    with pytest.raises(BadInput, match=f"schema version {SCHEMA_VERSION + 1}, newer than this xfbench"):
        History(path)


def test_a_file_that_is_not_a_database_is_bad_input(tmp_path):
    path = tmp_path / "h.sqlite"
    path.write_text("not sqlite at all, just some text that is long enough to be read as a header" * 4)
    with pytest.raises(BadInput, match="not a usable xfbench history database"):
        History(path)


def test_migrations_run_in_order_and_keep_the_data(tmp_path, monkeypatch):
    path = tmp_path / "h.sqlite"
    with History(path) as h:
        h.record(run("r0", day(0), [rec("r0", 1.0)]))
    # a future schema step: v1 -> v2 adds a column; the v1 database upgrades in place
    monkeypatch.setitem(hist.MIGRATIONS, 2, ("ALTER TABLE runs ADD COLUMN note TEXT",))
    monkeypatch.setattr(hist, "SCHEMA_VERSION", 2)
    with History(path) as h:
        assert h.version == 2
        assert [p.value for p in h.series(rec("r0", 1.0).case_id)] == [1.0]
    columns = [r[1] for r in sqlite3.connect(path).execute("PRAGMA table_info(runs)")]
    assert columns[-1] == "note"


def test_default_db_path_follows_the_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("XFBENCH_HISTORY_DB", str(tmp_path / "x.sqlite"))
    assert default_db_path() == tmp_path / "x.sqlite"
    monkeypatch.delenv("XFBENCH_HISTORY_DB")
    assert default_db_path().name == "history.sqlite" and "xfbench" in str(default_db_path())


# --- recording ---------------------------------------------------------------------------------


def test_recording_a_file_twice_adds_nothing_the_second_time(tmp_path):
    path = tmp_path / "results.jsonl"
    with ResultsWriter(path, header("seg-1", day(0))) as w:
        w.append(rec("seg-1", 1.0, size=128))
        w.append(rec("seg-1", None, size=256, status="oom"))
    with ResultsWriter(path, header("seg-2", day(1))) as w:  # a --resume: reruns the failed case
        w.append(rec("seg-2", 2.0, size=256))
    results = load_results(path)
    with History(tmp_path / "h.sqlite") as h:
        assert h.record(results, source=str(path), suite="nightly") == 3
        assert h.record(results, source=str(path)) == 0
        assert h.record(load_results(path)) == 0
        db = h._db
        assert db.execute("SELECT COUNT(*) FROM runs").fetchone() == (2,)
        assert db.execute("SELECT run_id, suite, source FROM runs ORDER BY run_id").fetchall() == [
            ("seg-1", "nightly", str(path)), ("seg-2", "nightly", str(path))]
        oom_case = rec("seg-2", 2.0, size=256).case_id
        assert [(p.run_id, p.value) for p in h.series(oom_case)] == [("seg-2", 2.0)]  # the oom run has no point
        assert [(c.size, c.runs, c.ok) for c in h.cases()] == [(128, 1, 1), (256, 2, 1)]


def test_a_real_results_file_records_every_case(tmp_path):
    fixture = Path(__file__).parent / "fixtures" / "report_attention.jsonl"  # a schema v2 file
    results = load_results(fixture)
    first = results.records[0]
    with History(tmp_path / "h.sqlite") as h:
        assert h.record(results, source=str(fixture)) == len(results.records) == 16
        assert h.record(results) == 0
        fp = fingerprint(results.header.environment, "cpu")
        assert {c.fingerprint for c in h.cases()} == {fp} and len(h.cases()) == 16
        (point,) = h.series(first.case_id, fp)
        assert (point.run_id, point.created_utc, point.value) == (
            results.header.run_id, results.header.created_utc, first.time.median_s)
        (tokens,) = h.series(first.case_id, fp, metric="tokens_per_s")
        assert tokens.value == first.metrics["tokens_per_s"]


def test_a_rerun_inside_one_segment_records_its_latest_record(tmp_path):
    first, rerun = rec("r0", 1.0), rec("r0", 3.0)
    with History(tmp_path / "h.sqlite") as h:
        assert h.record(run("r0", day(0), [first, rerun])) == 1
        assert [p.value for p in h.series(first.case_id)] == [3.0]


def test_the_suite_comes_from_the_header_when_not_given(tmp_path):
    with History(tmp_path / "h.sqlite") as h:
        h.record(run("r0", day(0), [rec("r0", 1.0)], suite="smoke"))
        assert h._db.execute("SELECT suite FROM runs").fetchone() == ("smoke",)


def test_records_naming_a_run_no_header_has_are_bad_input(tmp_path):
    with History(tmp_path / "h.sqlite") as h, pytest.raises(BadInput, match="ghost"):
        h.record(run("r0", day(0), [rec("ghost", 1.0)]))


# --- fingerprints ------------------------------------------------------------------------------


def test_fingerprint_fields_name_what_makes_timings_comparable():
    assert fingerprint_fields(GPU_ENV, "cuda:0") == {
        "hostname": "ci-1", "cpu_model": "AMD EPYC", "gpus": ["NVIDIA H100"], "torch": "2.5.0+cpu",
        "cuda": "12.4", "torch_threads": 2, "device_type": "cuda",
    }


def test_fingerprint_is_stable_and_ignores_what_varies_between_runs():
    fp = fingerprint(ENV, "cpu")
    assert fingerprint(dict(ENV), "cpu") == fp and len(fp) == 12 and int(fp, 16) >= 0
    # load, calibration, OS and key order do not change it
    noisy = dict(reversed(list({**ENV, "load_avg": [3.0, 2.0, 1.0], "calibration": None, "os": "Linux 6"}.items())))
    assert fingerprint(noisy, "cpu") == fp
    assert fingerprint(GPU_ENV, "cuda:0") == fingerprint(GPU_ENV, "cuda:1")  # the device type, not the index


def test_fingerprint_changes_with_threads_host_device_and_versions():
    fp = fingerprint(ENV, "cpu")
    changed = [
        fingerprint({**ENV, "torch_threads": 4}, "cpu"),
        fingerprint({**ENV, "hostname": "ci-2"}, "cpu"),
        fingerprint({**ENV, "torch": "2.6.0"}, "cpu"),
        fingerprint(GPU_ENV, "cpu"),
        fingerprint(GPU_ENV, "cuda"),
    ]
    assert fp not in changed and len(set(changed)) == len(changed)


def test_fingerprint_hash_is_pinned():
    # stored in users' databases: changing fingerprint_fields or the hash would orphan their history
    assert fingerprint(ENV, "cpu") == "a8066498421d"


def test_results_of_each_machine_are_kept_apart(tmp_path):
    fp2, fp4 = fingerprint(ENV, "cpu"), fingerprint({**ENV, "torch_threads": 4}, "cpu")
    with History(tmp_path / "h.sqlite") as h:
        h.record(run("a", day(0), [rec("a", 1.0)]))
        h.record(run("b", day(1), [rec("b", 2.0)], env={**ENV, "torch_threads": 4}))
        cid = rec("a", 1.0).case_id
        assert [p.value for p in h.series(cid, fp2)] == [1.0]
        assert [p.value for p in h.series(cid, fp4)] == [2.0]
        assert [p.value for p in h.series(cid)] == [1.0, 2.0]
        assert [(c.fingerprint, c.runs) for c in h.cases()] == sorted([(fp2, 1), (fp4, 1)])
        assert [c.fingerprint for c in h.cases(fp4)] == [fp4]
        machines = h.fingerprints()
        assert [m.fingerprint for m in machines] == [fp4, fp2]  # most recently used first
        assert machines[0].fields["torch_threads"] == 4 and machines[0].runs == 1
        assert machines[0].first_utc == machines[0].last_utc == day(1)


# --- series ------------------------------------------------------------------------------------


def test_series_is_oldest_first_and_keeps_the_last_n(tmp_path):
    with History(tmp_path / "h.sqlite") as h:
        for i in [3, 0, 4, 1, 2]:  # recorded out of order: the header's time orders them
            h.record(run(f"r{i}", day(i), [rec(f"r{i}", float(i + 1))]))
        h.record(run("r5", day(5), [rec("r5", None, status="error")]))
        cid = rec("r0", 1.0).case_id
        assert [(p.run_id, p.value) for p in h.series(cid)] == [(f"r{i}", float(i + 1)) for i in range(5)]
        assert [p.value for p in h.series(cid, last=3)] == [3.0, 4.0, 5.0]
        assert [p.created_utc for p in h.series(cid, last=2)] == [day(3), day(4)]
        assert [p.value for p in h.series(cid, last=None)] == [1.0, 2.0, 3.0, 4.0, 5.0]
        assert [p.value for p in h.series(cid, last=2, metric="tokens_per_s")] == [250.0, 200.0]
        assert [p.value for p in h.series(cid, last=1, metric="peak_mem_bytes")] == [4096.0]
        assert h.series("no-such-case") == []
        with pytest.raises(BadInput, match="unknown history metric 'flops'"):
            h.series(cid, metric="flops")
        with pytest.raises(BadInput, match="last must be at least 1"):
            h.series(cid, last=0)


# --- noise band --------------------------------------------------------------------------------


def test_noise_band_is_median_plus_minus_three_iqr():
    # sorted: 9 10 10 11 11 12 13 14; linear quartiles: q1 = x[1.75] = 10, q3 = x[5.25] = 12.25
    band = noise_band([10, 12, 11, 13, 9, 10, 14, 11])
    assert band.median == 11.0 and band.iqr == 2.25 and band.n == 8 and band.fence == 3.0
    assert band.low == 11.0 - 6.75 == 4.25 and band.high == 17.75
    assert band.half_width_rel == 6.75 / 11


def test_noise_band_iqr_agrees_with_scipy():
    scipy_stats = pytest.importorskip("scipy.stats")
    values = [1.03, 0.98, 1.10, 1.01, 0.97, 1.05, 1.00, 0.99, 1.20, 1.02, 0.96]
    band = noise_band(values)
    assert band.iqr == pytest.approx(float(scipy_stats.iqr(values)), rel=1e-12)
    assert band.median == pytest.approx(float(scipy_stats.scoreatpercentile(values, 50)), rel=1e-12)


def test_noise_band_reads_the_last_30_runs_and_needs_5():
    assert noise_band([1.0, 1.1, 0.9, 1.0]) is None
    assert noise_band([1.0, 1.1, 0.9, 1.0, 1.2]).n == 5
    old = [100.0] * 10  # outside the window of 30: no influence
    recent = [float(i % 7) for i in range(30)]
    assert noise_band(old + recent) == noise_band(recent)
    assert noise_band(old + recent).n == 30
    flat = noise_band([2.0] * 6)
    assert (flat.iqr, flat.low, flat.high, flat.half_width_rel) == (0.0, 2.0, 2.0, 0.0)


# --- change points -----------------------------------------------------------------------------

STEP = [1.00, 1.02, 0.99, 1.01, 0.98, 1.00, 1.01, 0.99, 1.02, 1.00,
        1.21, 1.19, 1.22, 1.20, 1.18, 1.21, 1.20, 1.19, 1.22, 1.20]
FLAT_NOISY = [1.00, 1.04, 0.97, 1.03, 0.95, 1.05, 1.01, 0.96, 1.04, 0.99,
              1.02, 0.95, 1.05, 0.98, 1.03, 0.97, 1.04, 1.00, 0.96, 1.03]


def test_noise_sd_is_the_mad_of_successive_differences():
    # diffs 1, 2, 3: median 2, absolute deviations 1, 0, 1 -> MAD 1
    assert noise_sd([1.0, 2.0, 4.0, 7.0]) == 1.4826 / math.sqrt(2)
    assert noise_sd([5.0]) == 0.0


def test_a_step_is_found_at_its_first_run():
    assert change_points(STEP) == [10]
    assert step_rel(STEP, 10) == pytest.approx(1.20 / 1.00 - 1)
    assert change_points([1.0] * 10 + [1.2] * 10) == [10]
    assert change_points([1.2] * 8 + [1.0] * 8) == [8]  # a speed-up too
    assert change_points([1.0] * 8 + [1.3] * 8 + [1.1] * 8) == [8, 16]


def test_a_flat_noisy_series_and_one_outlier_have_no_change_point():
    assert change_points(FLAT_NOISY) == []
    assert change_points([1.0, 1.01, 0.99, 1.0, 1.02, 1.0, 3.0, 1.0, 0.99, 1.01, 1.0, 1.0, 1.02]) == []
    spiky_step = STEP[:10] + [1.0, 1.01, 3.0, 0.99, 1.0, 1.02] + STEP[10:]
    assert change_points(spiky_step) == [16]


def test_a_step_below_the_minimum_relative_step_is_ignored():
    assert change_points([1.0] * 10 + [1.015] * 10) == []  # 1.5% < MIN_STEP_REL, even noiseless
    assert change_points([1.0] * 10 + [1.03] * 10) == [10]


def test_no_change_point_needs_window_runs_on_both_sides():
    assert change_points([1.0] * 5 + [2.0] * 4) == []
    assert change_points([1.0] * 5 + [2.0] * 5) == [5]


def test_recent_band_reads_the_runs_since_the_last_change_point():
    assert recent_band(STEP[:-1]) == noise_band(STEP[10:19])
    assert recent_band(FLAT_NOISY) == noise_band(FLAT_NOISY)
    assert recent_band([1.0] * 10 + [1.2] * 5) == noise_band([1.2] * 5)
    assert recent_band([1.0] * 3) is None


# --- sparkline ---------------------------------------------------------------------------------


def test_sparkline_scales_min_to_max():
    assert sparkline([1, 2, 3, 4, 5, 6, 7, 8]) == "▁▂▃▄▅▆▇█"
    assert sparkline([0.0, 10.0, 5.0]) == "▁█▅"
    assert sparkline([3.0, 3.0, 3.0]) == "▄▄▄"
    assert sparkline([]) == ""


# --- two writers -------------------------------------------------------------------------------

RUNS_PER_WRITER = 15


def _record_many(db_path: str, prefix: str, barrier) -> None:
    runs = [run(f"{prefix}{i:02d}", day(i), [rec(f"{prefix}{i:02d}", 1.0 + i, size=s) for s in (64, 128)])
            for i in range(RUNS_PER_WRITER)]
    barrier.wait()
    for r in runs:  # each record() its own transaction, so the two processes interleave
        with History(db_path) as h:
            assert h.record(r) == 2


def test_two_processes_recording_into_one_database_both_succeed(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    path = str(tmp_path / "shared.sqlite")  # not created yet: both processes create and migrate it
    writers = [ctx.Process(target=_record_many, args=(path, p, barrier)) for p in ("a", "b")]
    for w in writers:
        w.start()
    for w in writers:
        w.join(timeout=180)
    assert [w.exitcode for w in writers] == [0, 0]
    with History(path) as h:
        assert h.version == SCHEMA_VERSION
        assert h._db.execute("SELECT COUNT(*) FROM runs").fetchone() == (2 * RUNS_PER_WRITER,)
        assert h._db.execute("SELECT COUNT(*) FROM results").fetchone() == (2 * 2 * RUNS_PER_WRITER,)
        assert len(h.series(rec("a00", 1.0, size=64).case_id, last=None)) == 2 * RUNS_PER_WRITER


# --- reports -----------------------------------------------------------------------------------


def test_history_table_shows_band_sparkline_and_change_dates(tmp_path):
    with series_db(tmp_path, STEP) as h:
        table = history_table(h, last=20)
        assert history_table(h, metric="tokens_per_s").rows[0][2].unit == "tok/s"
    fp = fingerprint(ENV, "cpu")
    assert table.title == f"history — median time per call per case on machine {fp}"
    assert table.columns == ["case", "runs", "latest", "band median", "band", "trend (last 20)", "changes"]
    (row,) = table.rows
    assert [c.text for c in row] == [
        "attention fwd · naive · N=128", "20", "1.2 s", "1.2 s", "±5.0%", sparkline(STEP), "2026-01-11 (+20.0%)",
    ]
    band = noise_band(STEP[10:19])  # the runs before the latest, since the step
    assert row[3].value == band.median == 1.20 and row[4].value == band.half_width_rel
    assert row[2].status is None  # 1.20 lies inside the band of the runs before it
    notes = "\n".join(table.notes)
    assert "3×IQR" in notes and "rustc-perf" in notes and "MAD of successive differences" in notes
    assert table.notes[-1] == (f"machine {fp}: cpu_model=AMD EPYC, cuda=None, device_type=cpu, gpus=[], "
                               "hostname=ci-1, torch=2.5.0+cpu, torch_threads=2")


def test_history_table_flags_a_latest_run_outside_the_band_and_needs_five_runs(tmp_path):
    with series_db(tmp_path, [1.0, 1.01, 0.99, 1.0, 1.02, 1.0, 1.5]) as h:
        (row,) = history_table(h).rows
        assert row[2].status == "warn" and "outside the noise band" in row[2].note
    with series_db(tmp_path / "short", [1.0, 1.01, 0.99]) as h:
        (row,) = history_table(h).rows
        assert row[3].value is None and "fewer than 5 runs" in row[3].note


def test_history_table_picks_cases_and_lists_machines_when_several(tmp_path):
    with History(tmp_path / "h.sqlite") as h:
        h.record(run("a", day(0), [rec("a", 1.0), rec("a", 2.0, variant="sdpa")]))
        h.record(run("b", day(1), [rec("b", 1.0)], env={**ENV, "hostname": "ci-2"}))
        both = history_table(h)
        assert both.columns[1] == "machine" and len(both.rows) == 3
        assert "on machine" not in both.title
        only = history_table(h, case="SDPA")
        assert [r[0].text for r in only.rows] == ["attention fwd · sdpa · N=128"]
        assert [r[0].text for r in history_table(h, case=rec("a", 1.0).case_id).rows] == [
            "attention fwd · naive · N=128"] * 2
        assert history_table(h, case="nothing like it").rows == []
        assert "no recorded runs match" in history_table(h, case="nothing like it").notes


def test_history_html_has_one_inline_svg_per_case_and_escapes_db_strings(tmp_path):
    evil = "<script>alert(1)</script>"
    with series_db(tmp_path, STEP, label=evil) as h:
        page = history_html(h)
    assert page.startswith("<!doctype html>") and page.count("<svg") == 1
    assert "<script" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "default-src &#39;none&#39;" in page  # the CSP, its quotes escaped in the attribute
    assert "2026-01-11 (+20.0%)" in page


def test_history_html_renders_the_same_page_twice(tmp_path):
    with series_db(tmp_path, STEP) as h:
        assert history_html(h) == history_html(h)
