"""--profile and --memory-snapshot on CPU, for real: torch.profiler runs each case in a pass of its
own after timing, writes a loadable Chrome trace into the run folder and keeps a summary whose
numbers add up; a memory snapshot on CPU is a recorded skip with its reason, never a crash."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import torch

from xfbench.profilers.measure import MeasureOptions, measure
from xfbench.profilers.torch_profile import (
    ProfileOptions,
    category,
    device_breakdown,
    read_trace,
    summarize,
)
from xfbench.reports.store import load_results
from xfbench.workloads.base import Step

from .conftest import fast_policy, run_cli

MATMULS = {"aten::bmm", "aten::mm", "aten::addmm", "aten::baddbmm", "aten::matmul"}
FAST = ["--max-time", "0.2", "--device", "cpu", "--no-calibrate", "--no-history", "--no-html"]


def _trace_ok(run_dir: Path, rel: str) -> dict:
    path = run_dir / rel
    assert not Path(rel).is_absolute() and path.is_file(), rel
    with gzip.open(path, "rt") as f:  # what ui.perfetto.dev and chrome://tracing read
        trace = json.load(f)
    ops = [e for e in trace["traceEvents"] if e.get("cat") == "cpu_op"]
    assert ops and all("ts" in e and "dur" in e for e in ops)
    return trace


def _shares_add_up(p: dict) -> None:
    ops = p["ops"]
    assert [o["self_s"] for o in ops] == sorted((o["self_s"] for o in ops), reverse=True)
    total = sum(o["share"] for o in ops) + p["other_ops"]["share"]
    assert 0 < total <= 1 + 1e-9
    # every op is in one category, and the categories (with the time outside ops) are the step
    assert abs(sum(p["breakdown"].values()) - 1) < 0.02 and all(v >= 0 for v in p["breakdown"].values())


def test_a_profiled_attention_sweep_writes_traces_and_a_summary_that_adds_up(tmp_path):
    # head_dim 256: the GEMMs' work (N²·d) clearly outweighs the N² elementwise scale and softmax.
    # Ten active steps: self CPU time is wall time, so one step descheduled inside softmax (a
    # loaded machine) must not outweigh the GEMMs of all the others.
    res = run_cli("attention", "--seq-lens", "256,512", "--impl", "naive,sdpa", "--heads", "2", "--head-dim", "256",
                  "--profile", "--profile-schedule", "1,1,10", "--memory-snapshot", "--profile-top", "5",
                  "--out", str(tmp_path), *FAST)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "profiler_start" not in res.stderr + res.stdout  # kineto's own log lines are held back
    run = load_results(tmp_path)
    assert len(run.records) == 4
    for r in run.records:
        p = r.profile
        assert p["trace"].startswith(f"profiles/{r.run_id}/{r.case_id}/") and p["trace_bytes"] > 0
        _trace_ok(tmp_path, p["trace"])
        assert len(p["ops"]) == 5 and p["other_ops"]["count"] >= 0
        _shares_add_up(p)
        assert p["sort_by"] == "self CPU time" and p["activities"] == ["CPU"]
        assert p["schedule"] == {"wait": 1, "warmup": 1, "active": 10}
        # the profiled step against the timed one: the overhead is a measured figure with its note
        assert p["timed_median_s"] == r.time.median_s and p["profiled_median_s"] > 0
        assert p["overhead_rel"] == pytest.approx(p["profiled_median_s"] / r.time.median_s - 1)
        # a memory snapshot needs CUDA: recorded as skipped, with why
        assert p["memory_snapshot"] is None and "CUDA only" in p["memory_snapshot_skipped"]
    naive = [r for r in run.records if r.variant == "naive"]
    for r in naive:
        assert r.profile["ops"][0]["name"] in MATMULS, r.profile["ops"][0]
        # torch.profiler counts the two batched GEMMs: exactly the work naive attention dispatches
        assert r.profile["flops_over_work"] == pytest.approx(1.0, rel=1e-9)
    sdpa = [r for r in run.records if r.variant == "sdpa"]
    assert all(r.profile["flops_over_work"] is None and "counted no FLOPs" in r.profile["flops_note"] for r in sdpa)


def test_a_profiled_model_train_step(tmp_path):
    res = run_cli("model", "--presets", "1M", "--mode", "train", "--profile", "--out", str(tmp_path), *FAST)
    assert res.returncode == 0, res.stdout + res.stderr
    (r,) = load_results(tmp_path).records
    p = r.profile
    trace = _trace_ok(tmp_path, p["trace"])
    steps = [e for e in trace["traceEvents"] if e.get("name", "").startswith("ProfilerStep#")]
    assert len(steps) == 3  # the active steps of the default schedule 1,1,3
    _shares_add_up(p)
    names = {o["name"] for o in p["ops"]}
    assert names & {"aten::mm", "aten::addmm", "aten::bmm"}, names
    assert p["counted_flops"] > 0 and 0.5 < p["flops_over_work"] < 1.5, p["flops_note"]
    assert isinstance(p["overhead_rel"], float)


def test_the_profiler_pass_runs_apart_from_the_timed_phase(tmp_path):
    """Every call the timer counted ran with no profiler on; exactly the schedule's steps ran under
    it, after timing; and the timed samples are the same with or without the pass."""
    seen: list[bool] = []

    def fn(x):
        seen.append(torch.autograd.profiler._is_profiler_enabled)
        return x @ x

    def run(profile):
        seen.clear()
        x = torch.randn(64, 64)
        step = Step(fn=fn, inputs=(x,), flops=2 * 64**3, tokens=64, working_set_bytes=x.nbytes)
        opts = MeasureOptions(policy=fast_policy(), fake_clock=True, memory=False, profile=profile)
        return measure(step, torch.device("cpu"), opts)

    plain = run(None)
    timed_calls = plain.time.warmup_calls + plain.time.n * plain.time.calls_per_sample
    assert len(seen) == timed_calls and not any(seen)
    po = ProfileOptions(run_dir=tmp_path, wait=1, warmup=1, active=2).for_case("r", "c")
    profiled = run(po)
    assert seen[:timed_calls] == [False] * timed_calls  # the timed phase: never profiled
    assert len(seen) == timed_calls + 4  # then wait + warmup + active calls, in the pass
    assert sum(seen) >= 2  # at least the active ones under the profiler
    assert profiled.time.samples_s == plain.time.samples_s
    assert profiled.profile["trace"] == "profiles/r/c/trace.json.gz"
    assert profiled.profile["overhead_rel"] is None and "fake clock" in profiled.profile["overhead_note"]


def test_an_oom_case_with_memory_snapshot_records_why_none_was_taken_on_cpu(tmp_path):
    res = run_cli("attention", "--seq-lens", "128,2048", "--impl", "naive", "--heads", "2", "--head-dim", "16",
                  "--mem-limit", "24MiB", "--memory-snapshot", "--out", str(tmp_path), *FAST)
    assert res.returncode == 3, res.stdout + res.stderr
    oom = next(r for r in load_results(tmp_path).records if r.status == "oom")
    assert oom.profile["memory_snapshot"] is None and "CUDA only" in oom.profile["memory_snapshot_skipped"]
    assert not (tmp_path / "profiles").exists()  # --memory-snapshot alone writes no trace


def test_data_parallel_ranks_write_one_trace_each(tmp_path):
    res = run_cli("parallel", "--strategy", "ddp", "--world-sizes", "2", "--presets", "1M", "--collectives", "none",
                  "--profile", "--profile-schedule", "0,1,1", "--out", str(tmp_path), *FAST)
    assert res.returncode == 0, res.stdout + res.stderr
    (r,) = [r for r in load_results(tmp_path).records if r.status == "ok"]
    p = r.profile
    assert [Path(t).name for t in p["traces"]] == ["trace.rank0.json.gz", "trace.rank1.json.gz"]
    for rel in p["traces"]:
        _trace_ok(tmp_path, rel)
    assert p["summary_of_rank"] == 0 and p["schedule"] == {"wait": 0, "warmup": 1, "active": 1}
    assert p["breakdown"]["communication"] > 0  # DDP's all-reduce, by its collective's name


def test_a_suite_case_can_be_profiled(tmp_path):
    suite = tmp_path / "s.toml"
    suite.write_text(
        'name = "p"\n[run]\ndevice = "cpu"\nmax_time = 0.2\ncalibrate = false\nprofile_schedule = "0,1,2"\n'
        '[[cases]]\nname = "a"\nworkload = "attention"\nseq_lens = [128]\nimpl = ["naive"]\nprofile = true\n'
        '[[cases]]\nname = "b"\nworkload = "attention"\nseq_lens = [128]\nimpl = ["sdpa"]\n'
    )
    res = run_cli("run", str(suite), "--out", str(tmp_path / "run"), "--no-history", "--no-html")
    assert res.returncode == 0, res.stdout + res.stderr
    by = {r.variant: r for r in load_results(tmp_path / "run").records}
    assert by["naive"].profile["schedule"] == {"wait": 0, "warmup": 1, "active": 2}
    assert by["sdpa"].profile is None  # only the case that asked
    _trace_ok(tmp_path / "run", by["naive"].profile["trace"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--profile-schedule", "1,1,0"], "--profile-schedule: ACTIVE must be at least 1"),
        (["--profile-schedule", "1,x,3"], "--profile-schedule: '1,x,3' is not WAIT,WARMUP,ACTIVE"),
        (["--profile-schedule", "50,50,50"], "more than 100"),
    ],
)
def test_bad_profile_options_are_one_line_and_exit_2(tmp_path, args, message):
    res = run_cli("attention", "--seq-lens", "128", "--profile", *args, "--out", str(tmp_path), *FAST)
    assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr, res.stderr
    assert not (tmp_path / "results.jsonl").exists()


def test_a_bad_schedule_in_a_suite_file_names_its_key(tmp_path):
    suite = tmp_path / "s.toml"
    suite.write_text('name = "p"\n[run]\nprofile_schedule = "3"\n[[cases]]\nname = "a"\nworkload = "attention"\n')
    res = run_cli("run", str(suite), "--out", str(tmp_path / "run"))
    assert res.returncode == 2 and "run.profile_schedule" in res.stderr and "WAIT,WARMUP,ACTIVE" in res.stderr


def test_categories_by_name():
    assert category("aten::addmm") == "compute"
    assert category("c10d::allreduce_") == category("gloo:all_reduce") == "communication"
    assert category("ncclDevKernel_AllReduce_Sum_f32_RING_LL(ncclDevKernelArgsStorage)", True) == "communication"
    assert category("aten::copy_") == category("Memcpy HtoD (Pageable -> Device)", True) == "memory"
    assert category("Memcpy HtoD", on_device=False) == "compute"  # a CPU op of that name is no device copy


def test_device_breakdown_from_trace_events():
    """Kernels inside the step spans, clipped to them; idle is the span no device event covers."""
    steps = [(0.0, 100.0), (200.0, 300.0)]  # µs, as Chrome traces count
    events = [
        {"cat": "kernel", "name": "sm90_gemm", "ts": 10, "dur": 40},
        {"cat": "kernel", "name": "ncclKernel_AllReduce", "ts": 30, "dur": 40},  # overlaps the GEMM
        {"cat": "gpu_memcpy", "name": "Memcpy DtoD", "ts": 290, "dur": 20},  # half outside the step
        {"cat": "kernel", "name": "between_steps", "ts": 150, "dur": 10},
        {"cat": "cpu_op", "name": "aten::mm", "ts": 0, "dur": 100},
    ]
    b = device_breakdown(events, steps)
    assert b["compute"] == pytest.approx(40e-6) and b["communication"] == pytest.approx(40e-6)
    assert b["memory"] == pytest.approx(10e-6)
    assert b["idle"] == pytest.approx(200e-6 - 60e-6 - 10e-6)  # union 10..70 and 290..300
    assert device_breakdown([e for e in events if e["cat"] == "cpu_op"], steps) is None


def test_summarize_keeps_the_top_k_and_sums_the_rest():
    class Avg:
        def __init__(self, key, self_us, count=2, flops=0, shapes=None):
            self.key, self.self_cpu_time_total, self.count, self.flops = key, self_us, count, flops
            self.input_shapes = shapes or []
            self.self_device_time_total = 0

    avgs = [Avg("ProfilerStep*", 100), Avg("aten::mm", 500, flops=4000, shapes=[[2, 3], [3, 4]]),
            Avg("aten::add", 200), Avg("aten::copy_", 100), Avg("aten::view", 0)]
    s = summarize(avgs, steps=2, step_s=0.5e-3, on_device=False, top_k=2)
    assert [o["name"] for o in s["ops"]] == ["aten::mm", "aten::add"]
    mm = s["ops"][0]
    assert mm["self_s"] == pytest.approx(250e-6) and mm["share"] == pytest.approx(0.5) and mm["calls"] == 1
    assert mm["shapes"] == "2×3, 3×4" and mm["flops"] == 2000
    assert s["other_ops"] == {"count": 1, "self_s": pytest.approx(50e-6), "share": pytest.approx(0.1)}
    assert s["seconds"]["outside_ops"] == pytest.approx(50e-6) and s["seconds"]["memory"] == pytest.approx(50e-6)
    assert s["counted_flops"] == 2000


def test_read_trace_reads_what_was_written(tmp_path):
    path = tmp_path / "t.json.gz"
    with gzip.open(path, "wt") as f:
        json.dump({"traceEvents": [{"name": "x"}]}, f)
    assert read_trace(path)["traceEvents"] == [{"name": "x"}]
