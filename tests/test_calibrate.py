"""Calibration: real (tiny) measurements on CPU, the per-machine cache, levels, spec sheet, CLI wiring."""

import json

import pytest
import torch
from typer.testing import CliRunner

from xfbench.cli.main import app
from xfbench.profilers import calibrate as cal_mod
from xfbench.profilers.calibrate import (
    calibration_report,
    dtypes_for,
    load_or_calibrate,
    measure_bandwidth,
    measure_matmul,
    peaks_for,
    stream_buffer_bytes,
    to_peaks,
)
from xfbench.profilers.calibration_cache import (
    CALIBRATION_VERSION,
    Bandwidth,
    Calibration,
    MatmulPeak,
    cache_dir,
    cache_path,
    calibration_key,
    to_measure,
)
from xfbench.profilers.device import cache_resident, last_level_cache_bytes
from xfbench.profilers.specs import SPEC_TABLE, TFLOPS, lookup_spec
from xfbench.reports.calibration import calibration_table
from xfbench.reports.store import load_results

from .conftest import fast_policy

CPU = torch.device("cpu")
MIB = 2**20
# Tiny, fast measurements: the cache and wiring are under test here, not the machine.
FAST = fast_policy(warmup_max_s=0.05)
TINY = dict(sizes=(32, 64), buffer_bytes=MIB, policy=FAST)
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
    assert peak.level == "full"
    # A size predicted to exceed the per-call bound is skipped, with why.
    monkeypatch.setattr(cal_mod, "MAX_CALL_S", 1e-9)
    bounded = measure_matmul(CPU, "float32", (32, 4096), FAST, level="quick")
    assert set(bounded.by_size) == {32} and "predicted" in bounded.skipped[0] and bounded.level == "quick"


def test_measure_bandwidth_streams_one_buffer_for_read_and_copy():
    got = measure_bandwidth(CPU, ("read", "copy"), MIB + 5, FAST, level="quick")
    assert set(got) == {"read", "copy"}
    for kind, b in got.items():
        assert b.kind == kind and b.level == "quick" and b.buffer_bytes == MIB and b.bytes_per_s > 0
    assert got["read"].kernel == "torch.dot(x, x)" and got["copy"].kernel == "dst.copy_(src)"


@pytest.mark.parametrize(
    "cache, floor, cap, expected",
    [
        (480 * MIB, 512 * MIB, 8 * 2**30, 960 * MIB),  # this VM's L3: twice it
        (None, 512 * MIB, 8 * 2**30, 512 * MIB),  # cache size unknown: the floor
        (50 * MIB, 2 * 2**30, 64 * 2**30, 2 * 2**30),  # an H100's L2: the floor is already beyond it
        (480 * MIB, 512 * MIB, 300 * MIB + 3, 300 * MIB),  # little free memory: the cap, a multiple of 8
    ],
)
def test_bandwidth_buffer_spans_twice_the_cache(cache, floor, cap, expected):
    assert stream_buffer_bytes(cache, floor, cap) == expected


def _cal(**levels):
    """A Calibration literal with one figure per name: 'float32'='quick', 'copy'='full', ..."""
    kinds = ("read", "copy")
    matmul = {d: MatmulPeak(dtype=d, level=lv, flop_per_s=1e11) for d, lv in levels.items() if d not in kinds}
    bandwidth = {k: Bandwidth(kind=k, level=lv, kernel="k", bytes_per_s=1e10, buffer_bytes=MIB)
                 for k, lv in levels.items() if k in kinds}
    return Calibration(
        key={}, created_utc="t", device="cpu", device_name="cpu", threads=1, clock="perf_counter",
        matmul=matmul, bandwidth=bandwidth,
    )


def test_what_a_request_must_measure():
    quick = _cal(float32="quick", copy="quick", read="quick")
    full = _cal(float32="full", copy="full", read="full")
    assert to_measure(None, ["float32"], ["copy"], "quick") == (["float32"], ["copy"])
    assert to_measure(quick, ["float32"], ["copy", "read"], "quick") == ([], [])
    assert to_measure(full, ["float32"], ["copy", "read"], "quick") == ([], [])  # full satisfies quick
    assert to_measure(quick, ["float32"], ["copy", "read"], "full") == (["float32"], ["copy", "read"])  # upgraded
    assert to_measure(full, ["float32", "bfloat16"], ["read"], "full") == (["bfloat16"], [])
    assert to_measure(full, ["float32"], ["read"], "quick", recalibrate=True) == (["float32"], ["read"])
    assert quick.level == "quick" and full.level == "full"
    assert _cal(float32="full", read="quick").level == "quick"  # the weakest figure names the level


def test_cache_is_reused_extended_and_refreshed(tmp_path):
    first = load_or_calibrate(CPU, dtypes=["float32"], directory=tmp_path, **TINY)
    assert not first.reused and first.measured == ["float32", "read", "copy"]
    assert first.path.exists() and first.path.parent == tmp_path
    c = first.calibration
    assert c.peak("float32") > 0 and c.bytes_per_s("copy") > 0 and c.bytes_per_s("read") > 0
    assert c.threads == torch.get_num_threads() and c.level == "full"

    again = load_or_calibrate(CPU, dtypes=["float32"], directory=tmp_path, **TINY)
    assert again.reused and again.measured == [] and again.calibration == c

    more = load_or_calibrate(CPU, dtypes=["float32", "bfloat16"], directory=tmp_path, **TINY)
    assert more.measured == ["bfloat16"] and more.calibration.peak("float32") == c.peak("float32")

    fresh = load_or_calibrate(CPU, dtypes=["float32"], directory=tmp_path, recalibrate=True, **TINY)
    assert not fresh.reused and fresh.measured == ["float32", "read", "copy"]
    assert "bfloat16" in fresh.calibration.matmul  # other cached dtypes are kept


def test_peaks_name_when_their_newest_figure_was_measured():
    from pathlib import Path

    from xfbench.profilers.calibrate import calibrate, measured_utc
    from xfbench.profilers.calibration_cache import CalibrationResult

    cal = calibrate(CPU, ["float32"], **TINY)
    cal.created_utc = "2026-01-01T00:00:00+00:00"  # a file first written long ago, recalibrated since
    cal.matmul["float32"].measured_utc = "2026-06-01T12:00:00+00:00"
    assert measured_utc(cal) == max(f.measured_utc for f in (*cal.matmul.values(), *cal.bandwidth.values()))
    assert measured_utc(cal) != cal.created_utc
    peaks = to_peaks(CalibrationResult(cal, Path("c.json"), reused=True))
    assert f"calibration {measured_utc(cal)} (cached" in peaks.source


def test_a_quick_cache_is_upgraded_by_a_full_request_and_a_full_one_serves_quick(tmp_path):
    quick = load_or_calibrate(CPU, dtypes=["float32"], bandwidths=["read"], level="quick", directory=tmp_path, **TINY)
    assert quick.measured == ["float32", "read"] and quick.calibration.level == "quick"
    assert to_peaks(quick).level == "quick" and to_peaks(quick).measured_copy_bytes_per_s is None
    full = load_or_calibrate(CPU, dtypes=["float32"], level="full", directory=tmp_path, **TINY)
    assert full.measured == ["float32", "read", "copy"] and full.calibration.level == "full"
    served = load_or_calibrate(CPU, dtypes=["float32"], level="quick", directory=tmp_path, **TINY)
    assert served.reused and served.calibration.level == "full"


def test_peaks_for_measures_what_the_sweep_needs(tmp_path):
    peaks, res = peaks_for(CPU, ["float32", None], threads=1, traffic_kinds=["read"], directory=tmp_path, **TINY)
    assert res.measured == ["float32", "read"] and res.calibration.threads == 1
    assert peaks.level == "quick" and peaks.measured_read_bytes_per_s == res.calibration.bytes_per_s("read") > 0
    assert peaks.measured_copy_bytes_per_s is None and peaks.source.startswith("quick calibration ")
    more, res = peaks_for(CPU, ["float32"], threads=1, traffic_kinds=["read", "read_write"], directory=tmp_path, **TINY)
    assert res.measured == ["copy"] and more.measured_copy_bytes_per_s > 0
    with pytest.raises(ValueError, match="unknown traffic kind 'write'"):
        peaks_for(CPU, ["float32"], traffic_kinds=["write"], directory=tmp_path, **TINY)


@pytest.mark.parametrize("garbage", ["{not json", f'{{"version": {CALIBRATION_VERSION}}}', "[]", ""])
def test_corrupt_cache_is_recalibrated_with_a_note(tmp_path, garbage):
    path = cache_path(calibration_key(CPU), tmp_path)
    path.write_text(garbage)
    res = load_or_calibrate(CPU, dtypes=["float32"], directory=tmp_path, **TINY)
    assert not res.reused and any("corrupt" in n and "recalibrating" in n for n in res.notes)
    assert json.loads(path.read_text())["matmul"]["float32"]["flop_per_s"] > 0


def test_an_older_cache_version_is_remeasured_with_a_note(tmp_path):
    # Version 1 had one copy figure and no read bandwidth.
    path = cache_path(calibration_key(CPU), tmp_path)
    path.write_text(json.dumps({"version": 1, "copy_bytes_per_s": 1e10}))
    res = load_or_calibrate(CPU, dtypes=["float32"], directory=tmp_path, **TINY)
    assert f"has version 1, not {CALIBRATION_VERSION}; recalibrating" in res.notes[0]
    assert res.measured == ["float32", "read", "copy"]


@pytest.mark.parametrize(
    "field, value, where",
    [
        (("matmul", "float32", "flop_per_s"), float("nan"), "matmul.float32.flop_per_s"),
        (("matmul", "float32", "flop_per_s"), float("inf"), "matmul.float32.flop_per_s"),
        (("matmul", "float32", "flop_per_s"), -1e9, "matmul.float32.flop_per_s"),
        (("matmul", "float32", "by_size", "64"), float("nan"), "matmul.float32.by_size.64"),
        (("matmul", "float32", "level"), "medium", "matmul.float32.level"),
        (("bandwidth", "copy", "bytes_per_s"), -1e9, "bandwidth.copy.bytes_per_s"),
        (("bandwidth", "read", "bytes_per_s"), 0.0, "bandwidth.read.bytes_per_s"),
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
    assert not res.reused and res.measured == ["float32", "read", "copy"]
    (note,) = [n for n in res.notes if "corrupt" in n]  # a load note may sit beside it on a busy machine
    assert where in note and "recalibrating" in note
    fixed = json.loads(res.path.read_text(), parse_constant=lambda c: pytest.fail(f"{c} in the rewritten cache"))
    assert fixed["matmul"]["float32"]["flop_per_s"] > 0 and fixed["bandwidth"]["copy"]["bytes_per_s"] > 0
    assert all(v > 0 for v in fixed["matmul"]["float32"]["by_size"].values())
    assert to_peaks(res).measured_read_bytes_per_s > 0


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
    assert peaks.measured_copy_bytes_per_s == res.calibration.bytes_per_s("copy")
    assert peaks.measured_read_bytes_per_s == res.calibration.bytes_per_s("read")
    assert peaks.level == "full" and str(res.path) in peaks.source and peaks.source.startswith("full calibration ")
    assert peaks.summary()["measured_read_bytes_per_s"] == peaks.measured_read_bytes_per_s


def test_calibration_table_names_both_bandwidths_and_what_they_count(tmp_path):
    res = load_or_calibrate(CPU, dtypes=["float32"], directory=tmp_path, **TINY)
    res.calibration.cache_bytes = MIB // 2  # the tiny buffer is then 2x the cache
    table = calibration_table(calibration_report(res))
    rows = {r[0].text: r for r in table.rows}
    assert list(rows) == ["float32 matmul", "read bandwidth", "copy bandwidth"]
    assert rows["read bandwidth"][4].text.startswith(
        "torch.dot(x, x) over 1 MiB (2x the LLC of 512 KiB): bytes read counted"
    )
    assert rows["copy bandwidth"][4].text.startswith(
        "dst.copy_(src) between the halves of 1 MiB (2x the LLC of 512 KiB): bytes read + written counted"
    )
    assert "level full: every size, normal timer caps" in table.notes


def _seed_cli_cache(dtypes):
    """Fill this test's cache (conftest sets XFBENCH_CACHE_DIR) so CLI runs reuse a tiny full calibration."""
    return load_or_calibrate(CPU, dtypes=dtypes, **TINY)


def test_env_calibrate_reuses_the_cache_and_shows_read_and_copy_bandwidth():
    _seed_cli_cache(["float32", "bfloat16", "float16"])
    result = runner.invoke(app, ["env", "--calibrate", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "float32 matmul" in result.output and "bfloat16 matmul" in result.output
    assert "read bandwidth" in result.output and "copy bandwidth" in result.output and "cached" in result.output
    as_json = runner.invoke(app, ["env", "--calibrate", "--device", "cpu", "--json"])
    cal = json.loads(as_json.output)["calibration"]
    assert cal["reused"] and cal["matmul"]["float32"]["flop_per_s"] > 0 and cal["level"] == "full"
    assert cal["read_bytes_per_s"] > 0 and cal["copy_bytes_per_s"] > 0


def test_env_calibrate_upgrades_a_quick_cache_to_the_full_calibration(monkeypatch):
    load_or_calibrate(CPU, dtypes=["float32"], level="quick", **TINY)
    monkeypatch.setattr(cal_mod, "CPU_SIZES", (32, 64))
    monkeypatch.setattr(cal_mod, "CALIBRATION_POLICY", FAST)
    monkeypatch.setattr(cal_mod, "POLICIES", {"quick": FAST, "full": FAST})
    monkeypatch.setattr(cal_mod, "default_buffer_bytes", lambda device: MIB)
    result = runner.invoke(app, ["env", "--calibrate", "--device", "cpu", "--json"])
    assert result.exit_code == 0, result.output
    cal = json.loads(result.output)["calibration"]
    assert cal["measured_now"] == ["float32", "bfloat16", "float16", "read", "copy"] and cal["level"] == "full"


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
    assert "of peak" in result.output
    (line,) = [x for x in result.output.splitlines() if x.startswith("calibration (")]
    assert "cached" in line
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
    assert m["ridge_point"] == pytest.approx(res.calibration.peak("float32") / res.calibration.bytes_per_s("copy"))
    assert m["bound"] == ("compute" if m["arithmetic_intensity"] >= m["ridge_point"] else "memory")
    # Its working set (q, k, v, out: 32 KiB) fits in any LLC: cache-resident, so no DRAM floor.
    assert m["cache_resident"] is cache_resident(4 * 2 * 64 * 16 * 4, last_level_cache_bytes(CPU))
    if m["cache_resident"]:
        assert m["bandwidth_floor_s"] is None and "cache-resident" in sdpa.info["floor_note"]
    else:
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
