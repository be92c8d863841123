"""xfbench parallel: real 2-rank gloo jobs on the CPU (launched, failing, under torchrun), the
collective stop decision, and the launch-line printer."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest

from xfbench.reports.schema import SCHEMA_VERSION

from .conftest import run_cli

pytestmark = pytest.mark.skipif(
    not shutil.which("torchrun", path=str(Path(sys.executable).parent)), reason="torchrun not installed"
)

FAST = ["--device", "cpu", "--max-time", "0.3", "--target-ci", "0.05", "--seq-len", "32", "--batch", "2",
        "--no-html"]


def load(path: Path) -> list[dict]:
    return [json.loads(line) for line in (path / "results.jsonl").read_text().splitlines() if line.strip()]


def records(path: Path) -> list[dict]:
    return [r for r in load(path) if r["kind"] == "record"]


def leftovers(tag: str) -> list[psutil.Process]:
    """Processes still running that were started by a command run with XFBENCH_TEST_TAG=tag."""
    out = []
    for p in psutil.process_iter():
        try:
            if p.environ().get("XFBENCH_TEST_TAG") == tag:
                out.append(p)
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return out


def wait_gone(tag: str, within_s: float = 10.0) -> list[psutil.Process]:
    deadline = time.monotonic() + within_s
    while (left := leftovers(tag)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    # A module fixture is set up before conftest's per-test _isolated_cache: without these the sweep
    # recorded its results into the user's own history database.
    root = tmp_path_factory.mktemp("parallel")
    out = root / "run"
    env = {"XFBENCH_CACHE_DIR": str(root / "xfbench-cache"), "XFBENCH_HISTORY_DB": str(root / "history.sqlite")}
    res = run_cli("parallel", "--world-sizes", "1,2", "--strategy", "single,ddp,fsdp", "--presets", "1M",
                  "--message-sizes", "1KiB,64KiB", "--out", str(out), *FAST, env=env, timeout=600)
    assert (root / "history.sqlite").is_file(), res.stdout + res.stderr  # recorded here, not in the user's
    return res, out


def test_sweep_measures_every_strategy_at_each_world_size(sweep):
    res, out = sweep
    assert res.returncode == 0, res.stdout + res.stderr
    recs = {(r["variant"], r["size"]): r for r in records(out) if r["workload"] == "parallel"}
    assert set(recs) == {("single", 1), ("ddp", 1), ("ddp", 2), ("fsdp", 1), ("fsdp", 2)}
    for (_, n), r in recs.items():
        assert r["status"] == "ok", r["reason"]
        assert len(r["ranks"]) == n and [x["rank"] for x in r["ranks"]] == list(range(n))
        assert r["metrics"]["world_size"] == n
        # global tokens = world size · batch per rank · T, over the slowest rank's time
        assert r["metrics"]["tokens_per_call"] == n * 2 * 32
        assert r["metrics"]["tokens_per_s"] == pytest.approx(n * 2 * 32 / r["time"]["median_s"])
        # memory is per rank: the case's peak is the highest rank's, never a sum
        peaks = [x["peak_mem_bytes"] for x in r["ranks"]]
        assert r["metrics"]["peak_mem_bytes"] == max(peaks)
        # 2 cores shared out: 2 threads alone, 1 per rank at 2 ranks
        assert {x["threads"] for x in r["ranks"]} == {max(1, psutil.Process().cpu_affinity().__len__() // n)}
    assert "scaling_efficiency" not in recs[("single", 1)]["metrics"]
    for key in [("ddp", 1), ("ddp", 2), ("fsdp", 2)]:
        m = recs[key]["metrics"]
        assert m["scaling_efficiency"] > 0 and m["scaling_efficiency_ci_rel"] > 0
        single = recs[("single", 1)]["metrics"]["tokens_per_s"]
        assert m["scaling_efficiency"] == pytest.approx(m["tokens_per_s"] / (key[1] * single))
    ddp2 = recs[("ddp", 2)]["metrics"]
    assert ddp2["exposed_comm_s"] == pytest.approx(recs[("ddp", 2)]["time"]["median_s"] - ddp2["nosync_time_s"])
    assert ddp2["grad_bytes_per_step"] == recs[("ddp", 2)]["info"]["n_params"] * 4
    assert ddp2["comm_bytes_per_rank_per_step"] == pytest.approx(2 * 0.5 * ddp2["grad_bytes_per_step"])
    assert "exposed_comm" in recs[("fsdp", 2)]["info"] and "exposed_comm_s" not in recs[("fsdp", 2)]["metrics"]


def test_fsdp_shards_the_state_each_rank_holds(sweep):
    """What FSDP saves is the state between steps: weights and AdamW moments, counted per rank."""
    _, out = sweep
    recs = {(r["variant"], r["size"]): r for r in records(out) if r["workload"] == "parallel"}
    n_params = recs[("ddp", 2)]["info"]["n_params"]
    for key in [("single", 1), ("ddp", 1), ("ddp", 2), ("fsdp", 1)]:
        assert recs[key]["metrics"]["state_bytes_per_rank"] == 12 * n_params  # fp32 weight + 2 moments, whole
    fsdp = recs[("fsdp", 2)]
    shards = [x["state_bytes"] for x in fsdp["ranks"]]
    assert sum(shards) >= 12 * n_params and max(shards) < 0.6 * 12 * n_params  # half each (+ padding)
    for r in recs.values():
        m = r["metrics"]
        assert m["mem_per_rank_bytes"] == max(x["state_bytes"] + x["peak_mem_bytes"] for x in r["ranks"])


def test_ranks_take_the_same_windows(sweep):
    """The stop decision is collective: every rank ran exactly the case's windows."""
    _, out = sweep
    for r in records(out):
        if r["status"] == "ok" and r.get("ranks"):
            n = r["time"]["n"]
            assert all(len(x["samples_s"]) == n for x in r["ranks"]), r["case_id"]
            # each window's sample is the max over ranks of that window
            per_rank = [x["samples_s"] for x in r["ranks"]]
            assert r["time"]["samples_s"] == pytest.approx([max(w) for w in zip(*per_rank, strict=True)])


def test_collective_bandwidth_follows_nccl_tests(sweep):
    _, out = sweep
    coll = [r for r in records(out) if r["workload"] == "collective"]
    ops = {r["variant"] for r in coll}
    assert ops == {"all_reduce", "all_gather", "reduce_scatter"}  # fsdp adds all-gather and reduce-scatter
    for r in coll:
        m, t = r["metrics"], r["time"]["median_s"]
        assert m["algbw_bytes_per_s"] == pytest.approx(m["message_bytes"] / t)
        factor = 2 * (2 - 1) / 2 if r["variant"] == "all_reduce" else (2 - 1) / 2
        assert m["busbw_bytes_per_s"] == pytest.approx(m["algbw_bytes_per_s"] * factor)
        assert "gloo" in r["info"]["backend_note"]


def test_header_and_report_render(sweep):
    res, out = sweep
    header = load(out)[0]
    assert header["schema_version"] == SCHEMA_VERSION and header["command"] == "parallel"
    assert "parallel train 1M" in res.stdout
    rep = run_cli("report", str(out), "--markdown", "-")
    assert rep.returncode == 0, rep.stderr
    assert "ddp" in rep.stdout and "all\\_reduce" in rep.stdout  # Markdown escapes the underscore
    assert "memory/rank" in rep.stdout and "state/rank" in rep.stdout


@pytest.mark.parametrize("kind,words,status", [
    ("raise", "injected failure", "error"), ("kill", "SIGKILL", "error"), ("oom", "MemoryError", "oom"),
])
def test_a_failing_rank_ends_the_case_and_leaves_nothing(tmp_path, kind, words, status):
    tag = uuid.uuid4().hex
    t0 = time.monotonic()
    res = run_cli("parallel", "--strategy", "ddp", "--world-sizes", "2", "--collectives", "none", "--fault",
                  f"1:{kind}", "--out", str(tmp_path / "run"), *FAST, env={"XFBENCH_TEST_TAG": tag}, timeout=120)
    elapsed = time.monotonic() - t0
    assert res.returncode == 3, res.stdout + res.stderr
    assert elapsed < 60
    (rec,) = records(tmp_path / "run")
    assert rec["status"] == status  # a rank out of memory is an `oom` record, as in one process
    assert rec["reason"].startswith("rank 1: ") and words in rec["reason"]
    assert "Traceback" not in res.stdout + res.stderr
    assert wait_gone(tag) == []


def test_a_hung_rank_is_named_after_the_timeout(tmp_path):
    tag = uuid.uuid4().hex
    res = run_cli("parallel", "--strategy", "ddp", "--world-sizes", "2", "--collectives", "none", "--fault",
                  "1:hang", "--pg-timeout", "5", "--out", str(tmp_path / "run"), *FAST,
                  env={"XFBENCH_TEST_TAG": tag}, timeout=120)
    assert res.returncode == 3, res.stdout + res.stderr
    (rec,) = records(tmp_path / "run")
    assert rec["status"] == "error"
    assert rec["reason"].startswith("rank 1 stopped answering") and "timed out after 5 s" in rec["reason"]
    assert wait_gone(tag) == []


def test_under_torchrun_rank0_writes_the_results(tmp_path):
    torchrun = str(Path(sys.executable).parent / "torchrun")
    out = tmp_path / "run"
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", "GLOO_SOCKET_IFNAME": "lo"}
    res = subprocess.run(
        [torchrun, "--standalone", "--nproc-per-node", "2", "-m", "xfbench", "parallel", "--strategy",
         "single,ddp", "--collectives", "all_reduce", "--message-sizes", "4KiB", "--out", str(out), *FAST],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert res.stdout.count("results: ") == 1  # rank 0 alone prints and writes
    recs = {(r["variant"], r["size"]): r for r in records(out)}
    assert {("single", 1), ("ddp", 2), ("all_reduce", 4096)} <= set(recs)
    assert all(r["status"] == "ok" for r in recs.values()), [r["reason"] for r in recs.values()]
    ddp = recs[("ddp", 2)]
    assert len(ddp["ranks"]) == 2 and "outside launcher" in ddp["info"]["launcher"]
    assert ddp["metrics"]["scaling_efficiency"] > 0  # against the single case rank 0 ran alone
    assert recs[("single", 1)]["ranks"][0]["threads"] == len(psutil.Process().cpu_affinity())


def test_collective_stop_decision_is_rank0s():
    """Rank 1 would stop at once (a cap of 0 s); rank 0 decides, so both run the same windows."""
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    from xfbench.workloads.launch import quiet_elastic_logs

    from . import rank_fns

    quiet_elastic_logs()
    cfg = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=2, run_id=uuid.uuid4().hex, rdzv_backend="c10d",
                       rdzv_endpoint="localhost:0", max_restarts=0)
    out = elastic_launch(cfg, rank_fns.stop_decision)(0.0)
    a, b = out[0], out[1]
    assert a["n"] == b["n"] >= 6 and a["warmup"] == b["warmup"] and a["calls"] == b["calls"]
    assert a["samples"] == b["samples"]  # every window: the max over ranks, the same on both
    assert a["per_window"] == a["warmup"] + a["n"]


def test_print_launch_for_two_nodes_of_eight():
    res = run_cli("parallel", "--print-launch", "--nnodes", "2", "--nproc-per-node", "8", "--rdzv-endpoint",
                  "node0:29500", "--presets", "124M", "--strategy", "ddp,fsdp", "--device", "cuda")
    assert res.returncode == 0, res.stderr
    lines = [x for x in res.stdout.splitlines() if not x.startswith("#")]
    assert len(lines) == 3  # one torchrun per node, one srun
    for rank, line in enumerate(lines[:2]):
        assert line.startswith("torchrun --nnodes 2 --nproc-per-node 8 --node-rank " + str(rank))
        assert "--rdzv-backend c10d --rdzv-endpoint node0:29500" in line and "--max-restarts 0" in line
        assert line.endswith("-m xfbench parallel --presets 124M --strategy ddp,fsdp --device cuda")
    assert lines[2].startswith("srun --nodes 2 --ntasks-per-node 1 --gpus-per-node 8 torchrun --nnodes 2")
    assert "--print-launch" not in res.stdout and "--nnodes 2 --nproc-per-node 8" in lines[2]


@pytest.mark.parametrize("args,words", [
    (["--strategy", "zero"], "--strategy"),
    (["--fault", "x:boom"], "--fault"),
    (["--scaling", "strong", "--batch", "3", "--world-sizes", "2"], "divisible"),
    (["--collectives", "broadcast"], "--collectives"),
    (["--message-sizes", "lots"], "--message-sizes"),
])
def test_bad_options_exit_2_before_launching(tmp_path, args, words):
    res = run_cli("parallel", "--out", str(tmp_path / "run"), "--device", "cpu", *args)
    assert res.returncode == 2, res.stdout + res.stderr
    assert words in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_a_launch_keeps_the_results(tmp_path, sig):
    """Ctrl-C or a CI runner's SIGTERM while ranks run: one line, exit 130, finished cases kept, no rank left."""
    tag = uuid.uuid4().hex
    out = tmp_path / "run"
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", "XFBENCH_TEST_TAG": tag, "PYTHONUNBUFFERED": "1"}
    cmd = [str(Path(sys.executable).parent / "xfbench"), "parallel", "--strategy", "single,ddp", "--world-sizes", "2",
           "--collectives", "none", "--out", str(out), *FAST, "--fault", "1:hang"]  # ddp's rank 1 hangs: a launch runs
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines = []
    for line in proc.stdout:  # the first case (single) has ended: the second is a running launch
        lines.append(line)
        if line.startswith("[1/2]"):
            break
    time.sleep(3)
    proc.send_signal(sig)
    rest, _ = proc.communicate(timeout=60)
    text = "".join(lines) + rest
    assert proc.returncode == 128 + sig, text  # 130 for SIGINT, 143 for SIGTERM
    assert f"interrupted ({sig.name}): 1 of 2 cases are in" in text and "Traceback" not in text
    assert [r["variant"] for r in records(out)] == ["single"]
    assert wait_gone(tag) == []


def _gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


@pytest.mark.skipif(_gpus() == 0, reason="needs CUDA: one GPU per rank is checked against the GPUs present")
def test_more_gpu_ranks_than_gpus_is_bad_input(tmp_path):
    res = run_cli("parallel", "--device", "cuda", "--world-sizes", str(_gpus() + 1), "--out", str(tmp_path / "r"))
    assert res.returncode == 2 and "need one GPU each" in res.stderr, res.stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.skipif(_gpus() > 0, reason="CPU-only assumption: --device cuda must be refused without CUDA")
def test_cuda_ranks_without_cuda_are_bad_input(tmp_path):
    res = run_cli("parallel", "--device", "cuda", "--world-sizes", "2", "--out", str(tmp_path / "r"))
    assert res.returncode == 2 and "no CUDA device" in res.stderr, res.stderr


def test_resume_finds_the_single_baseline_in_the_file(tmp_path):
    out = tmp_path / "run"
    args = ["parallel", "--strategy", "single,ddp", "--world-sizes", "1", "--collectives", "none", "--out", str(out),
            *FAST]
    assert run_cli(*args[:2], "single", *args[3:]).returncode == 0
    res = run_cli(*args, "--resume")
    assert res.returncode == 0, res.stdout + res.stderr
    ddp = [r for r in records(out) if r["variant"] == "ddp"]
    assert len(ddp) == 1 and ddp[0]["metrics"]["scaling_efficiency"] > 0
    assert ddp[0]["metrics"]["baseline_case_id"] == next(r for r in records(out) if r["variant"] == "single")["case_id"]
