"""Startup cost of `xfbench --help` against the floor `python -c "import typer, rich"`.

The design rule is that `--help` and `--version` never import torch. This prints the
median wall time of both commands (interleaved runs, one discarded warm run each), their
ratio against the goal, and whether `--help` pulls torch in. A benchmark, not a test:
it exits 0 unless something crashes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

GOAL_RATIO = 1.15  # xfbench --help may cost at most 1.15x the bare typer + rich import (issue 7)
MIN_RUNS = 10

# Runs the app's --help in-process and reports which heavy modules got imported.
TORCH_PROBE = """
import sys
from xfbench.cli.main import app
sys.argv = ["xfbench", "{flag}"]
try:
    app()
except SystemExit:
    pass
print("IMPORTED", "torch" in sys.modules, "numpy" in sys.modules)
"""


# Both commands start as a user's would: with bytecode caches. An installed package has them
# (pip compiles at install time); an editable checkout writes them on its first run, unless
# PYTHONDONTWRITEBYTECODE is set (it is on some CI images), which would charge xfbench ~4 ms
# of compiling its own sources on every start while typer's site-packages .pyc files are used.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def wall_time(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
    return elapsed


def time_pair(cli: list[str], floor: list[str], runs: int) -> tuple[list[float], list[float]]:
    """Interleave the two commands (alternating which goes first) after one discarded warm run each."""
    wall_time(cli)
    wall_time(floor)
    a: list[float] = []
    b: list[float] = []
    for i in range(runs):
        if i % 2 == 0:
            a.append(wall_time(cli))
            b.append(wall_time(floor))
        else:
            b.append(wall_time(floor))
            a.append(wall_time(cli))
    return a, b


def probe_imports(flag: str) -> tuple[bool, bool]:
    """(torch imported, numpy imported) after running the app with `flag` in a fresh interpreter."""
    out = subprocess.run(
        [sys.executable, "-c", TORCH_PROBE.format(flag=flag)], capture_output=True, text=True, check=True
    ).stdout
    line = next(x for x in reversed(out.splitlines()) if x.startswith("IMPORTED"))
    _, torch_in, numpy_in = line.split()
    return torch_in == "True", numpy_in == "True"


def ms(xs: list[float]) -> str:
    return f"median {statistics.median(xs) * 1e3:7.1f} ms  min {min(xs) * 1e3:7.1f} ms  max {max(xs) * 1e3:7.1f} ms"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15, help=f"timed runs of each command (at least {MIN_RUNS})")
    args = ap.parse_args()
    runs = max(MIN_RUNS, args.runs)

    exe = Path(sys.executable).parent / "xfbench"
    if not exe.exists():
        print(f"console script not found: {exe} (pip install -e . first)")
        return 1
    cli = [str(exe), "--help"]
    floor = [sys.executable, "-c", "import typer, rich"]
    a, b = time_pair(cli, floor, runs)
    ratio = statistics.median(a) / statistics.median(b)

    print(f"python {sys.version.split()[0]}  runs={runs} each (interleaved, 1 warm run discarded)")
    print(f"{'xfbench --help':32} {ms(a)}")
    print(f"{'python -c ' + repr('import typer, rich'):32} {ms(b)}")
    verdict = "PASS" if ratio <= GOAL_RATIO else "FAIL"
    print(f"ratio of medians {ratio:.2f} (goal <= {GOAL_RATIO})  {verdict}")

    for flag in ("--help", "--version"):
        torch_in, numpy_in = probe_imports(flag)
        verdict = "FAIL" if torch_in else "PASS"
        print(f"app {flag}: torch imported={torch_in} numpy imported={numpy_in}  {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
