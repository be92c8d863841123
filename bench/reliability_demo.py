"""Issue 12's must-show runs, real and on this machine: prints what each step saw.

  python bench/reliability_demo.py [--work DIR]

1. SIGKILL halfway through an `xfbench attention` sweep, then `--out DIR --resume`: the completed
   cases load, the resume runs exactly the missing ones, and each case is in the file once.
2. SIGINT and SIGTERM during a sweep: exit 130 / 143, the completed cases in results.jsonl and in
   report.html, and no xfbench process left.
3. --isolate (library, test-only faulty workload): an abort and a child killed from outside are
   error records and the next case runs; a hung case ends at --case-timeout.
4. Two sweeps on one --out at once: the second exits 2 and the file holds each case once.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

XFBENCH = [sys.executable, "-m", "xfbench"]
SWEEP = ["attention", "--device", "cpu", "--impl", "naive", "--seq-lens", "64:2048:x2", "--heads", "2",
         "--head-dim", "16", "--no-calibrate", "--no-memory", "--max-time", "0.5", "--no-history", "--threads", "1"]


def records(path: Path) -> list[dict]:
    out = []
    for line in path.read_bytes().splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict) and obj.get("kind") != "header":
            out.append(obj)
    return out


def start(out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([*XFBENCH, *SWEEP, "--out", str(out), *extra], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "NO_COLOR": "1"})


def wait_for_records(path: Path, n: int, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists() and len(records(path)) >= n:
            return
        time.sleep(0.05)
    raise SystemExit(f"{path}: no {n} records after {timeout} s")


def leftovers(pid: int) -> list[int]:
    return [p.pid for p in psutil.process_iter(["cmdline"])
            if p.pid != os.getpid() and "xfbench" in " ".join(p.info["cmdline"] or []) and str(pid) != str(p.pid)
            and "reliability_demo" not in " ".join(p.info["cmdline"] or [])]


def kill_and_resume(work: Path) -> None:
    out = work / "killed"
    p = start(out)
    wait_for_records(out / "results.jsonl", 3)
    p.kill()
    p.wait()
    before = records(out / "results.jsonl")
    load = subprocess.run([*XFBENCH, "report", str(out), "--markdown", "-"], capture_output=True, text=True)
    print(f"[SIGKILL] killed after {len(before)} of 6 cases (exit {p.returncode}); "
          f"`xfbench report --markdown -` on it: exit {load.returncode}, {load.stdout.count('| naive')} table rows")
    res = subprocess.run([*XFBENCH, *SWEEP, "--out", str(out), "--resume"], capture_output=True, text=True)
    first = res.stdout.splitlines()[0] if res.stdout else ""
    after = records(out / "results.jsonl")
    counts = collections.Counter(r["case_id"] for r in after)
    print(f"[resume] exit {res.returncode}: {first!r}")
    print(f"[resume] final file: {len(after)} records, {len(counts)} distinct cases, "
          f"most copies of one case: {max(counts.values())}; sizes {sorted(int(r['size']) for r in after)}")


def interrupt(work: Path, sig: int) -> None:
    name = signal.Signals(sig).name
    out = work / name.lower()
    p = start(out)
    wait_for_records(out / "results.jsonl", 2)
    p.send_signal(sig)
    stdout, stderr = p.communicate(timeout=120)
    recs = records(out / "results.jsonl")
    html = (out / "report.html").read_text() if (out / "report.html").exists() else ""
    shown = sum(1 for r in recs if f"N={int(r['size'])}" in html or str(int(r["size"])) in html)
    last = [ln for ln in stdout.splitlines() if ln.startswith("interrupted")]
    time.sleep(0.5)
    left = [c for c in psutil.process_iter(["cmdline"]) if str(out) in " ".join(c.info["cmdline"] or [])]
    print(f"[{name}] exit {p.returncode}; {len(recs)} records in results.jsonl, report.html "
          f"{'written' if html else 'MISSING'} ({shown} of them in it); processes left: {len(left)}")
    print(f"[{name}] last line: {last[-1] if last else stderr.strip()[-200:]!r}")


def isolate(work: Path) -> None:
    import torch

    from xfbench.profilers.timer import TimerPolicy
    from xfbench.workloads.faulty import FaultyConfig, cases
    from xfbench.workloads.isolate import CHILD_MODULE
    from xfbench.workloads.runner import RunOptions, run_plan

    plan = cases(FaultyConfig(["abort", "hang", "ok"]), torch.device("cpu"))
    policy = TimerPolicy(target_ci_rel=0.05, max_time_s=0.05, min_samples=6, min_window_s=0.002)
    opts = RunOptions(policy=policy, measure_memory=False, calibrate=False, isolate=True)

    def killer() -> None:  # SIGKILL the hung case's child from outside, as a user or a scheduler would
        end = time.monotonic() + 60
        while time.monotonic() < end:
            for c in psutil.Process().children(recursive=True):
                try:
                    if CHILD_MODULE in " ".join(c.cmdline()) and "-hang-" in " ".join(c.cmdline()):
                        time.sleep(0.5)
                        os.kill(c.pid, signal.SIGKILL)
                        return
                except (psutil.Error, ProcessLookupError):
                    pass
            time.sleep(0.05)

    t = threading.Thread(target=killer)
    t.start()
    recs = run_plan(plan, work / "isolate" / "results.jsonl", command="demo", opts=opts)
    t.join()
    for r in recs:
        what = r.reason or f"median {r.time.median_s:.3g} s"
        print(f"[--isolate] {r.variant}: {r.status}: {what[:150]!r}")
    t0 = time.monotonic()
    recs = run_plan(cases(FaultyConfig(["hang", "ok"]), torch.device("cpu")), work / "timeout" / "results.jsonl",
                    command="demo", opts=RunOptions(policy=policy, measure_memory=False, calibrate=False,
                                                    case_timeout_s=3.0))
    for r in recs:
        print(f"[--case-timeout 3] {r.variant}: {r.status} after {r.wall_s:.1f} s: {(r.reason or 'ok')!r}")
    print(f"[--case-timeout 3] whole plan {time.monotonic() - t0:.1f} s")


def two_writers(work: Path) -> None:
    out = work / "two"
    first = start(out)
    wait_for_records(out / "results.jsonl", 1)
    second = subprocess.run([*XFBENCH, *SWEEP, "--out", str(out), "--resume"], capture_output=True, text=True)
    third = subprocess.run([*XFBENCH, *SWEEP, "--out", str(out)], capture_output=True, text=True)
    first.communicate(timeout=300)
    counts = collections.Counter(r["case_id"] for r in records(out / "results.jsonl"))
    print(f"[two writers] second (--resume) exit {second.returncode}: {second.stderr.strip()!r}")
    print(f"[two writers] third (no --resume) exit {third.returncode}: {third.stderr.strip()!r}")
    print(f"[two writers] first exit {first.returncode}; file: {sum(counts.values())} records, "
          f"{len(counts)} cases, most copies of one case {max(counts.values())}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=None)
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="xfbench-reliability-"))
    os.environ.setdefault("XFBENCH_CACHE_DIR", str(work / "cache"))
    print(f"work folder: {work}")
    kill_and_resume(work)
    interrupt(work, signal.SIGINT)
    interrupt(work, signal.SIGTERM)
    isolate(work)
    two_writers(work)


if __name__ == "__main__":
    main()
