"""--isolate: each case in a fresh child; a crash, an abort, a kill from outside, an exit or a hang
becomes that case's record and the next case runs; isolated records have the in-process shape."""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import replace

import psutil
import torch

from xfbench.reports.store import load_results
from xfbench.workloads.attention import AttentionConfig
from xfbench.workloads.attention import cases as attention_cases
from xfbench.workloads.faulty import EXIT_CODE, FaultyConfig
from xfbench.workloads.faulty import cases as faulty_cases
from xfbench.workloads.isolate import CHILD_MODULE, killed_out_of_memory, stderr_tail
from xfbench.workloads.runner import IN_PROCESS, ISOLATED, RunOptions, run_plan

from .conftest import fast_policy, run_cli

CPU = torch.device("cpu")
MiB = 2**20


def _opts(**kw) -> RunOptions:
    return RunOptions(**{"policy": fast_policy(), "measure_memory": False, "calibrate": False, **kw})


def _isolated_children() -> list[psutil.Process]:
    out = []
    for c in psutil.Process().children(recursive=True):
        try:
            if CHILD_MODULE in " ".join(c.cmdline()):
                out.append(c)
        except psutil.Error:
            pass
    return out


def _kill_from_outside(marker: str, seen: list[int]) -> threading.Thread:
    """SIGKILL the isolated child whose command line names `marker` (its case), half a second after it appears."""

    def run() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for c in _isolated_children():
                try:
                    if marker in " ".join(c.cmdline()):
                        time.sleep(0.5)
                        seen.append(c.pid)
                        os.kill(c.pid, signal.SIGKILL)
                        return
                except (psutil.Error, ProcessLookupError):
                    pass
            time.sleep(0.05)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_crash_abort_kill_and_exit_each_become_an_error_record_and_the_next_case_runs(tmp_path):
    plan = faulty_cases(FaultyConfig(["abort", "segfault", "hang", "exit", "hog", "ok"], hog_bytes=235 * MiB), CPU)
    killed: list[int] = []
    killer = _kill_from_outside("-hang-case=3-", killed)
    records = run_plan(plan, tmp_path / "results.jsonl", command="test", opts=_opts(isolate=True,
                                                                                    mem_limit_bytes=256 * MiB))
    killer.join(timeout=5)
    by = {r.variant: r for r in records}
    assert [r.variant for r in records] == ["abort", "segfault", "hang", "exit", "hog", "ok"]
    assert by["abort"].status == "error" and by["abort"].reason.startswith("child killed by SIGABRT")
    assert "Fatal Python error: Aborted" in by["abort"].reason and "faulty.py" in by["abort"].reason
    assert by["segfault"].status == "error" and by["segfault"].reason.startswith("child killed by SIGSEGV")
    assert "Segmentation fault" in by["segfault"].reason
    assert killed, "the test never found the hung case's child"
    hang = by["hang"]
    assert hang.status == "error" and hang.reason.startswith("child killed by SIGKILL (killed from outside")
    assert "not out of memory" in hang.reason and "getrusage" in hang.reason
    assert by["exit"].status == "error" and by["exit"].reason == f"child exited with code {EXIT_CODE} without a result"
    # SIGKILLed holding most of its --mem-limit: what the OOM killer does, so `oom`
    assert by["hog"].status == "oom" and "out of memory" in by["hog"].reason and "--mem-limit" in by["hog"].reason
    ok = by["ok"]
    assert ok.status == "ok" and ok.time.median_s > 0 and ok.info["process"] == ISOLATED
    assert ok.info["mem_limit"].startswith("RLIMIT_AS")  # the child set its own cap
    assert [r.case_id for r in load_results(tmp_path).records] == [c.id for c in plan]
    assert _isolated_children() == []


def test_a_hung_case_ends_at_the_case_timeout_and_the_sweep_goes_on(tmp_path):
    plan = faulty_cases(FaultyConfig(["hang", "ok"]), CPU)
    t0 = time.monotonic()
    hang, ok = run_plan(plan, tmp_path / "results.jsonl", command="test", opts=_opts(case_timeout_s=3.0))
    assert hang.status == "error"
    assert hang.reason == "no result after 3 s (--case-timeout); its process group was killed"
    assert 3.0 <= hang.wall_s < 3.0 + 30  # the timeout counts from the child's start of the case
    assert ok.status == "ok" and ok.info["process"] == ISOLATED  # --case-timeout alone turns isolation on
    assert time.monotonic() - t0 < 60
    assert _isolated_children() == []


def test_isolated_and_in_process_records_have_the_same_fields(tmp_path):
    # Fake clock: both are deterministic, so every figure, the time statistics included, must match.
    plan = attention_cases(AttentionConfig(seq_lens=[32], impls=["naive"], heads=2, head_dim=8), CPU)
    opts = _opts(fake_clock=True, measure_memory=True, count_flops=True)
    (here,) = run_plan(plan, tmp_path / "a" / "results.jsonl", command="test", opts=opts)
    (child,) = run_plan(plan, tmp_path / "b" / "results.jsonl", command="test",
                        opts=replace(opts, isolate=True))
    assert (here.info.pop("process"), child.info.pop("process")) == (IN_PROCESS, ISOLATED)
    skip = {"run_id", "started_utc", "wall_s"}
    a, b = here.model_dump(exclude=skip), child.model_dump(exclude=skip)
    assert a == b
    assert a["time"]["samples_s"] and a["status"] == "ok" and a["metrics"]["flops_counted_per_call"]
    for path in (tmp_path / "a", tmp_path / "b"):  # the headers have the same shape too
        assert set(load_results(path).header.environment) == set(load_results(tmp_path / "a").header.environment)


def test_stderr_tail_keeps_what_names_the_failure():
    dump = (
        "Fatal Python error: Segmentation fault\n\nCurrent thread 0x1 (most recent call first):\n"
        '  File "/x/ctypes/__init__.py", line 519 in string_at\n  File "/x/faulty.py", line 67 in fire\n'
        '  File "/x/timer.py", line 10 in run\n\nExtension modules: numpy (total: 1)\n'
    )
    assert stderr_tail(dump) == (
        'Fatal Python error: Segmentation fault | File "/x/ctypes/__init__.py", line 519 in string_at | '
        'File "/x/faulty.py", line 67 in fire'
    )
    assert stderr_tail("a\n\nb\nc\nd\n") == "b | c | d"
    assert stderr_tail("x" * 1000, chars=10) == "...xxxxxxxxxx"
    assert stderr_tail("") == ""


def test_a_sigkill_is_out_of_memory_only_when_memory_says_so():
    gib = 2**30
    assert killed_out_of_memory(gib, None, None, 100 * gib, 1).startswith("the kernel's OOM killer")
    # RSS grew 0.9 GiB past its start under a 1 GiB --mem-limit: oom
    why = killed_out_of_memory(int(1.2 * gib), int(0.3 * gib), gib, 100 * gib, 0)
    assert why == "its RSS grew 922 MiB beyond its start (getrusage peak), 90% of --mem-limit 1 GiB"
    # peak RSS at 95% of what was available at its start: oom
    assert "95% of the" in killed_out_of_memory(int(9.5 * gib), None, None, 10 * gib, None)
    # small, and nothing rose: a kill from outside
    assert killed_out_of_memory(300 * MiB, 250 * MiB, gib, 10 * gib, 0) is None
    assert killed_out_of_memory(None, None, None, None, None) is None



def test_a_hung_launch_of_ranks_ends_at_the_case_timeout(tmp_path):
    # Data-parallel cases already run as launched ranks: the timeout bounds the launch (its ranks stopped).
    res = run_cli("parallel", "--world-sizes", "2", "--strategy", "ddp", "--collectives", "none", "--max-time", "0.1",
                  "--fault", "1:hang", "--case-timeout", "3", "--device", "cpu", "--no-history", "--out", str(tmp_path))
    assert res.returncode == 3, res.stdout + res.stderr
    (rec,) = load_results(tmp_path).records
    assert rec.status == "error" and rec.reason == "no result after 3 s (--case-timeout); its 2 ranks were stopped"
