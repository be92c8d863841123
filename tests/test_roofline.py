"""Roofline/MFU, ideal traffic, warnings and the table cell: pure functions, literal inputs."""

import pytest

from xfbench.profilers.roofline import Peaks, compute_key, roofline_metrics
from xfbench.profilers.specs import lookup_spec
from xfbench.profilers.warnings import (
    MeasurementWarning,
    environment_warnings,
    hints,
    oversubscribed,
    window_warnings,
)
from xfbench.reports.schema import Record, TimeStats
from xfbench.reports.tables import result_cell, results_tables
from xfbench.workloads.attention import attention_bytes, lstm_bytes

CPU_PEAKS = Peaks(
    "cpu", "AMD EPYC", {"float32": 2e11}, measured_copy_bytes_per_s=1e10, measured_read_bytes_per_s=2e10,
    source="test", level="full", threads=2,
)


def test_roofline_against_measured_peaks():
    # 1 GFLOP moving 10 MB in 10 ms: 100 GFLOP/s, intensity 100 FLOP/B; ridge 2e11 / 1e10 = 20.
    m, info = roofline_metrics(flops=1e9, bytes_moved=1e7, time_s=0.01, dtype_key="float32", peaks=CPU_PEAKS)
    assert m["mfu_measured"] == pytest.approx(0.5)
    assert m["arithmetic_intensity"] == pytest.approx(100.0)
    assert m["ridge_point"] == pytest.approx(20.0)
    assert m["bound"] == "compute"
    assert m["bandwidth_floor_s"] == pytest.approx(1e-3)
    assert m["time_over_floor"] == pytest.approx(10.0)
    assert m["cache_resident"] is None and info["floor_bandwidth"] == "copy" and "floor_note" not in info
    assert m["mfu_spec"] is None and info["peak_spec_source"] == "no spec-sheet peak for CPUs"


def test_a_read_floor_divides_by_the_read_bandwidth():
    # Decode-like: 40 MB read per call in 3 ms. Read bandwidth 2e10 B/s: floor 2 ms, ridge 2e11 / 2e10 = 10.
    # (Against the copy bandwidth 1e10, read + write bytes, the floor would be 4 ms: above the time.)
    m, info = roofline_metrics(
        flops=4e7, bytes_moved=4e7, time_s=3e-3, dtype_key="float32", peaks=CPU_PEAKS, traffic="read",
        cache_resident=False,
    )
    assert m["bandwidth_floor_s"] == pytest.approx(2e-3)
    assert m["time_over_floor"] == pytest.approx(1.5)
    assert m["ridge_point"] == pytest.approx(10.0)
    assert info["floor_bandwidth"] == "read" and m["cache_resident"] is False
    rw, rw_info = roofline_metrics(
        flops=4e7, bytes_moved=4e7, time_s=3e-3, dtype_key="float32", peaks=CPU_PEAKS, traffic="read_write"
    )
    assert rw["bandwidth_floor_s"] == pytest.approx(4e-3) and rw["ridge_point"] == pytest.approx(20.0)
    assert rw_info["floor_bandwidth"] == "copy"


def test_a_cache_resident_working_set_gets_no_dram_floor():
    m, info = roofline_metrics(
        flops=4e7, bytes_moved=4e7, time_s=1e-3, dtype_key="float32", peaks=CPU_PEAKS, traffic="read",
        cache_resident=True,
    )
    assert m["cache_resident"] is True
    assert m["bandwidth_floor_s"] is None and m["time_over_floor"] is None
    assert "cache-resident" in info["floor_note"] and info["floor_bandwidth"] == "read"
    assert m["arithmetic_intensity"] == pytest.approx(1.0) and m["bound"] == "memory"  # the roofline still places it


def test_a_time_below_a_floor_is_explained():
    m, info = roofline_metrics(
        flops=4e7, bytes_moved=4e7, time_s=1e-3, dtype_key="float32", peaks=CPU_PEAKS, traffic="read",
        cache_resident=False,
    )
    assert m["time_over_floor"] == pytest.approx(0.5)
    assert info["floor_note"].startswith("time below the read bandwidth floor")


def test_unknown_traffic_kind_is_refused():
    with pytest.raises(ValueError, match="unknown traffic kind 'write'"):
        roofline_metrics(flops=1.0, bytes_moved=1.0, time_s=1.0, dtype_key=None, peaks=None, traffic="write")


def test_memory_bound_and_user_peak():
    m, info = roofline_metrics(
        flops=1e7, bytes_moved=1e7, time_s=0.002, dtype_key="float32", peaks=CPU_PEAKS, peak_flops_override=1e10
    )
    assert m["bound"] == "memory"  # 1 FLOP/B < ridge 20
    assert m["mfu_spec"] == pytest.approx(0.5) and m["peak_spec_flop_per_s"] == 1e10
    assert info["peak_spec_source"] == "user: --peak-tflops"


def test_spec_mfu_on_a_known_gpu_and_flag_on_an_unknown_one():
    h100 = Peaks("cuda", "NVIDIA H100 80GB HBM3", {"bfloat16": 7e14}, 3e12, spec=lookup_spec("NVIDIA H100 80GB HBM3"))
    m, info = roofline_metrics(flops=989.5e12, bytes_moved=None, time_s=2.0, dtype_key="bfloat16", peaks=h100)
    assert m["mfu_spec"] == pytest.approx(0.5) and "H100 SXM" in info["peak_spec_source"]
    assert m["bandwidth_floor_s"] is None and m["arithmetic_intensity"] is None and m["bound"] is None
    assert "floor_bandwidth" not in info  # no bytes, no floor to name
    odd = Peaks("cuda", "NVIDIA Mystery 9000", {"bfloat16": 1e14}, 1e12, None)
    m, info = roofline_metrics(flops=1e12, bytes_moved=1e9, time_s=1.0, dtype_key="bfloat16", peaks=odd)
    assert m["mfu_spec"] is None and m["mfu_measured"] == pytest.approx(0.01)
    assert "unknown GPU 'NVIDIA Mystery 9000'" in info["peak_spec_source"]


def test_no_peaks_no_mfu():
    m, _ = roofline_metrics(flops=1e9, bytes_moved=1e6, time_s=0.01, dtype_key="float32", peaks=None)
    assert m["mfu_measured"] is None and m["mfu_spec"] is None and m["bound"] is None
    assert m["arithmetic_intensity"] == pytest.approx(1000.0)


def test_compute_key():
    assert compute_key("float32", "cuda", tf32_enabled=True) == "tf32"
    assert compute_key("float32", "cuda", tf32_enabled=False) == "float32"
    assert compute_key("float32", "cpu", tf32_enabled=True) == "float32"
    assert compute_key("bfloat16", "cuda", tf32_enabled=True) == "bfloat16"
    assert compute_key(None, "cpu", tf32_enabled=False) is None


def test_ideal_traffic():
    # (B=2, H=4, N=128, d=32) bf16: one of q/k/v/o is 32768 elements * 2 bytes.
    one = 2 * 4 * 128 * 32 * 2
    assert attention_bytes(2, 4, 128, 32, 2, "fwd") == 4 * one
    assert attention_bytes(2, 4, 128, 32, 2, "fwdbwd") == 12 * one
    assert lstm_bytes(1000, 100, 10, "fwd") == 1110
    assert lstm_bytes(1000, 100, 10, "fwdbwd") == 1110 + 1110 + 1100  # + reads W, x, dy; writes dW, dx


def test_warnings_are_pure():
    assert environment_warnings("powersave", 2, 2) == [MeasurementWarning.CPU_GOVERNOR]
    assert environment_warnings("performance", 4, 2) == [MeasurementWarning.THREADS_OVERSUBSCRIBED]
    assert environment_warnings(None, 2, 2) == []  # an unreadable governor is no finding
    assert not oversubscribed(0.2, demand_cores=2, usable_cores=2)
    assert oversubscribed(1.0, demand_cores=2, usable_cores=2)
    assert not oversubscribed(1.0, demand_cores=1, usable_cores=2)  # a free core for it
    assert not oversubscribed(None, demand_cores=2, usable_cores=2)
    got = window_warnings(
        throttle_reasons=["sw_thermal_slowdown", "sw_power_cap"], other_gpu_processes=[{"pid": 7, "used_bytes": 1}],
        other_busy_cores=1.0, demand_cores=2, usable_cores=2,
    )
    assert got == [
        MeasurementWarning.THROTTLED, MeasurementWarning.OTHER_GPU_PROCESSES, MeasurementWarning.THREADS_OVERSUBSCRIBED
    ]
    assert set(hints()) == {w.value for w in MeasurementWarning} and all(hints().values())


def _record(**metrics):
    t = TimeStats(
        n=10, calls_per_sample=1, warmup_calls=3, median_s=0.01, mean_s=0.01, min_s=0.01, max_s=0.01, p10_s=0.01,
        p90_s=0.01, iqr_s=0.0, iqr_over_median=0.0, ci_low_s=0.01, ci_high_s=0.01, ci_rel=0.01, target_ci_rel=0.02,
        converged=True, total_s=0.1, clock="fake", samples_s=[0.01] * 10,
    )
    return Record(
        case_id="x", workload="attention", label="L", variant="sdpa", size=2048, size_name="N", params={},
        device="cpu", status="ok", time=t, metrics={"flop_per_s": 1e11, **metrics},
        info={"peak_dtype": "float32"}, warnings=["throttled"],
    )


def test_cell_shows_fraction_of_measured_peak_and_energy():
    cell = result_cell(_record(mfu_measured=0.634, peak_measured_flop_per_s=1.58e11, j_per_token=0.0021))
    assert cell.text.splitlines() == ["10 ms ±1.0%", "100 GFLOP/s", "0.63 of peak", "2.1 mJ/token"]
    assert "of peak" not in result_cell(_record()).text


def test_table_notes_name_the_peak_and_explain_warnings():
    (table,) = results_tables([_record(mfu_measured=0.5, peak_measured_flop_per_s=2e11)], {"throttled": "cool it"})
    assert any("calibrated dense matmul peak (float32 200 GFLOP/s" in n for n in table.notes)
    assert "  throttled: cool it" in table.notes


def test_a_mig_slice_has_no_spec_peak_and_says_why():
    from xfbench.profilers.specs import MIG_NO_SPEC

    slice_ = Peaks("cuda", "NVIDIA H100 80GB HBM3 MIG 1g.10gb", {"bfloat16": 1e14}, 1e12, None, spec_reason=MIG_NO_SPEC)
    m, info = roofline_metrics(flops=1e12, bytes_moved=None, time_s=0.1, dtype_key="bfloat16", peaks=slice_)
    assert m["mfu_spec"] is None and m["mfu_measured"] == pytest.approx(0.1)
    assert info["peak_spec_source"] == MIG_NO_SPEC  # not "unknown GPU"


def test_a_ceiling_the_step_beat_is_flagged_as_wrong():
    from xfbench.profilers.warnings import MeasurementWarning, bound_warnings

    assert bound_warnings({"mfu_measured": 1.22, "time_over_floor": 3.0}) == [MeasurementWarning.ABOVE_PEAK]
    assert bound_warnings({"mfu_measured": 0.5, "time_over_floor": 0.8}) == [MeasurementWarning.BELOW_FLOOR]
    assert bound_warnings({"mfu_measured": 1.0, "time_over_floor": 1.0}) == []  # at the ceiling is not beyond it
    assert bound_warnings({"mfu_measured": None, "time_over_floor": None}) == []
