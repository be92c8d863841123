"""Data-parallel and collective reports: tables, findings and figures from xfbench parallel's
records (the real results file tests/fixtures/report_parallel.jsonl, and literal edge cases:
a failed rank, a missing baseline, an exposed-comm CI), rendered in every format and by the CLI."""

import shutil
from pathlib import Path

import pytest

from xfbench.reports.document import build_document
from xfbench.reports.figures import build_figure, figure_specs, render_figure
from xfbench.reports.parallel_report import (
    collective_tables,
    parallel_table,
    parallel_tables,
    peak_per_rank,
    ranks_table,
)
from xfbench.reports.render import render
from xfbench.reports.schema import Record, RunResult
from xfbench.reports.select import latest
from xfbench.reports.store import load_results
from xfbench.reports.summary import findings, parallel_findings
from xfbench.reports.units import fmt_bytes, fmt_rate

from .conftest import run_cli

FIXTURE = Path(__file__).parent / "fixtures" / "report_parallel.jsonl"
LABEL = "parallel train 1M · float32 · weak scaling · B=4/rank · T=64"
COLLECTIVES = "collectives · gloo · float32 · 2 ranks"
STAMP = "2026-01-01T00:00:00Z"


@pytest.fixture(scope="module")
def run() -> RunResult:
    return load_results(FIXTURE)


def _parallel(run: RunResult) -> list[Record]:
    return [r for r in latest(run.records) if r.workload == "parallel"]


def _rec(run: RunResult, variant: str, size: int) -> Record:
    (r,) = [r for r in _parallel(run) if (r.variant, r.size) == (variant, size)]
    return r.model_copy(deep=True)


def _grid(table) -> dict[tuple[int, str], object]:
    """(world size, strategy) -> cell."""
    return {(row[0].value, col): cell for row in table.rows for col, cell in zip(table.columns[1:], row[1:],
                                                                                  strict=True)}


def _line(cell, label: str):
    """The stacked line of `cell` whose label is `label`."""
    (line,) = [c for c in cell.lines if c.label == label]
    return line


# --- data-parallel table ----------------------------------------------------------------------


def test_rows_are_world_sizes_columns_strategies_and_cells_hold_the_records_numbers(run):
    tables = parallel_tables(run)
    main = tables[0]
    assert main.title.startswith(f"{LABEL} — ")
    assert main.columns == ["ranks", "single", "ddp", "fsdp"]
    assert [row[0].value for row in main.rows] == [1, 2]
    grid = _grid(main)
    assert grid[(2, "single")].value == ""  # single runs at one device only
    for (n, strategy), cell in grid.items():
        if cell.value == "":
            continue
        r = _rec(run, strategy, n)
        assert cell.value == r.metrics["tokens_per_s"] and cell.unit == "tok/s"
        assert cell.ci_rel == r.time.ci_rel and cell.ci_level == r.time.ci_level  # the step time's CI
        per_rank = _line(cell, "per rank ")
        assert per_rank.value == r.metrics["tokens_per_s_per_rank"] and per_rank.ci_rel == r.time.ci_rel
        assert _line(cell, "peak mem/rank ").value == max(rank.peak_mem_bytes for rank in r.ranks)
        assert _line(cell, "comm/rank/step ").value == r.metrics["comm_bytes_per_rank_per_step"]
        eff = _line(cell, "efficiency ")
        if strategy == "single":
            assert (eff.value, eff.suffix, eff.ci_rel) == (1.0, " (baseline)", None)
        else:
            assert eff.value == r.metrics["scaling_efficiency"]
            assert eff.ci_rel == r.metrics["scaling_efficiency_ci_rel"]
    ddp2 = grid[(2, "ddp")]
    assert ddp2.text.splitlines() == [
        "global 11.8 ktok/s ±4.6%", "per rank 5.89 ktok/s ±4.6%", "efficiency 0.50 ±10.1%",
        "exposed comm 24.0%", "peak mem/rank 14.5 MiB", "comm/rank/step 3.65 MiB",
    ]
    assert ddp2.status == "warn" and ddp2.note == "not_converged"  # the record's warning


def test_the_max_over_ranks_not_the_sum_is_the_peak_per_rank(run):
    r = _rec(run, "ddp", 2)
    assert [rank.peak_mem_bytes for rank in r.ranks] == [14053376, 15167488]
    assert peak_per_rank(r) == 15167488


def test_captions_say_how_each_figure_was_obtained(run):
    notes = parallel_tables(run)[0].notes
    ddp, fsdp = _rec(run, "ddp", 2), _rec(run, "fsdp", 2)
    assert ddp.info["tokens_definition"] in notes
    assert f"efficiency = {ddp.info['scaling_efficiency']}" in notes
    assert any("baseline: its efficiency is 1 by definition" in n for n in notes)
    assert f"ddp comm/rank/step: {ddp.info['comm_bytes_formula']}" in notes
    assert f"fsdp comm/rank/step: {fsdp.info['comm_bytes_formula']}" in notes
    assert f"ddp exposed comm: {ddp.info['exposed_comm']}" in notes
    assert f"fsdp exposed comm: {fsdp.info['exposed_comm']}" in notes
    # this file predates exposed_comm_ci_s: the table says its exposed comm has no CI, and why
    assert any(n.startswith("exposed comm without a CI (ddp at ranks=1, ddp at ranks=2)") for n in notes)


def test_fsdp_exposed_comm_is_a_dash_with_the_records_reason(run):
    cell = _grid(parallel_tables(run)[0])[(2, "fsdp")]
    exposed = _line(cell, "exposed comm ")
    assert exposed.value is None and exposed.text == "exposed comm -"
    assert exposed.note == _rec(run, "fsdp", 2).info["exposed_comm"]


def test_exposed_comm_shows_its_ci_in_points_of_the_step(run):
    r = _rec(run, "ddp", 2)
    r.metrics["exposed_comm_ci_s"] = 0.05 * r.time.median_s  # ±5 points of the step
    cell = parallel_table(LABEL, [_rec(run, "single", 1), r]).rows[1][2]
    assert _line(cell, "exposed comm ").text == "exposed comm 24.0% ±5.0 pp"
    negative = _line(parallel_table(LABEL, [_rec(run, "ddp", 1)]).rows[0][1], "exposed comm ")
    assert negative.value < 0 and negative.status == "dim" and "nothing measurable" in negative.note


def test_a_failed_rank_shows_its_status_and_reason(run):
    failed = _rec(run, "ddp", 2).model_copy(update={
        "status": "error", "reason": "rank 1 raised RuntimeError: boom", "time": None, "memory": None,
        "metrics": {}, "ranks": None,
    })
    recs = [_rec(run, "single", 1), _rec(run, "ddp", 1), failed]
    table = parallel_table(LABEL, recs)
    cell = _grid(table)[(2, "ddp")]
    assert (cell.text, cell.status, cell.note) == ("error (see below)", "bad", failed.reason)
    assert "ddp at ranks=2: error: rank 1 raised RuntimeError: boom" in table.notes
    assert ranks_table(LABEL, recs) is None  # no record that ran on more than one rank
    text, _overhead, memory = [f.text for f in parallel_findings(recs)]  # the largest world size that ran: 1
    assert text.startswith(f"{LABEL}: ddp at 1 ranks: ") and "rank 1 raised" not in text
    assert memory.startswith(f"{LABEL}: peak memory per rank at 1 ranks") and ": ddp 14.1 MiB, single " in memory


def test_a_missing_baseline_leaves_the_efficiency_blank_and_says_why(run):
    why = "no `single` baseline of this table in the results file"
    recs = []
    for n in (1, 2):
        r = _rec(run, "ddp", n)
        for k in ("scaling_efficiency", "scaling_efficiency_ci_rel", "baseline_case_id", "time_over_single"):
            r.metrics.pop(k)
        r.info["scaling_efficiency"] = why
        recs.append(r)
    table = parallel_table(LABEL, recs)
    assert table.columns == ["ranks", "ddp"]
    eff = _line(table.rows[1][1], "efficiency ")
    assert eff.text == "efficiency -" and eff.note == why
    assert f"ddp at ranks=2: no efficiency: {why}" in table.notes
    assert not any("by definition" in n for n in table.notes)
    (text,) = [f.text for f in parallel_findings(recs)]  # one strategy: no memory comparison
    assert f"no scaling efficiency ({why})" in text and text.endswith("against no single baseline ran")


def test_ranks_table_names_the_slowest_rank_and_the_spread(run):
    table = parallel_tables(run)[2]
    assert table.title == f"{LABEL} — ranks: stragglers and memory per rank"
    assert [(row[0].value, row[1].value) for row in table.rows] == [("ddp", 2), ("fsdp", 2)]
    ddp = _rec(run, "ddp", 2)
    row = table.rows[0]
    col = {c: i for i, c in enumerate(table.columns)}
    assert row[col["slowest rank"]].label == "rank 1: " and row[col["slowest rank"]].value == ddp.ranks[1].median_s
    assert row[col["fastest rank"]].label == "rank 0: " and row[col["fastest rank"]].value == ddp.ranks[0].median_s
    assert row[col["spread"]].value == ddp.metrics["rank_spread_rel"] and row[col["spread"]].status is None
    assert row[col["highest peak mem"]].text == "rank 1: 14.5 MiB"


def test_comm_table_puts_the_no_sync_step_beside_ddps_own_log(run):
    table = parallel_tables(run)[1]
    assert table.title == f"{LABEL} — gradient sync: the step with and without it, and DDP's own log"
    assert [(row[0].value, row[1].value) for row in table.rows] == [("ddp", 1), ("ddp", 2)]  # fsdp has none
    r = _rec(run, "ddp", 2)
    col = {c: i for i, c in enumerate(table.columns)}
    row = table.rows[1]
    assert row[col["step"]].value == r.time.median_s and row[col["step"]].ci_rel == r.time.ci_rel
    assert row[col["step without sync"]].value == r.metrics["nosync_time_s"]
    assert row[col["exposed comm"]].value == r.metrics["exposed_comm_s"]
    assert row[col["DDP backward comm"]].value == r.metrics["ddp_backward_comm_s"]
    assert not any(n.startswith("fsdp") for n in table.notes)  # notes of the rows shown only


def test_records_without_a_world_size_get_the_generic_tables(run):
    r = _rec(run, "ddp", 2)
    r.params.pop("world_size")
    tables = parallel_tables(run.model_copy(update={"records": [r]}))
    assert tables[0].title.endswith("median time/call ±95% CI · FLOP/s · peak memory")


# --- collectives ------------------------------------------------------------------------------


def test_collective_table_rows_are_message_sizes_with_time_algbw_busbw_per_op(run):
    (table,) = collective_tables(run)
    assert table.title.startswith(f"{COLLECTIVES} — ")
    ops = ("all_reduce", "all_gather", "reduce_scatter")
    assert table.columns == ["message bytes", *(f"{op} {w}" for op in ops for w in ("time", "algbw", "busbw"))]
    assert [(row[0].value, row[0].unit) for row in table.rows] == [(1024, "B"), (1048576, "B"), (16777216, "B")]
    recs = {(r.variant, r.size): r for r in latest(run.records) if r.workload == "collective"}
    for row in table.rows:
        for i, op in enumerate(ops):
            r = recs[(op, row[0].value)]
            time, alg, bus = row[1 + 3 * i: 4 + 3 * i]
            assert (time.value, time.ci_rel, time.unit) == (r.time.median_s, r.time.ci_rel, "s")
            assert alg.value == r.metrics["algbw_bytes_per_s"] and bus.value == r.metrics["busbw_bytes_per_s"]
            assert bus.unit == "B/s"
    assert "all_reduce: busbw = algbw · 2(n-1)/n (1 at 2 ranks)" in table.notes
    assert "all_gather: busbw = algbw · (n-1)/n (0.5 at 2 ranks)" in table.notes
    assert recs[("all_reduce", 1024)].info["backend_note"] in table.notes
    assert "bandwidth: nccl-tests: algbw = bytes / time, busbw = algbw · factor" in table.notes


# --- document, findings ------------------------------------------------------------------------


def test_the_document_uses_these_tables_and_titles(run):
    doc = build_document(run, generated_utc=STAMP)
    assert [(s.workload, s.title) for s in doc.sections] == [
        ("parallel", "Data-parallel versus one device"), ("collective", "Collective bandwidth"),
    ]
    titles = [t.title for t in doc.tables]
    assert not any("scaling: time ~ size^k" in t for t in titles)  # no exponent table over ranks or bytes
    assert len(titles) == 4


def test_findings_state_the_measured_numbers_and_no_exponents(run):
    texts = [f.text for f in findings(run) if f.status is None]
    assert not any("grows as" in t or "^" in t for t in texts)
    ddp, fsdp, single = _rec(run, "ddp", 2), _rec(run, "fsdp", 2), _rec(run, "single", 1)
    eff, ci = ddp.metrics["scaling_efficiency"], ddp.metrics["scaling_efficiency_ci_rel"]
    assert texts[0] == (
        f"{LABEL}: ddp at 2 ranks: {fmt_rate(ddp.metrics['tokens_per_s'], 'tok')} "
        f"({fmt_rate(ddp.metrics['tokens_per_s_per_rank'], 'tok')} per rank), scaling efficiency {eff:.2f} "
        f"±{eff * ci:.2f} (95% CI), exposed comm 24.0% of the step; fsdp at 2 ranks: "
        f"{fmt_rate(fsdp.metrics['tokens_per_s'], 'tok')} ({fmt_rate(fsdp.metrics['tokens_per_s_per_rank'], 'tok')}"
        f" per rank), scaling efficiency 0.21 ±0.04 (94% CI); against single (one device) "
        f"{fmt_rate(single.metrics['tokens_per_s'], 'tok')}"
    )
    ddp1, fsdp1 = _rec(run, "ddp", 1), _rec(run, "fsdp", 1)
    assert texts[1] == (
        f"{LABEL}: at world size 1 (no other rank to talk to), step time / single's (21.9 ms) is "
        f"{ddp1.metrics['time_over_single']:.2f} ±11% under ddp, {fsdp1.metrics['time_over_single']:.2f} ±19% "
        "under fsdp: the wrapper's own cost (± the two medians' relative CIs in quadrature)"
    )
    ratio = peak_per_rank(fsdp) / peak_per_rank(ddp)
    assert texts[2] == (
        f"{LABEL}: peak memory per rank at 2 ranks (the highest rank's, never summed): ddp "
        f"{fmt_bytes(peak_per_rank(ddp))}, fsdp {fmt_bytes(peak_per_rank(fsdp))}; fsdp/ddp = {ratio:.2f}x"
    )
    assert texts[3].startswith(f"{COLLECTIVES}: peak busbw (nccl-tests convention) all_reduce 993 MB/s at 16 MiB, ")
    assert "each at the largest message measured" in texts[3] and texts[3].endswith(
        "(gloo builds reduce-scatter from an all-reduce)")


# --- figures ----------------------------------------------------------------------------------


def test_figures_are_chosen_from_the_metrics(run):
    specs = figure_specs(run)
    assert [(s.kind, s.workload, s.label) for s in specs] == [
        ("scaling_efficiency", "parallel", LABEL), ("bandwidth", "collective", COLLECTIVES),
    ]
    eff, bw = specs
    assert "metrics.scaling_efficiency_ci_rel" in eff.caption and "dashed line at 1" in eff.caption
    assert "2(n-1)/n" in bw.caption and "gloo" in bw.caption
    # the same record without its efficiency is a plain time/memory series again (metrics, not names)
    bare = run.model_copy(deep=True)
    for r in bare.records:
        r.metrics.pop("scaling_efficiency", None)
        r.metrics.pop("busbw_bytes_per_s", None)
    assert [s.kind for s in figure_specs(bare)] == ["time_memory", "time_memory"]


def test_the_efficiency_figure_plots_each_strategy_with_its_ci_and_a_line_at_one(run):
    spec = figure_specs(run)[0]
    ax_e, ax_m = build_figure(run, spec).axes
    lines = {line.get_label(): line for line in ax_e.lines}
    ddp = [_rec(run, "ddp", n) for n in (1, 2)]
    assert list(lines["ddp"].get_ydata()) == [r.metrics["scaling_efficiency"] for r in ddp]
    assert list(lines["ddp"].get_xdata()) == [1.0, 2.0]
    assert any(list(line.get_ydata()) == [1.0, 1.0] for line in ax_e.lines)  # linear scaling
    (bars,) = [c for c in ax_e.collections if c.get_label() == "CI: ddp"]
    (_, lo), (_, hi) = bars.get_segments()[1]
    eff, ci = ddp[1].metrics["scaling_efficiency"], ddp[1].metrics["scaling_efficiency_ci_rel"]
    assert lo == pytest.approx(eff * (1 - ci)) and hi == pytest.approx(eff * (1 + ci))
    mem = {line.get_label(): list(line.get_ydata()) for line in ax_m.lines}
    assert mem["fsdp"] == [peak_per_rank(_rec(run, "fsdp", n)) for n in (1, 2)]
    assert render_figure(run, spec, "png").startswith(b"\x89PNG")


def test_the_bandwidth_figure_plots_busbw_per_op(run):
    spec = figure_specs(run)[1]
    ax_b, _ax_t = build_figure(run, spec).axes
    lines = {line.get_label(): list(line.get_ydata()) for line in ax_b.lines}
    recs = sorted((r for r in latest(run.records) if r.variant == "all_gather"), key=lambda r: r.size)
    assert lines["all_gather"] == [r.metrics["busbw_bytes_per_s"] for r in recs]
    assert render_figure(run, spec, "svg").startswith(b"<?xml")


# --- renderers, CLI ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["terminal", "html", "markdown", "latex", "csv"])
def test_every_renderer_draws_the_parallel_fixture(run, name):
    out = render(name, run, **({} if name == "csv" else {"generated_utc": STAMP}))
    text = out if isinstance(out, str) else out.decode()
    assert "busbw" in text
    if name != "csv":
        assert "efficiency" in text and "exposed comm" in text


def test_xfbench_report_on_a_parallel_results_dir_exits_0(tmp_path):
    shutil.copy(FIXTURE, tmp_path / "results.jsonl")
    out = run_cli("report", str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert f"{LABEL} — tokens/s, scaling efficiency" in out.stdout
    assert f"{COLLECTIVES} — collective time, algbw and busbw" in out.stdout
    assert "scaling: time ~ size^k" not in out.stdout
    assert (tmp_path / "report.html").is_file()

