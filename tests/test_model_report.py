"""Model report: pure functions from literal records to tables (MFU, residual, floor, exponents)."""

from xfbench.reports.model_report import (
    NO_TOKENS_DEFINITION,
    attention_share_table,
    mode_table,
    model_tables,
    scaling_table,
)
from xfbench.reports.schema import Header, MemoryStats, Record, RunResult, TimeStats
from xfbench.reports.tables import SYNTHETIC_NOTE

HEADER = Header(run_id="test-run", tool_version="t", created_utc="2025-01-01T00:00:00+00:00", command="model",
                warning_hints={"not_converged": "raise --max-time"})


def _time(median: float) -> TimeStats:
    return TimeStats(
        n=10, calls_per_sample=1, warmup_calls=2, median_s=median, mean_s=median, min_s=median, max_s=median,
        p10_s=median, p90_s=median, iqr_s=0.0, iqr_over_median=0.0, ci_low_s=median, ci_high_s=median, ci_rel=0.015,
        target_ci_rel=0.02, converged=True, total_s=10 * median, clock="fake", samples_s=[median] * 10,
    )


def _rec(preset, n, mode="train", tps=1000.0, peak=None, analytic=None, status="ok", reason=None, warnings=(),
         **metrics):
    ok = status == "ok"
    return Record(
        case_id=f"{preset}-{mode}", workload="model", label=f"model {mode} · float32 · B=8", variant="eager",
        warnings=list(warnings), size=n, size_name="params", device="cpu", status=status, reason=reason,
        params={"preset": preset, "mode": mode, "seq_len": 256, "new_tokens": 128, "n_embd": 512, "n_layer": 4},
        time=_time(2048 / tps) if ok else None,
        memory=MemoryStats(method="fake", peak_bytes=peak) if ok and peak is not None else None,
        metrics={"tokens_per_s": tps, **metrics} if ok else {},
        info={"mem_analytic_step_bytes": analytic, "mem_analytic_bytes": analytic, "attention_share": 0.07,
              "tokens_definition": "tokens/s = defined by the workload", "flop_convention": "6N + 12LdT"}
        if ok else {},
    )


def _cells(table):
    return [[c.text for c in row] for row in table.rows]


def test_train_table_shows_mfu_when_present_and_dash_otherwise():
    recs = [
        _rec("1M", 1e6, tps=20_000.0, peak=120 * 2**20, analytic=100 * 2**20, mfu_measured=0.5, mfu_spec=None),
        _rec("10M", 1e7, tps=2_000.0, peak=None, analytic=None),
    ]
    t = mode_table(recs[0].label, recs)
    assert t.columns[:5] == ["model", "params", "variant", "T", "tokens/s"]
    row1, row2 = _cells(t)
    col = {c: i for i, c in enumerate(t.columns)}
    assert row1[col["MFU measured"]] == "50.0%" and row1[col["MFU spec"]] == "-"
    assert row1[col["peak mem"]] == "120 MiB" and row1[col["analytic"]] == "100 MiB"
    assert row1[col["residual"]] == "20 MiB (+17%)"
    assert row2[col["MFU measured"]] == "-" and row2[col["analytic"]] == "-"
    assert row1[col["step time"]] == "102 ms ±1.5%"  # 2048 tokens / 20k tokens/s, with its CI
    assert t.notes[:2] == [SYNTHETIC_NOTE, "tokens/s = defined by the workload"]  # the records' definition
    assert "FLOPs (convention): 6N + 12LdT" in t.notes


def test_warnings_are_highlighted_and_explained_with_the_headers_hints():
    recs = [_rec("1M", 1e6, warnings=["not_converged"]), _rec("10M", 1e7)]
    t = mode_table(recs[0].label, recs, HEADER.warning_hints)
    notes_col = t.columns.index("notes")
    assert t.rows[0][notes_col].text == "not_converged" and t.rows[0][notes_col].status == "warn"
    assert t.notes[-2:] == ["highlighted cells carry warnings: not_converged", "  not_converged: raise --max-time"]


def test_notes_show_the_flop_cross_check_under_each_schemas_name():
    recs = [_rec("1M", 1e6, flops_counted_over_work=1.004), _rec("10M", 1e7, flops_counted_over_convention=1.9)]
    t = mode_table(recs[0].label, recs)
    notes_col = t.columns.index("notes")
    assert [row[notes_col].text for row in t.rows] == ["counted/work 1.00", "counted/convention 1.90"]


def test_records_without_a_tokens_definition_say_so():
    r = _rec("1M", 1e6)
    r.info.pop("tokens_definition")
    assert NO_TOKENS_DEFINITION in mode_table(r.label, [r]).notes


def test_decode_table_shows_time_per_token_and_floor_ratio():
    recs = [
        _rec("1M", 1e6, mode="decode", tps=8000.0, time_over_floor=3.5), _rec("10M", 1e7, mode="decode"),
        _rec("25M", 2.5e7, mode="decode", time_over_floor=None, cache_resident=True),
    ]
    t = mode_table(recs[0].label, recs)
    col = {c: i for i, c in enumerate(t.columns)}
    rows = _cells(t)
    assert rows[0][col["P+M"]] == "256+128" and rows[0][col["time/token"]] == "256 ms ±1.5%"
    assert rows[0][col["x floor"]] == "3.50x" and rows[1][col["x floor"]] == "-"
    assert rows[2][col["x floor"]] == "cache-resident"  # no DRAM floor for a working set the LLC holds


def test_failed_rows_show_status_and_reason_below():
    recs = [_rec("1M", 1e6), _rec("10M", 1e7, status="oom", reason="out of memory")]
    t = mode_table(recs[0].label, recs)
    assert _cells(t)[1][4] == "OOM"
    assert "10M eager: oom: out of memory" in t.notes


def test_scaling_exponents_are_exact_on_power_laws():
    # tokens/s ~ N^-1 and the in-step peak ~ N^0.5 exactly, measured and analytic alike; the total
    # analytic memory (weights, optimizer state: ~N^1) is not what the measured in-step peak is.
    sizes = {"1M": 1e6, "10M": 1e7, "100M": 1e8}
    recs = []
    for k, n in sizes.items():
        r = _rec(k, n, tps=1e9 / n, peak=int(1e3 * n**0.5), analytic=int(2e3 * n**0.5))
        r.info["mem_analytic_bytes"] = 16 * n + r.info["mem_analytic_step_bytes"]
        recs.append(r)
    t = scaling_table(recs)
    assert _cells(t)[0][2:6] == ["-1.00", "0.50", "0.50", "1M, 10M, 100M"]
    assert t.columns[2:5] == ["tokens/s k", "measured in-step peak k", "analytic in-step peak k"]


def test_attention_share_table():
    t = attention_share_table([_rec("1M", 1e6)])
    assert _cells(t)[0][5:] == ["train", "8.3%", "7.0%"]  # T/(6d) = 256/3072


def test_model_tables_ignore_other_workloads():
    other = _rec("1M", 1e6).model_copy(update={"workload": "attention"})
    assert model_tables(RunResult(header=HEADER, records=[other])) == []


def test_a_resumed_case_shows_only_its_latest_record():
    # --resume reran 10M after an error: the file holds both records, the report only the rerun.
    recs = [_rec("1M", 1e6), _rec("10M", 1e7, status="error", reason="boom"), _rec("10M", 1e7, tps=100.0)]
    mode, scaling, *_ = model_tables(RunResult(header=HEADER, records=recs))
    assert [row[0].text for row in mode.rows] == ["1M", "10M"]
    assert not any("boom" in n for n in mode.notes)
    assert _cells(scaling)[0][5:] == ["1M, 10M", ""]

