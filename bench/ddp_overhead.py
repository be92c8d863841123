"""DDP overhead: xfbench's DDP step on 2 gloo ranks against a minimal hand-written DDP script under torchrun.

Each round runs, as subprocesses and in alternating order (interleaved A/B):

  xfbench  `xfbench parallel --strategy ddp --world-sizes 2 --presets 10M --device cpu
           --collectives none --no-exposed-comm --no-memory --no-html --out TMP`; its figure is
           the ddp record's time.median_s (median over timed windows of the slowest rank's
           window, one step per window at this size) from TMP/results.jsonl.
  hand     `torchrun --standalone --nproc-per-node 2 bench/minimal_ddp.py` with the batch and
           seq_len read from that record's params, as many timed steps as xfbench's latest run
           timed; its figure is the median over steps of the slowest rank's step.

Both sides run the same GPT (xfbench's workloads/gpt.py), AdamW settings and torch threads
per rank (usable cores / 2; OMP_NUM_THREADS is set to the same for both), gloo on loopback
(GLOO_SOCKET_IFNAME=lo). Prints every round, the median over rounds of each side, and the
ratio hand / xfbench step time (= xfbench's tokens/s relative to the hand script's; goal
>= 0.95: xfbench adds at most ~5%). A benchmark, not a test: exits 0 unless a run fails.

Other processes on a shared machine only add time, so every run prints how many cores
processes outside this benchmark kept busy meanwhile (system busy time minus this process
and its waited-for descendants, over the run's wall time).

    python bench/ddp_overhead.py                 # 3 rounds, --max-time 20 (about 4 min on 2 cores)
    python bench/ddp_overhead.py --quick         # 1 round, short
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

GOAL_RATIO = 0.95  # hand-written step time / xfbench's DDP step time (issue 9)
PRESET = "10M"
RANKS = 2
HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent


def usable_cores() -> int:
    """As xfbench's profilers.contention.usable_cores: the affinity mask, not all cores."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def threads_per_rank() -> int:
    """As xfbench's workloads.launch.threads_per_rank for RANKS ranks on this host."""
    return max(1, usable_cores() // RANKS)


def _busy_s() -> float:
    t = psutil.cpu_times()
    return t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)


def _family_s() -> float:
    t = os.times()  # children_*: every descendant waited for (torchrun's and xfbench's ranks included)
    return t.user + t.system + t.children_user + t.children_system


def run(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Run `cmd`; (wall seconds, cores other processes kept busy meanwhile)."""
    busy0, fam0, t0 = _busy_s(), _family_s(), time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.strip()[-800:]}")
    other = max(0.0, (_busy_s() - busy0) - (_family_s() - fam0))
    return wall, other / wall


def spread(xs: list[float]) -> float:
    """IQR over median (the same quartile convention for both sides: statistics' exclusive method)."""
    if len(xs) < 2:
        return 0.0
    q1, _, q3 = statistics.quantiles(xs, n=4)
    return (q3 - q1) / statistics.median(xs)


def run_xfbench(args, env: dict[str, str]) -> dict:
    with tempfile.TemporaryDirectory(prefix="xfbench-ddp-overhead-") as tmp:
        out = Path(tmp) / "run"
        cmd = [
            str(BIN / "xfbench"),
            "parallel",
            "--strategy",
            "ddp",
            "--world-sizes",
            str(RANKS),
            "--presets",
            PRESET,
            "--device",
            "cpu",
            "--collectives",
            "none",
            "--no-exposed-comm",
            "--no-memory",
            "--no-html",
            "--max-time",
            f"{args.max_time:g}",
            "--out",
            str(out),
        ]
        if args.batch is not None:
            cmd += ["--batch", str(args.batch)]
        if args.seq_len is not None:
            cmd += ["--seq-len", str(args.seq_len)]
        wall, other = run(cmd, env)
        lines = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines() if x.strip()]
    recs = [r for r in lines if r.get("kind") != "header" and r.get("variant") == "ddp"]
    if len(recs) != 1 or recs[0]["status"] != "ok":
        raise RuntimeError(f"xfbench wrote no ok ddp record: {[(r.get('status'), r.get('reason')) for r in recs]}")
    rec = recs[0]
    t = rec["time"]
    return {
        "median_s": t["median_s"],
        "n": t["n"],
        "calls": t["calls_per_sample"],
        "warmup": t["warmup_calls"],
        "spread": spread(t["samples_s"]),
        "ci_rel": t["ci_rel"],
        "converged": t["converged"],
        "batch": rec["params"]["batch"],
        "seq_len": rec["params"]["seq_len"],
        "world_size": rec["params"]["world_size"],
        "threads": rec["info"].get("threads_per_rank"),
        "optimizer": rec["info"].get("optimizer"),
        "wall_s": wall,
        "other": other,
    }


def run_hand(args, params: dict, steps: int, env: dict[str, str]) -> dict:
    with tempfile.TemporaryDirectory(prefix="minimal-ddp-") as tmp:
        out = Path(tmp) / "hand.json"
        cmd = [
            str(BIN / "torchrun"),
            "--standalone",
            "--nproc-per-node",
            str(RANKS),
            str(HERE / "minimal_ddp.py"),
            "--out",
            str(out),
            "--preset",
            PRESET,
            "--batch",
            str(params["batch"]),
            "--seq-len",
            str(params["seq_len"]),
            "--warmup",
            str(args.warmup),
            "--steps",
            str(steps),
        ]
        wall, other = run(cmd, env)
        res = json.loads(out.read_text())
    return hand_figures(res, wall, other)


def hand_figures(res: dict, wall: float, other: float) -> dict:
    """The hand script's JSON line as this benchmark prints it."""
    times = res["step_times_s"]
    return {
        "median_s": statistics.median(times),
        # each rank's steps run back to back: their mean is that rank's timed loop / steps (a throughput view)
        "loop_s": max(statistics.fmean(r) for r in res["rank_step_times_s"]),
        "n": len(times),
        "warmup": res["warmup_steps"],
        "spread": spread(times),
        "batch": res["batch"],
        "seq_len": res["seq_len"],
        "world_size": res["world_size"],
        "threads": [res["threads"]],
        "optimizer": res["optimizer"],
        "wall_s": wall,
        "other": other,
    }


def describe(who: str, r: dict) -> str:
    if who == "xfbench":
        ci = f"CI ±{r['ci_rel']:.1%}{'' if r['converged'] else ', not converged'}"
        how = f"median of n={r['n']} windows x{r['calls']} step, {r['warmup']} warm-up, {ci}"
    else:
        how = (
            f"median of {r['n']} steps, each the slowest rank's, {r['warmup']} warm-up; slowest rank's "
            f"timed loop / steps {r['loop_s'] * 1e3:.1f} ms"
        )
    return (
        f"{r['median_s'] * 1e3:8.1f} ms/step  IQR/median {r['spread']:5.1%}  ({how}; "
        f"run {r['wall_s']:.0f} s; other processes busy cores: {r['other']:.2f})"
    )


def summary(xs: list[float]) -> str:
    return (
        f"median {statistics.median(xs) * 1e3:8.1f} ms/step  min {min(xs) * 1e3:8.1f}  "
        f"max {max(xs) * 1e3:8.1f}  over {len(xs)} round(s)"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds of both sides")
    ap.add_argument("--quick", action="store_true", help="1 round, --max-time 4, 2 warm-up steps: shows it works")
    ap.add_argument("--max-time", type=float, default=20.0, help="xfbench's timer cap per run (s)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps of the hand script per run")
    ap.add_argument(
        "--steps",
        type=int,
        default=None,
        help="timed steps of the hand script [default: as many as xfbench's latest run timed]",
    )
    ap.add_argument("--batch", type=int, default=None, help="B per rank [default: xfbench's, 8]")
    ap.add_argument("--seq-len", type=int, default=None, help="T [default: xfbench's, the preset's context]")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.max_time, args.warmup = 1, min(args.max_time, 4.0), min(args.warmup, 2)
    for exe in ("xfbench", "torchrun"):
        if not (BIN / exe).exists():
            print(f"{exe} not found beside {sys.executable} (pip install -e . into this environment first)")
            return 1

    threads = threads_per_rank()
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": str(threads)}
    print(
        f"{PRESET} DDP train, {RANKS} gloo ranks on the CPU, {threads} torch thread(s) per rank "
        f"({usable_cores()} usable cores / {RANKS}; OMP_NUM_THREADS={threads} for both), "
        f"{args.rounds} interleaved round(s)"
    )
    ours: list[dict] = []
    theirs: list[dict] = []
    params: dict | None = None
    try:
        for r in range(args.rounds):
            # round 1 opens with xfbench: its record says which batch and seq_len the hand side runs
            order = ("xfbench", "hand") if r % 2 == 0 else ("hand", "xfbench")
            for who in order:
                if who == "xfbench":
                    res = run_xfbench(args, env)
                    if params is not None and (res["batch"], res["seq_len"]) != (params["batch"], params["seq_len"]):
                        raise RuntimeError(f"xfbench changed its shape between rounds: {res} vs {params}")
                    params = res
                    ours.append(res)
                else:
                    res = run_hand(args, params, args.steps or params["n"], env)
                    theirs.append(res)
                print(f"  round {r + 1} {who:8} {describe(who, res)}", flush=True)
    except RuntimeError as e:
        print(f"failed: {e}")
        return 1

    a, b = ours[-1], theirs[-1]
    same = all(a[k] == b[k] for k in ("batch", "seq_len", "world_size", "threads", "optimizer"))
    print(
        f"both sides: B={a['batch']}/rank T={a['seq_len']} world size {a['world_size']}, threads per rank "
        f"xfbench {a['threads']} hand {b['threads']}, optimizer xfbench '{a['optimizer']}' hand "
        f"'{b['optimizer']}'  {'same' if same else 'DIFFERENT: the ratio compares unlike runs'}"
    )
    t_ours = statistics.median(x["median_s"] for x in ours)
    t_theirs = statistics.median(x["median_s"] for x in theirs)
    print(f"{'xfbench parallel (ddp)':24} {summary([x['median_s'] for x in ours])}")
    print(f"{'hand (minimal_ddp.py)':24} {summary([x['median_s'] for x in theirs])}")
    ratio = t_theirs / t_ours
    per_round = [h["median_s"] / x["median_s"] for x, h in zip(ours, theirs, strict=False)]
    rounds = f"; per round {min(per_round):.3f}..{max(per_round):.3f}" if len(per_round) > 1 else ""
    verdict = "PASS" if ratio >= GOAL_RATIO and same else "FAIL"
    print(
        f"hand / xfbench step time (medians over rounds) = {ratio:.3f}{rounds}; = xfbench tokens/s relative "
        f"to the hand script's (goal >= {GOAL_RATIO})  {verdict}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
