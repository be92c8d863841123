"""Compute-optimal planner: Chinchilla math, throughput from results, `xfbench plan`."""

import math

import pytest
from typer.testing import CliRunner

from xfbench.cli.main import app
from xfbench.cli.plan import parse_count
from xfbench.reports import planner
from xfbench.reports.errors import BadInput
from xfbench.reports.model_report import compute_optimal_table, plan_table
from xfbench.reports.schema import Header, Record
from xfbench.reports.store import ResultsWriter

from .conftest import assert_no_torch

runner = CliRunner()


def test_chinchilla_1_3b():
    p = planner.make_plan(1.3e9)
    assert p.tokens == 26e9
    assert p.flops == pytest.approx(2.028e20, rel=1e-12)
    assert p.sources[0].startswith("Hoffmann et al. 2022") and "6·N·D" in p.sources[1]
    assert p.device_hours is None and p.kwh is None


def test_tokens_per_param_and_devices():
    p = planner.make_plan(1e9, tokens_per_param=10, throughput=planner.from_tokens_per_s(1e4), devices=4)
    assert p.tokens == 1e10 and p.flops == 6e19
    assert p.device_hours == pytest.approx(1e10 / 1e4 / 3600)
    assert p.wall_hours == pytest.approx(p.device_hours / 4)
    with pytest.raises(ValueError):
        planner.make_plan(0)


def test_throughput_from_mfu():
    tp = planner.from_mfu(1e9, 0.5, 1e15)
    assert tp.tokens_per_s == pytest.approx(0.5e15 / 6e9)
    assert "MFU 0.5" in tp.source


def _rec(preset, n, tps, mode="train", status="ok", jpt=None, variant="eager"):
    metrics = {"tokens_per_s": tps}
    if jpt is not None:
        metrics["j_per_token"] = jpt
    return Record(
        case_id=f"{preset}-{mode}-{variant}", workload="model", label=f"model {mode}", variant=variant, size=n,
        size_name="params", params={"preset": preset, "mode": mode}, device="cpu", status=status, metrics=metrics,
    )


RECORDS = [
    _rec("1M", 1e6, 20_000.0),
    _rec("1M", 1e6, 25_000.0, variant="compile"),  # the fastest variant counts
    _rec("10M", 1e7, 3_000.0, jpt=0.5),
    _rec("25M", 2.5e7, 900.0, status="oom"),  # did not run
    _rec("10M", 1e7, 9e9, mode="prefill"),  # not training
]


def test_train_points_take_the_fastest_variant_of_each_model_that_trained():
    assert planner.train_points(RECORDS) == [(1e6, 25_000.0, None, "1M"), (1e7, 3_000.0, 0.5, "10M")]


def test_from_results_measured_interpolated_and_extrapolated():
    exact = planner.from_results(1e7, RECORDS)
    assert exact.tokens_per_s == 3_000.0 and "measured at 10M" in exact.source
    # Halfway in log N between 1M and 10M: geometric mean of tokens/s·N, divided by N.
    n = math.sqrt(1e6 * 1e7)
    mid = planner.from_results(n, RECORDS)
    assert mid.tokens_per_s == pytest.approx(math.sqrt(25_000.0 * 1e6 * 3_000.0 * 1e7) / n)
    assert "interpolated between 1M and 10M" in mid.source
    # Beyond the largest: constant tokens/s·N (constant achieved FLOP/s).
    far = planner.from_results(1.3e9, RECORDS)
    assert far.tokens_per_s == pytest.approx(3_000.0 * 1e7 / 1.3e9)
    assert "extrapolated from 10M" in far.source
    # Energy per token scales with N from the nearest model that measured it.
    assert far.j_per_token == pytest.approx(0.5 * 1.3e9 / 1e7)
    p = planner.make_plan(1.3e9, throughput=far)
    assert p.kwh == pytest.approx(26e9 * far.j_per_token / 3.6e6)


def test_from_results_without_training_is_an_error():
    with pytest.raises(ValueError, match="no `xfbench model` train record"):
        planner.from_results(1e9, [RECORDS[-1]])


def test_preset_plans_and_their_table():
    plans = planner.preset_plans(RECORDS)
    assert [name for name, _ in plans] == ["1M", "10M"]
    one = plans[0][1]
    assert one.tokens == 2e7 and one.device_hours == pytest.approx(2e7 / 25_000 / 3600)
    table = compute_optimal_table(plans)
    assert table.rows[0][2].text == "2e7" and table.rows[0][3].text == "1.2e14"
    assert compute_optimal_table([]) is None


def test_plan_table_lists_sources():
    table = plan_table(planner.make_plan(1.3e9))
    text = "\n".join(" | ".join(c.text for c in row) for row in table.rows)
    assert "2.6e10" in text and "2.028e20" in text and "Hoffmann" in text


@pytest.mark.parametrize(
    "text, value", [("1.3B", 1.3e9), ("350M", 350e6), ("124e6", 124e6), ("7b", 7e9), ("2k", 2e3), ("42", 42.0)]
)
def test_parse_count(text, value):
    assert parse_count(text) == value


@pytest.mark.parametrize("text", ["abc", "-1B", "0", "1.3X", "", "1e400"])
def test_parse_count_rejects(text):
    with pytest.raises(BadInput):
        parse_count(text)


def test_plan_cli_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no runs/ folder here
    result = runner.invoke(app, ["plan", "--params", "1.3B"])
    assert result.exit_code == 0, result.output
    assert "2.6e10" in result.output and "2.028e20" in result.output and "Chinchilla" in result.output
    assert "give --tokens-per-s" in result.output


def write_model_run(path):
    header = Header(tool_version="test", created_utc="2025-01-01T00:00:00+00:00", command="model")
    with ResultsWriter(path, header) as w:
        for r in RECORDS:
            w.append(r)


def test_plan_cli_uses_the_newest_model_run_by_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_model_run(tmp_path / "runs" / "20260101T000000Z-model" / "results.jsonl")
    (tmp_path / "runs" / "20260102T000000Z-attention").mkdir()  # not a model run
    result = runner.invoke(app, ["plan", "--params", "1.3B"])
    assert result.exit_code == 0, result.output
    assert "runs/20260101T000000Z-model (newest model run)" in result.output
    assert "extrapolated from 10M" in result.output and "device-hours" in result.output


def test_plan_cli_from_results_file(tmp_path):
    path = tmp_path / "results.jsonl"
    write_model_run(path)
    result = runner.invoke(app, ["plan", "--params", "1.3B", "--results", str(path), "--devices", "8"])
    assert result.exit_code == 0, result.output
    assert "extrapolated from 10M" in result.output and "wall-clock on 8 device(s)" in result.output
    assert "kWh" in result.output


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["plan", "--params", "big"], "--params"),
        (["plan", "--params", "1B", "--mfu", "0.4"], "--mfu and --peak-tflops go together"),
        (["plan", "--params", "1B", "--tokens-per-s", "5", "--mfu", "0.4", "--peak-tflops", "1"], "one throughput"),
        (["plan", "--params", "1B", "--results", "/no/such/file"], "no results file"),
    ],
)
def test_plan_cli_bad_input_is_exit_2(args, fragment):
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert fragment in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_plan_never_imports_torch():
    assert_no_torch(["plan", "--params", "1.3B"])
