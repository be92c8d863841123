"""How fast `xfbench report` renders a large results file, and how big its HTML is.

Builds a results file of 1,000 records from the checked-in attention fixture (10 tables x 4
implementations x 25 lengths: each record a copy of a real one at the nearest length, its times,
samples and memory scaled as N^2, so the fits and figures have real work to do), then runs
`xfbench report FILE --html OUT` in a fresh process, as a user would, REPEAT times.

Goals (issue 8): wall time <= 3 s on 2 cores; HTML <= 2 MB.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "report_attention.jsonl"
RECORDS = 1000
TABLES, LENGTHS = 10, 25
REPEAT = 3
GOAL_S, GOAL_BYTES = 3.0, 2 * 2**20


def big_results(path: Path) -> int:
    lines = [json.loads(x) for x in FIXTURE.read_text().splitlines()]
    header, recs = lines[0], [x for x in lines[1:] if x.get("kind") == "record"]
    variants = sorted({r["variant"] for r in recs})
    out = [header]
    for t in range(TABLES):
        for v in variants:
            mine = sorted((r for r in recs if r["variant"] == v), key=lambda r: r["size"])
            for i in range(LENGTHS):
                n = 128 + 64 * i
                base = min(mine, key=lambda r: abs(r["size"] - n))
                f = (n / base["size"]) ** 2
                r = json.loads(json.dumps(base))
                r["label"] = f"{base['label']} · table {t}"
                r["size"] = n
                r["params"]["seq_len"] = n
                r["case_id"] = f"bench{t:02d}{v[:4]}{i:03d}"
                tm = r.get("time")
                if tm:
                    for k in ("median_s", "mean_s", "min_s", "max_s", "p10_s", "p90_s", "iqr_s", "ci_low_s",
                              "ci_high_s", "total_s"):
                        tm[k] *= f
                    tm["samples_s"] = [s * f for s in tm["samples_s"]]
                if r.get("memory") and r["memory"].get("peak_bytes"):
                    r["memory"]["peak_bytes"] = int(r["memory"]["peak_bytes"] * f)
                out.append(r)
    path.write_text("".join(json.dumps(x) + "\n" for x in out))
    return len(out) - 1


def main() -> int:
    exe = Path(sys.executable).parent / "xfbench"
    with tempfile.TemporaryDirectory() as tmp:
        results = Path(tmp) / "results.jsonl"
        n = big_results(results)
        html = Path(tmp) / "report.html"
        walls = []
        env = {**os.environ, "SOURCE_DATE_EPOCH": "0"}
        for _ in range(REPEAT):
            t0 = time.perf_counter()
            subprocess.run([str(exe), "report", str(results), "--html", str(html)], check=True, env=env,
                           stdout=subprocess.DEVNULL)
            walls.append(time.perf_counter() - t0)
        size = html.stat().st_size
        svgs = html.read_text().count("<svg")
    wall = statistics.median(walls)
    print(f"records: {n} ({results.name}: {TABLES} tables x 4 implementations x {LENGTHS} lengths)")
    print(f"xfbench report --html: wall {wall:.2f} s median of {REPEAT} "
          f"({', '.join(f'{w:.2f}' for w in walls)}) on {os.cpu_count()} cores; goal <= {GOAL_S:.0f} s: "
          f"{'PASS' if wall <= GOAL_S else 'FAIL'}")
    print(f"report.html: {size:,} bytes ({size / 2**20:.2f} MiB), {svgs} inline SVG figures; goal <= 2 MiB: "
          f"{'PASS' if size <= GOAL_BYTES else 'FAIL'}")
    return 0 if wall <= GOAL_S and size <= GOAL_BYTES else 1


if __name__ == "__main__":
    sys.exit(main())
