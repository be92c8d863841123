"""How fast a large results file loads, and how much memory that takes.

Builds a ~50 MB results file in a temporary folder, as months of scheduled runs appended to one
folder would leave it: the checked-in fixtures (tests/fixtures/report_*.jsonl: attention, model,
data-parallel and profiled runs, schema versions 2 to 4) repeated segment after segment, each
copy a run of its own (a fresh run_id in its header and in every record it wrote). Then, each in
a fresh Python process (so the peak is that of one load, not of this script):

- `load_results` (what `report`, `compare` and the sweep commands read),
- `load_index` (what `--resume` reads to find the cases still to run: case ids and statuses),
- `resume`: load_index, then RunLock.check (the full validation of every line a --resume does,
  under the lock, before it appends: no records kept),

timed best of REPEAT (time.perf_counter around the call, in the child), and the child's peak
resident memory (resource.getrusage(RUSAGE_SELF).ru_maxrss after its loads: the interpreter,
pydantic and the loaded run together).

Goals (issue 12): load <= 2 s and peak RSS <= 300 MB on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = sorted((ROOT / "tests" / "fixtures").glob("report_*.jsonl"))
TARGET_BYTES = 50 * 10**6
REPEAT = 3
GOAL_S, GOAL_RSS_MB = 2.0, 300.0


def build(path: Path, target_bytes: int = TARGET_BYTES) -> tuple[int, int, int]:
    """Write a results file of about `target_bytes`: (bytes, records, segments) written."""
    segments = []  # each fixture's segments: [header, its records...] as parsed lines
    for f in FIXTURES:
        for line in f.read_text(encoding="utf-8").splitlines():
            obj = json.loads(line)
            if obj.get("kind") == "header":
                segments.append([obj])
            else:
                segments[-1].append(obj)
    size = records = count = 0
    with open(path, "w", encoding="utf-8") as fh:
        while size < target_bytes:
            for seg in segments:
                run_id = f"bench-{count:06d}"
                count += 1
                for obj in seg:
                    if obj.get("kind") == "header" or obj.get("run_id") is not None:
                        obj = {**obj, "run_id": run_id}
                    if obj.get("kind") != "header":
                        records += 1
                    line = json.dumps(obj, separators=(",", ":"), allow_nan=False) + "\n"
                    fh.write(line)
                    size += len(line.encode("utf-8"))
    return size, records, count


_CHILD = """
import resource, sys, time
from xfbench.reports import store

def resume(path):  # what --resume reads, wired as store.py says: the index, then the lock's check
    done = store.load_index(path)
    with store.RunLock(path) as lock:
        lock.check()
    return done

fn = resume if sys.argv[2] == "resume" else getattr(store, sys.argv[2])
best = float("inf")
for _ in range(int(sys.argv[3])):
    t0 = time.perf_counter()
    out = fn(sys.argv[1])
    best = min(best, time.perf_counter() - t0)
    n = len(out.records) if hasattr(out, "records") else len(out)
    del out
print(best, n, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def measure(path: Path, fn: str, repeat: int) -> tuple[float, int, float]:
    """(best seconds, records loaded, peak RSS in MB) of `store.<fn>(path)` in a fresh process."""
    out = subprocess.run([sys.executable, "-c", _CHILD, str(path), fn, str(repeat)],
                         check=True, capture_output=True, text=True).stdout.split()
    return float(out[0]), int(out[1]), float(out[2])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=TARGET_BYTES / 10**6, help="size of the file to build, MB")
    ap.add_argument("--repeat", type=int, default=REPEAT)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "results.jsonl"
        size, records, segments = build(path, int(args.mb * 10**6))
        print(f"file: {size / 10**6:.1f} MB, {records} records in {segments} segments "
              f"(tests/fixtures/report_*.jsonl repeated, fresh run_ids)")
        ok = True
        for fn, what in (("load_results", "report, compare, a sweep's report"),
                         ("load_index", "--resume: which cases are done"),
                         ("resume", "--resume in all: load_index, then RunLock.check validating every line")):
            seconds, n, rss = measure(path, fn, args.repeat)
            good = seconds <= GOAL_S and rss <= GOAL_RSS_MB
            ok &= good
            print(f"{fn} ({what}): {seconds:.2f} s best of {args.repeat} (perf_counter in a fresh process; "
                  f"goal <= {GOAL_S:g} s), peak RSS {rss:.0f} MB (ru_maxrss of that process; goal <= "
                  f"{GOAL_RSS_MB:g} MB), {n} records{'' if good else '  <- over the goal'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
