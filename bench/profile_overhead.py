"""Does --profile change the timed figures? It should not: its pass runs after each case's timed phase.

Runs the same attention sweep with and without --profile, alternating (A B A B ...: the machine's
drift cancels), each in a fresh process, and prints per case the timed medians of both arms, the
ratio of their geometric means (goal: within the between-run noise, which it prints beside it),
and what the profiled pass itself measured (its step time against the timed median: the
profiler's overhead inside its own pass, never inside the timed one).

    python bench/profile_overhead.py [--rounds 3] [--seq-lens 512,1024] [--threads 1]
"""

from __future__ import annotations

import argparse
import math
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from xfbench.reports.store import load_results


def sweep(out: Path, profile: bool, args) -> dict[str, tuple[str, float, float | None]]:
    cmd = [sys.executable, "-m", "xfbench", "attention", "--seq-lens", args.seq_lens, "--impl", args.impl,
           "--device", "cpu", "--max-time", str(args.max_time), "--threads", str(args.threads), "--no-html",
           "--no-history", "--out", str(out)] + (["--profile"] if profile else [])
    subprocess.run(cmd, check=True, capture_output=True)
    return {r.case_id: (f"{r.variant} N={r.size}", r.time.median_s,
                        (r.profile or {}).get("overhead_rel")) for r in load_results(out).records}


def geo(xs: list[float]) -> float:
    return math.exp(statistics.fmean(math.log(x) for x in xs))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seq-lens", default="512,1024")
    ap.add_argument("--impl", default="naive,sdpa")
    ap.add_argument("--max-time", type=float, default=2.0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    plain: dict[str, list[float]] = {}
    prof: dict[str, list[float]] = {}
    over: dict[str, list[float]] = {}
    names: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.rounds):
            for arm, on in (("plain", False), ("profile", True)):
                got = sweep(Path(tmp) / f"{arm}{i}", on, args)
                for cid, (name, med, ov) in got.items():
                    names[cid] = name
                    (prof if on else plain).setdefault(cid, []).append(med)
                    if ov is not None:
                        over.setdefault(cid, []).append(ov)
            print(f"round {i + 1}/{args.rounds} done", flush=True)
    print(f"\n{'case':16} {'plain medians (ms)':28} {'with --profile (ms)':28} {'ratio':>6} {'run sd':>7} "
          f"{'pass overhead':>13}")
    for cid, name in names.items():
        a, b = plain[cid], prof[cid]
        sd = statistics.stdev(math.log(x) for x in a + b) if len(a + b) > 2 else float("nan")
        ov = f"{statistics.median(over[cid]):+.1%}" if over.get(cid) else "n/a"
        print(f"{name:16} {' '.join(f'{x * 1e3:.2f}' for x in a):28} {' '.join(f'{x * 1e3:.2f}' for x in b):28} "
              f"{geo(b) / geo(a):6.3f} {sd:7.1%} {ov:>13}")
    print("\nratio: geometric mean of the timed medians with --profile / without (1 = unchanged); run sd: the "
          "spread of log medians over all runs (the between-run noise the ratio is to be read against); pass "
          "overhead: the profiled pass's step time / the timed median - 1 (inside its own pass)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
