"""`xfbench model`: an end-to-end tiny run, bad input (exit 2), out of memory (exit 3)."""

import math

import pytest
import torch
from typer.testing import CliRunner

from xfbench.cli.main import app
from xfbench.reports.model_report import model_tables
from xfbench.reports.store import load_results

from .conftest import run_cli

runner = CliRunner()
# One thread: no OpenMP barrier spinning when other processes share the two cores.
SMALL = ["--batch", "2", "--seq-len", "64", "--device", "cpu", "--threads", "1", "--no-calibrate"]


@pytest.fixture(autouse=True)
def _restore_threads():
    """--threads sets torch's thread count for the whole process; put it back for later tests."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_model_end_to_end_writes_records_and_reports(tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(
        app, ["model", "--presets", "1M", "--mode", "train,prefill,decode", "--device", "cpu", "--max-time", "0.3",
              "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    run = load_results(out)
    assert [r.params["mode"] for r in run.records] == ["train", "prefill", "decode"]
    for r in run.records:
        assert r.status == "ok" and r.workload == "model" and r.size_name == "params"
        assert r.size == r.info["n_params"] and r.params["preset"] == "1M"
        assert r.metrics["tokens_per_s"] > 0 and r.time.median_s > 0
        assert r.info["mem_analytic_step_bytes"] > 0 and r.memory.peak_bytes is not None
        assert "flop_convention" in r.info
        assert r.metrics["mfu_measured"] > 0  # against the calibrated fp32 peak
    train, prefill, decode = run.records
    assert train.metrics["tokens_per_call"] == 8 * 256 and prefill.metrics["tokens_per_call"] == 8 * 128
    assert decode.metrics["tokens_per_call"] == 8 and decode.info["floor_bytes"] > 0
    for fragment in ("throughput and memory by model size", "tokens/s = tokens per step", "attention share",
                     "compute-optimal training", "scaling across model sizes"):
        assert fragment in result.output
    titles = [t.title for t in model_tables(run)]  # the report is a function of the results file
    spans = (("train", "T=256"), ("prefill", "P=128"), ("decode", "P+M=128+128"))
    assert titles[:3] == [f"model {m} · float32 · B=8 · {span} · full attention FLOPs: throughput and memory by "
                          "model size" for m, span in spans]
    # The model tables replace the generic ones: each table once, no generic results or scaling table.
    assert all(result.output.count(title) == 1 for title in titles), result.output
    assert "median time/call ±95% CI · FLOP/s · peak memory" not in result.output
    assert "scaling: time ~ size^k" not in result.output
    assert "±95% CI of the median (relative)" in result.output and "FLOPs: " in result.output


def test_model_two_presets_fit_exponents_and_custom_model(tmp_path):
    result = runner.invoke(
        app, ["model", "--presets", "1m", "--layers", "2", "--d-model", "64", "--heads", "2", "--vocab", "128",
              "--mode", "train", *SMALL, "--fake-clock", "--no-memory", "--out", str(tmp_path)],
    )
    assert result.exit_code == 0, result.output
    run = load_results(tmp_path)
    small, large = run.records
    assert [r.params["preset"] for r in run.records] == ["custom", "1M"]  # smallest first
    scaling = next(t for t in model_tables(run) if t.title.startswith("scaling across"))
    (row,) = scaling.rows  # one series: train, eager; two models, so every exponent is fitted
    label, variant, k_tps, k_mem, k_analytic, fitted, failed = (c.text for c in row)
    assert variant == "eager" and fitted == "custom, 1M" and failed == ""
    assert k_mem == "-"  # --no-memory: nothing measured to fit
    # The fake clock times every call alike, so tokens/s is the same for both models: k = 0.
    assert small.metrics["tokens_per_s"] == large.metrics["tokens_per_s"] and k_tps == "0.00"
    # The analytic exponent is the slope between the two records' own estimates.
    mem = [r.info["mem_analytic_step_bytes"] for r in (small, large)]
    assert k_analytic == f"{math.log(mem[1] / mem[0]) / math.log(large.size / small.size):.2f}"


def test_runs_with_other_lengths_into_one_folder_stay_separate(tmp_path):
    for t in ("32", "64"):
        result = runner.invoke(
            app, ["model", "--presets", "1M", "--mode", "train", "--batch", "2", "--seq-len", t, "--device", "cpu",
                  "--threads", "1", "--no-calibrate", "--fake-clock", "--no-memory", "--out", str(tmp_path),
                  *(["--resume"] if t == "64" else [])],  # --resume: the one way to add to a run
        )
        assert result.exit_code == 0, result.output
    run = load_results(tmp_path)
    assert [r.params["seq_len"] for r in run.records] == [32, 64] and len({r.case_id for r in run.records}) == 2
    assert [r.label for r in run.records] == [f"model train · float32 · B=2 · T={t} · full attention FLOPs"
                                             for t in (32, 64)]
    tables = model_tables(run)
    for t in (32, 64):  # one table per T, each with its own row for 1M (nothing overwritten)
        (table,) = [x for x in tables if f"T={t} ·" in x.title and "throughput" in x.title]
        assert len(table.rows) == 1 and table.rows[0][0].text == "1M"
    scaling = next(x for x in tables if x.title.startswith("scaling across"))
    assert sorted(row[0].text for row in scaling.rows) == sorted(r.label for r in run.records)  # two series


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--presets", "3M"], "unknown preset '3M'"),
        (["--presets", ""], "--presets"),
        (["--mode", "sample"], "--mode"),
        (["--layers", "2"], "missing --d-model, --heads"),
        (["--layers", "2", "--d-model", "100", "--heads", "3"], "not divisible by heads 3"),
        (["--flop-convention", "half"], "--flop-convention"),
        (["--dtype", "float7"], "--dtype: unknown dtype 'float7'"),
        (["--batch", "0"], "--batch"),
    ],
)
def test_model_bad_input_is_one_line_and_exit_2(args, fragment):
    result = runner.invoke(app, ["model", *args, "--device", "cpu"])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("xfbench: error:") and fragment in lines[0], result.stderr


def test_model_oom_becomes_a_record_and_exit_3(tmp_path):
    # 10M trains with 16 B/param of fp32 AdamW states (about 170 MB): past a 150 MiB cap.
    result = run_cli(
        "model", "--presets", "1M,10M,25M", "--mode", "train", *SMALL, "--max-time", "0.2",
        "--mem-limit", "150MiB", "--out", str(tmp_path),
    )
    assert result.returncode == 3, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    status = {r.params["preset"]: r for r in load_results(tmp_path).records}
    assert status["1M"].status == "ok"
    assert status["10M"].status == "oom" and "allocate" in status["10M"].reason
    assert status["25M"].status == "skipped" and "ran out of memory" in status["25M"].reason
    assert "OOM" in result.stdout and "1 of 3 cases failed" in result.stdout
