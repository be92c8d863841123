"""Calibration: real (tiny) measurements on CPU, the per-machine cache, spec sheet, CLI wiring."""

import json

import pytest
import torch
from typer.testing import CliRunner

from xfbench.cli.main import app
from xfbench.profilers import calibrate as cal_mod
from xfbench.profilers.calibrate import (
    cache_dir,
    cache_path,
    calibration_key,
    dtypes_for,
    load_or_calibrate,
    measure_matmul,
    to_peaks,
)
from xfbench.profilers.specs import SPEC_TABLE, TFLOPS, lookup_spec
from xfbench.reports.store import load_results

from .conftest import fast_policy

CPU = torch.device("cpu")
# Tiny, fast measurements: the cache and wiring are under test here, not the machine.
FAST = fast_policy(warmup_max_s=0.05)
TINY = dict(sizes=(32, 64), copy_bytes=2**20, policy=FAST)
runner = CliRunner()


@pytest.mark.parametrize(
    "name, model, bf16, tf32, fp32",
    [
        ("NVIDIA H100 80GB HBM3", "NVIDIA H100 SXM", 989.5, 494.5, 67),
        ("NVIDIA H100 PCIe", "NVIDIA H100 PCIe", 756, 378, 51),
        ("NVIDIA H200", "NVIDIA H200 SXM", 989.5, 494.5, 67),
        ("NVIDIA A100-SXM4-80GB", "NVIDIA A100 80GB SXM", 312, 156, 19.5),
        ("NVIDIA A100-PCIE-40GB", "NVIDIA A100 40GB", 312, 156, 19.5),
        ("NVIDIA L4", "NVIDIA L4", 121, 60, 30.3),
        ("NVIDIA A10G", "NVIDIA A10G", 125, 62.5, 31.2),
        ("NVIDIA GeForce RTX 4090", "NVIDIA GeForce RTX 4090", 165.2, 82.6, 82.6),
    ],
)
def test_spec_sheet_dense_peaks(name, model, bf16, tf32, fp32):
    spec = lookup_spec(name)
    assert spec.name == model
    assert spec.flop_per_s["bfloat16"] == pytest.approx(bf16 * TFLOPS)
    assert spec.flop_per_s["tf32"] == pytest.approx(tf32 * TFLOPS)
    assert spec.flop_per_s["float32"] == pytest.approx(fp32 * TFLOPS)


@pytest.mark.parametrize("name", ["NVIDIA GH200 480GB", "NVIDIA L40S", "AMD EPYC", "", None])
def test_unknown_devices_have_no_spec(name):
    assert lookup_spec(name) is None


def test_spec_table_holds_dense_figures_only():
    # Dense TF32 is half of dense BF16 on every listed part; a 2:4-sparse figure would break it.
    for _, spec in SPEC_TABLE:
        assert spec.flop_per_s["tf32"] == pytest.approx(spec.flop_per_s["bfloat16"] / 2, rel=0.01), spec.name
        assert spec.flop_per_s["bfloat16"] <= 1000 * TFLOPS


def test_cache_dir_env_override(tmp_path, monkeypatch):
    monkeypatch.setenv("XFBENCH_CACHE_DIR", str(tmp_path))
    assert cache_dir() == tmp_path


def test_measure_matmul_is_real_and_bounded(monkeypatch):
    peak = measure_matmul(CPU, "float32", (32, 64), FAST)
    assert set(peak.by_size) == {32, 64} and peak.flop_per_s == max(peak.by_size.values()) > 0
    # A size predicted to exceed the per-call bound is skipped, with why.
    monkeypatch.setattr(cal_mod, "MAX_CALL_S", 1e-9)
    bounded = measure_matmul(CPU, "float32", (32, 4096), FAST)
    assert set(bounded.by_size) == {32} and "predicted" in bounded.skipped[0]


def test_cache_is_reused_extended_and_refreshed(tmp_path):
    first = load_or_calibrate(CPU, dtypes=["float32"], directory=tmp_path, **TINY)
    assert not first.reused and first.measured == ["float32", "copy"]
    assert first.path.exists() and first.path.parent == tmp_path
    c = first.calibration
    assert c.peak("float32") > 0 and c.copy_bytes_per_s > 0 and c.threads == torch.get_num_threads()

    again = load_or_calibrate(CPU, dtypes=["float32"], directory=tmp_path, **TINY)
    assert again.reused and again.measured == [] and again.calibration == c

    more = load_or_calibrate(CPU, dtypes=["float32", "bfloat16"], directory=tmp_path, **TINY)
    assert more.measured == ["bfloat16"] and more.calibration.peak("float32") == c.peak("float32")

    fresh = load_or_calibrate(CPU, dtypes=["float32"], directory=tmp_path, recalibrate=True, **TINY)
    assert not fresh.reused and fresh.measured == ["float32", "copy"]
    assert "bfloat16" in fresh.calibration.matmul  # other cached dtypes are kept


@pytest.mark.parametrize("garbage", ["{not json", '{"version": 1}', "[]", ""])
def test_corrupt_cache_is_recalibrated_with_a_note(tmp_path, garbage):
    path = cache_path(calibration_key(CPU), tmp_path)
    path.write_text(garbage)
    res = load_or_calibrate(CPU, dtypes=["float32"], directory=tmp_path, **TINY)
    assert not res.reused and any("corrupt" in n and "recalibrating" in n for n in res.notes)
    assert json.loads(path.read_text())["matmul"]["float32"]["flop_per_s"] > 0


@pytest.mark.parametrize(
    "field, value, where",
    [
        (("matmul", "float32", "flop_per_s"), float("nan"), "matmul.float32.flop_per_s"),
        (("matmul", "float32", "flop_per_s"), float("inf"), "matmul.float32.flop_per_s"),
        (("matmul", "float32", "flop_per_s"), -1e9, "matmul.float32.flop_per_s"),
        (("matmul", "float32", "by_size", "64"), float("nan"), "matmul.float32.by_size.64"),
        (("copy_bytes_per_s",), -1e9, "copy_bytes_per_s"),
        (("copy_bytes_per_s",), 0.0, "copy_bytes_per_s"),
    ],
)
def test_cache_with_impossible_figures_is_recalibrated_with_a_note(tmp_path, monkeypatch, field, value, where):
    # A real file in XFBENCH_CACHE_DIR, as json.dumps writes it (NaN, Infinity), read by the default path.
    monkeypatch.setenv("XFBENCH_CACHE_DIR", str(tmp_path))
    good = load_or_calibrate(CPU, dtypes=["float32"], **TINY)
    assert good.path.parent == tmp_path
    d = json.loads(good.path.read_text())
    *parents, last = field
    node = d
    for k in parents:
        node = node[k]
    node[last] = value
    good.path.write_text(json.dumps(d))
    res = load_or_calibrate(CPU, dtypes=["float32"], **TINY)
    assert not res.reused and res.measured == ["float32", "copy"]
    (note,) = [n for n in res.notes if "corrupt" in n]  # a load note may sit beside it on a busy machine
    assert where in note and "recalibrating" in note
    fixed = json.loads(res.path.read_text(), parse_constant=lambda c: pytest.fail(f"{c} in the rewritten cache"))
    assert fixed["matmul"]["float32"]["flop_per_s"] > 0 and fixed["copy_bytes_per_s"] > 0
    assert all(v > 0 for v in fixed["matmul"]["float32"]["by_size"].values())
    assert to_peaks(res).measured_copy_bytes_per_s > 0


def test_calibration_key_counts_usable_cores():
    from xfbench.profilers.contention import usable_cores

    assert calibration_key(CPU)["usable_cores"] == usable_cores()


def test_cache_is_per_thread_count(tmp_path):
    one = load_or_calibrate(CPU, threads=1, dtypes=["float32"], directory=tmp_path, **TINY)
    assert one.calibration.threads == 1
    other = load_or_calibrate(CPU, threads=2, dtypes=["float32"], directory=tmp_path, **TINY)
    assert other.path != one.path and other.calibration.threads == 2


def test_dtypes_for_cases():
    assert dtypes_for(["float32", "float32"], CPU) == ["float32"]
    assert dtypes_for(["bfloat16", None], CPU) == ["bfloat16"]
    assert dtypes_for([None], CPU) == ["float32"]


def test_to_peaks_on_cpu_has_no_spec(tmp_path):
    res = load_or_calibrate(CPU, dtypes=["float32"], directory=tmp_path, **TINY)
    peaks = to_peaks(res)
    assert peaks.spec is None and peaks.spec_status() == "no spec-sheet peak for CPUs"
    assert peaks.measured_flop_per_s["float32"] == res.calibration.peak("float32")
    assert str(res.path) in peaks.source


def _seed_cli_cache(dtypes):
    """Fill the session's cache (conftest sets XFBENCH_CACHE_DIR) so CLI runs reuse a tiny calibration."""
    return load_or_calibrate(CPU, dtypes=dtypes, **TINY)


def test_env_calibrate_reuses_the_cache():
    _seed_cli_cache(["float32", "bfloat16", "float16"])
    result = runner.invoke(app, ["env", "--calibrate", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "float32 matmul" in result.output and "bfloat16 matmul" in result.output
    assert "copy bandwidth" in result.output and "cached" in result.output
    as_json = runner.invoke(app, ["env", "--calibrate", "--device", "cpu", "--json"])
    cal = json.loads(as_json.output)["calibration"]
    assert cal["reused"] and cal["matmul"]["float32"]["flop_per_s"] > 0


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf"])
@pytest.mark.parametrize("command", [["env"], ["attention", "--seq-lens", "32"]])
def test_bad_peak_tflops_is_one_line_exit_2(command, value):
    result = runner.invoke(app, [*command, "--peak-tflops", value])
    assert result.exit_code == 2
    lines = [x for x in result.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and "--peak-tflops" in lines[0] and "positive" in lines[0]


def test_attention_sweep_records_roofline_against_calibration(tmp_path):
    res = _seed_cli_cache(["float32"])
    args = ["attention", "--seq-lens", "64", "--heads", "2", "--head-dim", "16", "--max-time", "0.1",
            "--device", "cpu", "--impl", "sdpa", "--no-memory", "--out", str(tmp_path), "--peak-tflops", "1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "of peak" in result.output and "calibration (cached" in result.output
    run = load_results(tmp_path)
    cal = run.header.environment["calibration"]
    assert cal["measured_flop_per_s"]["float32"] == res.calibration.peak("float32")
    assert cal["peak_flops_override"] == 1e12 and str(res.path) in cal["source"]
    (sdpa,) = run.records
    m = sdpa.metrics
    assert m["mfu_measured"] == pytest.approx(m["flop_per_s"] / res.calibration.peak("float32"))
    assert m["mfu_spec"] == pytest.approx(m["flop_per_s"] / 1e12)
    assert sdpa.info["peak_spec_source"] == "user: --peak-tflops"
    # (B=1, H=2, N=64, d=16) fp32: fwd moves q, k, v, o = 4 * 2048 elements * 4 bytes
    assert m["bytes_moved_per_call"] == 4 * 2 * 64 * 16 * 4
    assert m["arithmetic_intensity"] == pytest.approx(m["flops_per_call"] / m["bytes_moved_per_call"])
    assert m["bound"] in ("compute", "memory")
    assert m["time_over_floor"] == pytest.approx(sdpa.time.median_s / m["bandwidth_floor_s"])


def test_no_calibrate_leaves_peak_metrics_none(tmp_path):
    args = ["attention", "--seq-lens", "32", "--heads", "2", "--head-dim", "16", "--max-time", "0.05",
            "--device", "cpu", "--impl", "sdpa", "--no-memory", "--no-calibrate", "--out", str(tmp_path)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    (rec,) = load_results(tmp_path).records
    assert rec.metrics["mfu_measured"] is None and rec.metrics["bound"] is None
    assert rec.metrics["arithmetic_intensity"] > 0  # needs no peak
    assert load_results(tmp_path).header.environment["calibration"] is None
