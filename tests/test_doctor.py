"""`xfbench doctor`: the pure verdict on literal facts, and a short real run on CPU."""

import json
import math
import os
import statistics
from dataclasses import replace

import pytest
import torch
from typer.testing import CliRunner

from xfbench.cli.main import app
from xfbench.profilers import calibrate as cal_mod
from xfbench.profilers import contention
from xfbench.profilers.calibrate import load_or_calibrate
from xfbench.profilers.doctor import examine
from xfbench.profilers.env import collect_environment
from xfbench.profilers.timer import TimerPolicy
from xfbench.profilers.verdict import NOISY, OK, UNFIT, Facts, noise_figures, report, verdict

QUIET = Facts(
    device="cpu", torch_threads=2, usable_cores=2, clock="perf_counter", timer_overhead_s=2e-7,
    sync_overhead_s=None, noise_kernel="256x256 float32 matmul", noise_windows=300, noise_cv=0.05,
    noise_robust_cv=0.008, noise_iqr_rel=0.005, noise_p99_over_median=1.3, noise_stall_fraction=0.0,
    noise_seconds=3.0,
    other_cpu_busy_cores=0.03, load_avg=[0.2, 0.3, 0.3],
    cpu_governor=None, nvml={"available": False, "reason": "no driver"},
    calibration={"matmul": {}}, calibration_note=None,
)
GPU_OK = replace(
    QUIET, device="cuda:0",
    nvml={"available": True, "persistence_mode": True, "other_processes": [], "clocks_event_reasons": ["gpu_idle"]},
)


def codes(f):
    v = verdict(f)
    return v.level, [(p.code, p.level) for p in v.problems]


@pytest.mark.parametrize(
    "facts, level, found",
    [
        (QUIET, OK, []),
        (GPU_OK, OK, []),
        (replace(QUIET, noise_robust_cv=0.05), NOISY, [("noise", NOISY)]),
        (replace(QUIET, noise_robust_cv=0.25), UNFIT, [("noise", UNFIT)]),
        (replace(QUIET, noise_cv=0.5), OK, []),  # a rare slow window: the median-based timer shrugs
        (replace(QUIET, noise_stall_fraction=0.03), NOISY, [("stalls", NOISY)]),
        (replace(QUIET, noise_stall_fraction=0.09), UNFIT, [("stalls", UNFIT)]),
        (replace(QUIET, other_cpu_busy_cores=0.4), NOISY, [("cpu_contention", NOISY)]),
        (replace(QUIET, other_cpu_busy_cores=0.67), UNFIT, [("cpu_contention", UNFIT)]),  # a busy loop beside
        (replace(QUIET, torch_threads=1, other_cpu_busy_cores=1.0), OK, []),  # the other load has its own core
        (replace(QUIET, torch_threads=4), NOISY, [("threads", NOISY)]),
        (replace(QUIET, load_avg=[2.5, 1.0, 1.0]), NOISY, [("load", NOISY)]),
        (replace(QUIET, load_avg=[1.5, 1.0, 1.0]), OK, []),
        (replace(QUIET, cpu_governor="powersave"), NOISY, [("governor", NOISY)]),
        (replace(QUIET, cpu_governor="performance"), OK, []),
        (replace(QUIET, timer_overhead_s=1e-3), NOISY, [("timer", NOISY)]),
        (replace(QUIET, calibration=None, calibration_note="skipped"), OK, []),  # optional: a note, see below
        (replace(GPU_OK, nvml={"available": False, "reason": "no driver"}), NOISY, [("nvml", NOISY)]),
        (replace(GPU_OK, nvml={**GPU_OK.nvml, "persistence_mode": False}), NOISY, [("persistence", NOISY)]),
        (replace(GPU_OK, nvml={**GPU_OK.nvml, "other_processes": [{"pid": 9}]}), NOISY, [("gpu_processes", NOISY)]),
        (replace(GPU_OK, nvml={**GPU_OK.nvml, "clocks_event_reasons": ["sw_power_cap"]}), NOISY, [("throttle", NOISY)]),
        (replace(GPU_OK, nvml={**GPU_OK.nvml, "clocks_event_reasons": ["hw_thermal_slowdown"]}), UNFIT,
         [("throttle", UNFIT)]),
        (replace(QUIET, noise_robust_cv=0.3, other_cpu_busy_cores=0.3), UNFIT,
         [("noise", UNFIT), ("cpu_contention", NOISY)]),
    ],
)
def test_verdict(facts, level, found):
    assert codes(facts) == (level, found)
    assert all(p.hint and p.message for p in verdict(facts).problems)


def test_missing_calibration_is_a_note_not_a_downgrade():
    skipped = verdict(replace(QUIET, calibration=None, calibration_note="skipped (--no-calibrate)"))
    assert skipped.level == OK and skipped.problems == []
    (note,) = skipped.notes
    assert "no measured peaks (skipped (--no-calibrate))" in note and "xfbench env --calibrate" in note
    busy = verdict(replace(QUIET, calibration_note="other processes kept 1.00 cores busy while calibrating"))
    assert busy.level == OK and busy.notes == ["calibration: other processes kept 1.00 cores busy while calibrating"]
    assert verdict(QUIET).notes == []


def test_floor():
    floor = QUIET.floor()
    assert floor["min_window_s"] == pytest.approx(2e-5)
    assert floor["smallest_visible_difference_rel"] == pytest.approx(0.016)


def test_noise_figures():
    # median 10, |x - 10| = 0, 0, 1, 1, 10 -> MAD 1; mean 12.2
    got = noise_figures([10.0, 10.0, 9.0, 11.0, 21.0])
    assert got["noise_windows"] == 5
    assert got["noise_robust_cv"] == pytest.approx(0.14826)
    assert got["noise_cv"] == pytest.approx(statistics.stdev([10, 10, 9, 11, 21]) / 12.2)
    assert got["noise_p99_over_median"] == pytest.approx((11 + 0.96 * 10) / 10)
    assert got["noise_stall_fraction"] == pytest.approx(0.2)  # 21 > 1.5 * 10


def test_examine_on_cpu_is_real_and_serializable():
    f = examine(torch.device("cpu"), noise_seconds=0.3, calibrate=False)
    # Structure only: counts and overheads depend on the machine and its load.
    assert f.noise_windows >= 1 and f.noise_cv >= 0
    assert f.timer_overhead_s > 0 and math.isfinite(f.timer_overhead_s)
    assert f.sync_overhead_s is None and f.usable_cores >= 1 and f.torch_threads >= 1
    assert f.nvml["available"] is False and f.nvml["reason"]
    rep = json.loads(json.dumps(report(f)))
    # The report is its facts' verdict, and its facts survive JSON: the verdict of the facts read
    # back is the one printed (whatever this machine's noise makes it).
    again = verdict(Facts(**rep["facts"]))
    assert rep["verdict"] == again.level == verdict(f).level
    assert [p["code"] for p in rep["problems"]] == [p.code for p in again.problems]
    assert "calibration" not in [p["code"] for p in rep["problems"]]
    assert f.calibration is None and any("--no-calibrate" in n for n in rep["notes"])


FAST = TimerPolicy(target_ci_rel=0.05, max_time_s=0.05, min_samples=6, min_window_s=0.002, warmup_min_s=0.01,
                   warmup_max_s=0.05)


def test_examine_measures_only_float32_on_cpu_and_shows_what_is_cached(tmp_path, monkeypatch):
    # fp16 is already cached; doctor measures what CPU sweeps run by default (float32), shows both,
    # and leaves bf16 (emulated on most CPUs: slow) alone.
    monkeypatch.setenv("XFBENCH_CACHE_DIR", str(tmp_path))
    load_or_calibrate(torch.device("cpu"), dtypes=["float16"], sizes=(32, 64), buffer_bytes=2**20, policy=FAST)
    monkeypatch.setattr(cal_mod, "CPU_SIZES", (32, 64))
    f = examine(torch.device("cpu"), noise_seconds=0.3)
    assert not f.calibration["reused"] and f.calibration["measured_now"] == ["float32"]
    assert set(f.calibration["matmul"]) == {"float16", "float32"}
    assert "calibration" not in [p.code for p in verdict(f).problems]
    again = examine(torch.device("cpu"), noise_seconds=0.3)
    assert again.calibration["reused"] and again.calibration["measured_now"] == []


def test_environment_uses_the_contention_helpers(monkeypatch):
    env = collect_environment()
    assert env["cpu_affinity"] == contention.usable_cores() >= 1
    monkeypatch.delattr(os, "getloadavg")  # an OS without load averages (Windows)
    assert contention.load_average() is None and collect_environment()["load_avg"] is None


def test_doctor_cli_json_and_table():
    result = CliRunner().invoke(app, ["doctor", "--device", "cpu", "--seconds", "0.5", "--no-calibrate", "--json"])
    assert result.exit_code == 0, result.output
    rep = json.loads(result.output)
    assert rep["facts"]["noise_windows"] > 0
    assert rep["verdict"] == verdict(Facts(**rep["facts"])).level  # the JSON's verdict is its own facts'

    assert "calibration" not in [p["code"] for p in rep["problems"]] and rep["notes"]
    table = CliRunner().invoke(app, ["doctor", "--device", "cpu", "--seconds", "0.5", "--no-calibrate"])
    assert table.exit_code == 0 and "run-to-run noise" in table.output and "verdict: " in table.output
    assert "note: no measured peaks (skipped (--no-calibrate))" in table.output
