"""Compute-optimal planner: Chinchilla math, throughput from results, `xfbench plan`."""

import math

import pytest
from typer.testing import CliRunner

from xfbench.cli.main import app
from xfbench.cli.plan import parse_count
from xfbench.reports import planner
from xfbench.reports.errors import BadInput
from xfbench.reports.model_flops import train_flops_per_token
from xfbench.reports.model_report import MFU_NOTE, compute_optimal_table, plan_table
from xfbench.reports.schema import Header, Record
from xfbench.reports.store import ResultsWriter

from .conftest import assert_no_torch
from .records import time_stats

runner = CliRunner()


def test_chinchilla_1_3b():
    p = planner.make_plan(1.3e9)
    assert p.tokens == 26e9
    assert p.flops == pytest.approx(2.028e20, rel=1e-12)
    assert p.sources[0].startswith("Hoffmann et al. 2022") and "6·N·D" in p.sources[1]
    assert p.device_hours is None and p.kwh is None
    # Default shape: GPT-3 XL (24 x 2048) at T = 2048; 6N + 12·L·d·T = 7.8e9 + 1,207,959,552 FLOPs per token.
    assert (p.shape.n_layer, p.shape.d_model, p.shape.seq_len, p.shape.convention) == (24, 2048, 2048, "full")
    assert p.flops_per_token == 9_007_959_552 and p.flops_with_attention == pytest.approx(9_007_959_552 * 26e9)


def test_tokens_per_param_and_devices():
    p = planner.make_plan(1e9, tokens_per_param=10, throughput=planner.from_tokens_per_s(1e4), devices=4)
    assert p.tokens == 1e10 and p.flops == 6e19
    assert p.device_hours == pytest.approx(1e10 / 1e4 / 3600)
    assert p.wall_hours == pytest.approx(p.device_hours / 4)
    with pytest.raises(ValueError):
        planner.make_plan(0)


@pytest.mark.parametrize(
    "n, row, layers, d_model",
    [(1e6, "125M", 12, 768), (125e6, "125M", 12, 768), (500e6, "350M", 24, 1024), (760e6, "760M", 24, 1536),
     (1.3e9, "1.3B", 24, 2048), (20e9, "13B", 40, 5140), (1e12, "175B", 96, 12288)],
)
def test_default_shape_is_the_nearest_gpt3_row(n, row, layers, d_model):
    shape = planner.target_shape(n)
    assert (shape.n_layer, shape.d_model, shape.seq_len) == (layers, d_model, 2048)
    assert f"GPT-3 {row}" in shape.source and "Table 2.1" in shape.source and "T = 2048" in shape.source


@pytest.mark.parametrize(
    "n, row, layers, d_model",
    [(124e6, "124M", 12, 768), (123_689_472, "124M", 12, 768), (350e6, "350M", 24, 1024),
     (774e6, "774M", 36, 1280), (1.5e9, "1.5B", 48, 1600), (1_556_048_000, "1.5B", 48, 1600)],
)
def test_a_gpt2_size_gets_the_shape_and_t_xfbench_model_runs(n, row, layers, d_model):
    # The nominal size or the N xfbench model records for nanoGPT's preset (350M is in both tables: GPT-2's wins).
    shape = planner.target_shape(n)
    assert (shape.n_layer, shape.d_model, shape.seq_len) == (layers, d_model, 1024)  # was T = 2048
    assert f"GPT-2 {row}, nanoGPT's preset" in shape.source


# An `xfbench model` train record of nanoGPT's gpt2 (124M) on a GPU: N = 123,689,472 without the position table,
# FLOPs per token 6N + 12·12·768·1024 = 855,383,040, MFU against a calibrated bf16 peak of 749 TFLOP/s.
GPT2_TPS, GPT2_PEAK = 412_345.6, 749e12
GPT2_FLOP_PER_S = 855_383_040 * GPT2_TPS
GPT2_RECORD = Record(
    case_id="124M-train-compile", workload="model", label="model train", variant="compile",
    size=124_475_904, size_name="params", device="cuda", status="ok",
    params={"preset": "124M", "mode": "train", "n_layer": 12, "n_head": 12, "n_embd": 768, "vocab_size": 50304,
            "block_size": 1024, "batch": 16, "seq_len": 1024},
    metrics={"tokens_per_s": GPT2_TPS, "flop_per_s": GPT2_FLOP_PER_S, "peak_measured_flop_per_s": GPT2_PEAK,
             "mfu_measured": GPT2_FLOP_PER_S / GPT2_PEAK},
    info={"n_flop_params": 123_689_472, "flop_convention_name": "full"}, time=time_stats(),
)


def test_plan_mfu_gives_back_the_tokens_per_s_of_the_model_run_it_came_from(tmp_path, monkeypatch):
    n, mfu = GPT2_RECORD.info["n_flop_params"], GPT2_RECORD.metrics["mfu_measured"]
    tp = planner.from_mfu(n, planner.target_shape(n), mfu, GPT2_PEAK)
    assert tp.tokens_per_s == pytest.approx(GPT2_TPS, rel=1e-12)  # T = 2048 gave 364 ktok/s
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["plan", "--params", str(n), "--mfu", repr(mfu), "--peak-tflops", "749"])
    assert result.exit_code == 0, result.output
    assert "412 ktok/s" in result.output and "L = 12, d = 768, T = 1024, full attention" in result.output


def test_the_mfu_note_names_the_convention_flops():
    assert MFU_NOTE.startswith("MFU = convention FLOPs / median / peak (the FLOP/s above, not the counted work)")


def test_with_results_the_shape_and_t_are_the_measured_ones():
    points = planner.train_points([GPT2_RECORD, *RECORDS])
    # At a measured size (the nominal 124M included): that run's L, d and T.
    for n in (123_689_472, 124e6):
        shape = planner.target_shape(n, measured=points)
        assert (shape.n_layer, shape.d_model, shape.seq_len) == (12, 768, 1024)
        assert shape.source == (
            "L, d as measured at 124M (--layers, --d-model); T = 1024 as measured at 124M (--seq-len)")
    tp = planner.from_results(123_689_472, planner.target_shape(123_689_472, measured=points), points)
    assert tp.tokens_per_s == pytest.approx(GPT2_TPS, rel=1e-12)
    # Elsewhere: the row's L, d at the nearest measured size's T (the 1M and 10M runs trained at 1024 too).
    shape = planner.target_shape(1.3e9, measured=points)
    assert (shape.n_layer, shape.d_model, shape.seq_len) == (24, 2048, 1024)  # was T = 2048
    assert shape.source.endswith("T = 1024 as measured at 124M, the nearest measured size (--seq-len)")
    given = planner.target_shape(1.3e9, seq_len=4096, n_layer=10, d_model=3000, measured=points)
    assert (given.n_layer, given.d_model, given.seq_len) == (10, 3000, 4096)


def test_given_shape_and_its_checks():
    shape = planner.target_shape(1e9, seq_len=4096, n_layer=10, d_model=3000, convention="causal")
    assert (shape.n_layer, shape.d_model, shape.seq_len, shape.convention) == (10, 3000, 4096, "causal")
    assert shape.flops_per_token(1e9) == 6e9 + 6 * 10 * 3000 * 4096  # 12·L·d·T halved
    with pytest.raises(ValueError, match="--layers and --d-model go together"):
        planner.target_shape(1e9, n_layer=10)


def test_throughput_from_mfu_uses_the_flops_per_token_of_model_mfu():
    shape = planner.target_shape(1.3e9)
    tp = planner.from_mfu(1.3e9, shape, 0.5, 1e15)
    assert tp.tokens_per_s == pytest.approx(0.5e15 / 9_007_959_552, rel=1e-12)  # 6N alone: 0.5e15 / 7.8e9
    # `xfbench model` reports MFU = train_flops_per_token x tokens/s / peak: the same 0.5 back.
    assert tp.tokens_per_s * train_flops_per_token(1.3e9, 24, 2048, 2048, "full") / 1e15 == pytest.approx(0.5)
    assert tp.source == "given MFU 0.5 x peak 1 PFLOP/s / 9.01 GFLOP per token"  # was '/ 9.008e9 FLOPs per token'


def _rec(preset, n, n_layer, d_model, tps, mode="train", status="ok", jpt=None, variant="eager", conv="full",
         seq_len=1024):
    """A model record as `xfbench model` writes it: size includes the position table, N does not."""
    per_token = train_flops_per_token(n, n_layer, d_model, seq_len, conv)
    metrics = {"tokens_per_s": tps, "flop_per_s": per_token * tps}
    if jpt is not None:
        metrics["j_per_token"] = jpt
    return Record(
        case_id=f"{preset}-{mode}-{variant}", workload="model", label=f"model {mode}", variant=variant,
        size=n + seq_len * d_model, size_name="params", device="cpu", status=status, metrics=metrics,
        params={"preset": preset, "mode": mode, "n_layer": n_layer, "n_embd": d_model, "seq_len": seq_len},
        info={"n_flop_params": n, "flop_convention_name": conv}, time=time_stats() if status == "ok" else None,
    )


# FLOPs per token, 6N + 12·L·d·T at T = 1024: attention is about half of them at 1M and a third at 10M.
FPT_1M = 6e6 + 12 * 4 * 128 * 1024  # 12,291,456
FPT_10M = 6e7 + 12 * 8 * 256 * 1024  # 85,165,824
RECORDS = [
    _rec("1M", 1e6, 4, 128, 20_000.0),
    _rec("1M", 1e6, 4, 128, 25_000.0, variant="compile"),  # the fastest variant counts
    _rec("10M", 1e7, 8, 256, 4_000.0, jpt=0.5),
    _rec("25M", 2.5e7, 8, 512, 900.0, status="oom"),  # did not run
    _rec("10M", 1e7, 8, 256, 9e9, mode="prefill"),  # not training
]
POINTS = planner.train_points(RECORDS)
TARGET = planner.Shape(12, 768, 1024)  # a 100M model at T = 1024: 6e8 + 12·12·768·1024 = 713,246,208 FLOPs/token
FPT_TARGET = 713_246_208


def test_train_points_take_n_without_position_table_and_the_fastest_variant():
    pts = planner.train_points(RECORDS)
    assert [(p.preset, p.n_params, p.tokens_per_s, p.j_per_token) for p in pts] == [
        ("1M", 1e6, 25_000.0, None), ("10M", 1e7, 4_000.0, 0.5)]
    assert pts[0].flop_per_s == 25_000.0 * FPT_1M and pts[1].flop_per_s == 4_000.0 * FPT_10M
    assert (pts[1].shape.n_layer, pts[1].shape.d_model, pts[1].shape.seq_len) == (8, 256, 1024)


def test_a_causal_record_is_rescaled_to_the_planners_convention():
    (pt,) = planner.train_points([_rec("1M", 1e6, 4, 128, 1_000.0, conv="causal")])
    assert pt.flop_per_s == pytest.approx(1_000.0 * FPT_1M, rel=1e-12)  # same tokens/s, full attention FLOPs
    (pt,) = planner.train_points([_rec("1M", 1e6, 4, 128, 1_000.0, conv="causal")], convention="causal")
    assert pt.flop_per_s == 1_000.0 * (6e6 + 6 * 4 * 128 * 1024)


def test_from_results_measured_interpolated_and_extrapolated():
    # At a measured N (info's, not the record's size) and shape: its own tokens/s.
    exact = planner.from_results(1e7, planner.Shape(8, 256, 1024), POINTS)
    assert exact.tokens_per_s == pytest.approx(4_000.0, rel=1e-12) and "measured at 10M" in exact.source
    # Halfway in log N between 1M and 10M: geometric mean of the achieved FLOP/s over the target's FLOPs per token.
    n, shape = math.sqrt(1e6 * 1e7), planner.Shape(6, 192, 1024)
    mid = planner.from_results(n, shape, POINTS)
    fps = math.sqrt(25_000.0 * FPT_1M * 4_000.0 * FPT_10M)
    assert mid.tokens_per_s == pytest.approx(fps / (6 * n + 12 * 6 * 192 * 1024), rel=1e-12)
    assert "interpolated between 1M and 10M" in mid.source


def test_extrapolation_holds_achieved_flops_including_attention():
    # Beyond the largest: the achieved FLOP/s of 10M (attention included) over the target's 6N + 12·L·d·T.
    # Holding tokens/s x size constant (the old rule) gives 4000 x 10,262,144 / 1e8 = 410 tokens/s instead.
    far = planner.from_results(1e8, TARGET, POINTS)
    assert far.tokens_per_s == pytest.approx(4_000.0 * FPT_10M / FPT_TARGET, rel=1e-12)  # 477.6
    assert far.source == (
        "341 GFLOP/s achieved, extrapolated from 10M: constant achieved FLOP/s, / 713 MFLOP per token")
    # Energy per token: 10M's energy per FLOP x the target's FLOPs per token (not x N / N_10M = 5 J).
    assert far.j_per_token == pytest.approx(0.5 * FPT_TARGET / FPT_10M, rel=1e-12)  # 4.19 J
    assert "constant energy per FLOP" in far.energy_source
    p = planner.make_plan(1e8, throughput=far, shape=TARGET)
    assert p.kwh == pytest.approx(2e9 * far.j_per_token / 3.6e6)


def test_from_results_without_training_is_an_error():
    assert planner.train_points([RECORDS[-1]]) == []
    with pytest.raises(ValueError, match="no `xfbench model` train record"):
        planner.from_results(1e9, TARGET, [])


def test_preset_plans_and_their_table():
    plans = planner.preset_plans(RECORDS)
    assert [name for name, _ in plans] == ["1M", "10M"]
    one, ten = plans[0][1], plans[1][1]
    assert one.n_params == 1e6 and one.tokens == 2e7 and one.device_hours == pytest.approx(2e7 / 25_000 / 3600)
    assert ten.shape.n_layer == 8 and ten.flops_per_token == FPT_10M and ten.throughput.j_per_token == 0.5
    table = compute_optimal_table(plans)
    assert [c.text for c in table.rows[0]] == ["1M", "1M", "2e7", "1.2e14", "25 ktok/s", "0.2222 h", "-"]
    assert [c.text for c in table.rows[1]][5:] == ["13.89 h", "27.8 kWh"]  # 2e8 tokens x 0.5 J
    assert compute_optimal_table([]) is None


def test_plan_table_lists_sources():
    table = plan_table(planner.make_plan(1.3e9))
    text = "\n".join(" | ".join(c.text for c in row) for row in table.rows)
    assert "2.6e10" in text and "2.028e20" in text and "Hoffmann" in text
    assert "with attention (6N + 12·L·d·T)·D | 2.342e20 | PaLM App. B at T = 2048" in text
    assert "shape | L = 24, d = 2048, T = 2048, full attention | L, d of GPT-3 1.3B" in text


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


@pytest.mark.parametrize("params, shown", [("1T", "1T"), ("10T", "10T"), ("1000B", "1T")])
def test_plan_cli_prints_trillions_as_such(tmp_path, monkeypatch, params, shown):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["plan", "--params", params, "--mfu", "0.4", "--peak-tflops", "989"])
    assert result.exit_code == 0, result.output
    assert f"parameters N   {shown} " in result.output and "e+" not in result.output  # was '1e+03B'
    assert "GPT-3 175B" in result.output and "T = 2048" in result.output  # the default shape, and why


def test_plan_cli_given_shape(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["plan", "--params", "1B", "--seq-len", "4096", "--layers", "10", "--d-model", "3000"]
    result = runner.invoke(app, [*args, "--mfu", "0.5", "--peak-tflops", "1000"])
    assert result.exit_code == 0, result.output
    # 5e14 FLOP/s / (6e9 + 12·10·3000·4096 = 7,474,560,000 FLOPs per token) = 66,894 tokens/s
    assert "L = 10, d = 3000, T = 4096, full attention" in result.output and "66.9 ktok/s" in result.output


def write_model_run(path):
    header = Header(run_id="test-run", tool_version="test", created_utc="2025-01-01T00:00:00+00:00", command="model")
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
    # GPT-3 1.3B's L, d at the measured T = 1024: 7.8e9 + 12·24·2048·1024 = 8,403,979,776 FLOPs per token, so
    # 2.6e10 tokens x 0.5 J x 8,403,979,776 / 85,165,824 = 356 MWh.
    assert "L = 24, d = 2048, T = 1024, full attention" in result.output and "356 MWh" in result.output


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["plan", "--params", "big"], "--params"),
        (["plan", "--params", "1B", "--mfu", "0.4"], "--mfu and --peak-tflops go together"),
        (["plan", "--params", "1B", "--tokens-per-s", "5", "--mfu", "0.4", "--peak-tflops", "1"], "one throughput"),
        (["plan", "--params", "1B", "--results", "/no/such/file"], "no results file"),
        (["plan", "--params", "1B", "--layers", "12"], "--layers and --d-model go together"),
        (["plan", "--params", "1B", "--flop-convention", "half"], "--flop-convention"),
    ],
)
def test_plan_cli_bad_input_is_exit_2(args, fragment):
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert fragment in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_plan_never_imports_torch():
    assert_no_torch(["plan", "--params", "1.3B"])
