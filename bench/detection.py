"""False alarms and detection of `xfbench compare` on this machine, with real runs.

Sequential (default): a baseline run of a suite (--repeat K, fresh processes), then TRIES A/A
comparisons (the same code run again, back to back) and TRIES comparisons against the same code
with every step truly slowed by XFBENCH_PLANT_SLOWDOWN (default 10%). With --ab each try is an
`xfbench ab` of K interleaved rounds instead (A/A: the same python on both sides; planted: B a
python that sets XFBENCH_PLANT_SLOWDOWN). Prints, per try, the cases compared, the regressions found
and the expected false-positive rate compare printed; then the false-alarm count (goal: 0) and the
detection rate. Run alone: it is timing-sensitive.

    python bench/detection.py [--suite quick] [--repeat 5] [--tries 5] [--slowdown 0.1] [--ab] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def xfbench(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "xfbench", *args], capture_output=True, text=True,
                          env={**os.environ, "NO_COLOR": "1", **(env or {})})


def run(suite: str, out: Path, repeat: int, env: dict | None = None) -> float:
    t0 = time.perf_counter()
    res = xfbench("run", suite, "--out", str(out), "--repeat", str(repeat), "--no-html", "--no-history",
                  "--device", "cpu", env=env)
    if res.returncode not in (0, 3):
        sys.exit(f"run failed ({res.returncode}): {res.stderr.strip()[-500:]}")
    return time.perf_counter() - t0


def compare(base: Path, cur: Path, js: Path) -> tuple[int, dict]:
    res = xfbench("compare", str(base), str(cur), "--json", str(js), "--no-history-noise")
    if res.returncode not in (0, 1):
        sys.exit(f"compare failed ({res.returncode}): {res.stderr.strip()}")
    return res.returncode, json.loads(js.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="quick")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--tries", type=int, default=5)
    ap.add_argument("--slowdown", type=float, default=0.10)
    ap.add_argument("--ab", action="store_true", help="each try an interleaved `xfbench ab` of --repeat rounds")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    root = args.out or Path(tempfile.mkdtemp(prefix="xfbench-detection-"))
    base = root / "base"
    if not args.ab:
        print(f"baseline: {args.suite} --repeat {args.repeat} -> {base} ({run(args.suite, base, args.repeat):.0f} s)")
    slow_python = root / "slow-python"
    slow_python.parent.mkdir(parents=True, exist_ok=True)
    slow_python.write_text(f'#!/bin/sh\nXFBENCH_PLANT_SLOWDOWN={args.slowdown} exec "{sys.executable}" "$@"\n')
    slow_python.chmod(0o755)
    alarms = detected = 0
    for kind in ("A/A", "planted"):
        env = {"XFBENCH_PLANT_SLOWDOWN": str(args.slowdown)} if kind == "planted" else None
        for i in range(1, args.tries + 1):
            cur = root / f"{'aa' if kind == 'A/A' else 'slow'}-{i}"
            js = root / f"{cur.name}.json"
            if args.ab:
                t0 = time.perf_counter()
                b = str(slow_python) if kind == "planted" else sys.executable
                res = xfbench("ab", "--a", sys.executable, "--b", b, args.suite, "--rounds", str(args.repeat),
                              "--device", "cpu", "--out", str(cur), "--json", str(js))
                if res.returncode not in (0, 1):
                    sys.exit(f"ab failed ({res.returncode}): {res.stderr.strip()[-500:]}")
                rc, data, wall = res.returncode, json.loads(js.read_text()), time.perf_counter() - t0
            else:
                wall = run(args.suite, cur, args.repeat, env)
                rc, data = compare(base, cur, js)
            cases = data["cases"]
            slower = [c for c in cases if c["verdict"] == "slower"]
            faster = [c for c in cases if c["verdict"] == "faster"]
            fprs = [c["fpr"] for c in cases if c.get("fpr") is not None]
            changes = ", ".join(f"{100 * (c['ratio'] - 1):+.1f}%" for c in cases)
            names = "; ".join(f"{c['label']} · {c['variant']} · {c['size_name']}={c['size']}" for c in slower)
            print(f"{kind} {i}: exit {rc}, {len(cases)} cases compared, {len(slower)} slower, {len(faster)} faster"
                  f"{' (' + names + ')' if names else ''}; expected FPR per case max {max(fprs, default=0):.2%}, "
                  f"sum {sum(fprs):.2%}; changes {changes} ({wall:.0f} s)")
            if kind == "A/A":
                alarms += bool(slower or faster)
            else:
                detected += rc == 1
    print(f"A/A: {alarms} of {args.tries} comparisons raised a false alarm (goal 0)")
    print(f"planted {args.slowdown:.0%} slowdown: detected (exit 1) in {detected} of {args.tries} tries")
    print(f"run folders: {root}")


if __name__ == "__main__":
    main()
