"""`xfbench compare`, `ab` and `history` end to end: real A/A runs, a real planted slowdown, bad input."""

from __future__ import annotations

import json
import os
import stat
import statistics
import sys
from pathlib import Path

import pytest

from tests.conftest import run_cli
from xfbench.reports.schema import Header, Record, TimeStats
from xfbench.reports.store import ResultsWriter, load_results

FIXTURES = Path(__file__).parent / "fixtures"

# Real cases steady enough on a 2-core CPU for a 10% change to show: one thread (two gave medians
# up to 72% apart between processes), attention at N = 256 and 512.
STEADY = """
name = "steady"
[run]
device = "cpu"
max_time = 0.3
target_ci = 0.01
threads = 1
memory = false
calibrate = false
[compare]
threshold = "5%"
[[cases]]
name = "attn"
workload = "attention"
seq_lens = [256, 512]
impl = ["naive", "sdpa"]
"""


def _suite(tmp_path: Path, impls: str = '"naive", "sdpa"') -> str:
    path = tmp_path / "steady.toml"
    path.write_text(STEADY.replace('impl = ["naive", "sdpa"]', f"impl = [{impls}]"))
    return str(path)


# The order of the A/A test's six repeats: each side's three spread over the whole job. Run as two
# blocks (AAABBB, two `run --repeat 3`), a machine whose speed drifts (a neighbour's load starting,
# the CPU warming) puts the whole drift between the sides and little within each, and the t-test
# calls it a change: CI saw +12.8% "slower" so. Here a linear drift shifts the sides' mean slots by
# 1/3 of a run (2.33 vs 2.67; AAABBB: 3 runs), and a step at any point between runs falls on both
# sides (at most 1 of 3 runs apart); what is left of the drift lands inside each side, where it
# widens the between-run CI instead of moving the estimate.
AA_ORDER = "ABBAAB"


def _repeat_child(suite: str, out: Path, index: tuple[int, int]) -> None:
    """One repeat of `xfbench run SUITE --repeat K`: the very child process that command starts
    (cli.suite_options.child_argv: `python -m xfbench run SUITE --out OUT --repeat-index I/K`), appending
    to OUT, so the two sides' repeats can take turns."""
    import subprocess

    from xfbench.cli.suite_options import child_argv
    from xfbench.cli.suite_run import SuiteOverrides

    argv = child_argv(sys.executable, suite, out, index, SuiteOverrides())
    res = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"},
                         timeout=300)
    assert res.returncode == 0, res.stderr + res.stdout


def test_aa_real_runs_with_repeats_is_no_regression(tmp_path):
    """The same code run twice, three fresh processes each: no regression at the default gate, and the
    comparison says its noise came from the runs. The repeats of the two sides take turns (AA_ORDER),
    so a machine that drifts during the test moves both sides alike."""
    suite = _suite(tmp_path)
    base, same = tmp_path / "base", tmp_path / "same"
    done = {"A": 0, "B": 0}
    for side in AA_ORDER:
        done[side] += 1
        _repeat_child(suite, base if side == "A" else same, (done[side], 3))
    for out in (base, same):  # each side: three repeats of one suite run, as `run --repeat 3` leaves them
        headers = load_results(out).headers
        assert sorted((h.suite["repeat"], h.suite["repeats"], h.suite["interleaved"]) for h in headers) == [
            (1, 3, False), (2, 3, False), (3, 3, False)]
    aa = run_cli("compare", str(base), str(same))
    assert aa.returncode == 0, aa.stdout + aa.stderr
    assert "regression:" not in aa.stdout and "between-run t-test of 3+3 runs" in aa.stdout


# The planted slowdown of this test: real (every step of B busy-waits this share of its own time:
# here B takes twice as long), and far enough beyond the noise between runs that the verdict does
# not hang on the machine's luck. One run of the n rounds slowed by a burst of load (CI saw one run
# of 8 take 1.3-1.7x on each case, d ~ log 1.5) leaves the paired t-test t = n*mu/d - 1 (the burst
# on A; + 1 on B) for a log change mu. A planted 30% over 4 rounds: t = 1.6 to 3.6 against the
# critical 5.84 (3 df, alpha 0.01); CI's run gave t = 3.3 and "inconclusive: more runs would tell",
# rightly. A doubling over 6 rounds (2 cases a run, to keep the 12 runs short): t = 9.3 against
# 4.03, and 5.0 for a run twice as slow. Whether a 10% slowdown is caught is a statistical property
# of the machine: bench/detection.py measures its rate (and the false alarms) with real runs.
PLANTED = "1.0"
AB_ROUNDS = 6


def test_ab_catches_a_planted_slowdown_and_names_the_case(tmp_path):
    """`ab` with B a python whose every step truly busy-waits as long again after it
    (XFBENCH_PLANT_SLOWDOWN=1.0): exit 1, the regression named, the Markdown and JSON say so."""
    slow_python = tmp_path / "slow-python"
    slow_python.write_text(f'#!/bin/sh\nXFBENCH_PLANT_SLOWDOWN={PLANTED} exec "{sys.executable}" "$@"\n')
    slow_python.chmod(slow_python.stat().st_mode | stat.S_IEXEC)
    md, js = tmp_path / "ab.md", tmp_path / "ab.json"
    res = run_cli("ab", "--a", sys.executable, "--b", str(slow_python), _suite(tmp_path, '"sdpa"'),
                  "--rounds", str(AB_ROUNDS), "--out", str(tmp_path / "ab"), "--markdown", str(md), "--json", str(js))
    assert res.returncode == 1, res.stdout + res.stderr
    assert res.stdout.count(f"round {AB_ROUNDS}/{AB_ROUNDS}, side B") == 1
    # odd rounds A first, even rounds B first: a steady drift adds to one round's ratio what it takes from the next's
    order = [line for line in res.stdout.splitlines() if line.startswith("round ") and ", side " in line]
    expected = [f"round {r}/{AB_ROUNDS}, side {side}" for r in range(1, AB_ROUNDS + 1)
                for side in ("AB" if r % 2 else "BA")]
    assert order == expected, order
    lines = [line for line in res.stdout.splitlines() if line.startswith("regression: ")]
    assert lines and all(" · N=" in line and ": time +" in line and line.endswith(", slower") for line in lines), \
        res.stdout
    assert any(c["verdict"] == "slower" for c in json.loads(js.read_text())["cases"])
    assert "regression" in md.read_text()
    b = load_results(tmp_path / "ab" / "b")
    assert all(r.info.get("planted_slowdown") == float(PLANTED) for r in b.records)
    assert not any(r.info.get("planted_slowdown") for r in load_results(tmp_path / "ab" / "a").records)


def test_ab_refuses_a_python_without_xfbench(tmp_path):
    res = run_cli("ab", "--a", sys.executable, "--b", str(tmp_path / "nope"), _suite(tmp_path))
    assert res.returncode == 2 and "--b" in res.stderr and "Traceback" not in res.stderr


# --- literal results files: exact verdicts, comparability, exports, history --------------------


def _header(run_id: str, threads: int = 2) -> Header:
    line = json.loads((FIXTURES / "report_attention.jsonl").read_text().splitlines()[0])
    line["environment"]["torch_threads"] = threads
    line["environment"]["calibration"] = None
    return Header.model_validate({**line, "run_id": run_id})


def _record(samples: list[float], run_id: str, case: str = "c1", size: int = 128) -> Record:
    s = sorted(samples)
    q = statistics.quantiles(s, n=10, method="inclusive")
    q4 = statistics.quantiles(s, n=4, method="inclusive")
    med = statistics.median(s)
    time = TimeStats(
        n=len(s), calls_per_sample=1, warmup_calls=1, median_s=med, mean_s=statistics.fmean(s), min_s=s[0],
        max_s=s[-1], p10_s=q[0], p90_s=q[-1], iqr_s=q4[2] - q4[0], iqr_over_median=(q4[2] - q4[0]) / med,
        ci_low_s=s[2], ci_high_s=s[-3], ci_rel=max(med - s[2], s[-3] - med) / med, target_ci_rel=0.02,
        converged=True, total_s=sum(s), clock="perf_counter", samples_s=samples,
    )
    return Record(run_id=run_id, case_id=case, workload="attention", label="attention fwd", variant="naive",
                  size=size, size_name="N", params={"seq_len": size}, device="cpu", status="ok", time=time,
                  metrics={"tokens_per_call": size}, info={"threads": 2})


def _write(path: Path, runs: list[tuple[str, list[Record]]], threads: int = 2) -> Path:
    for run_id, records in runs:
        with ResultsWriter(path, _header(run_id, threads)) as w:
            for r in records:
                r.info["threads"] = threads  # what the case ran with (compare reads it before the header's)
                w.append(r)
    return path


def _samples(center: float, n: int = 20, spread: float = 0.01) -> list[float]:
    """n samples spread evenly over center × [1 - spread, 1 + spread]: literal, no randomness."""
    return [center * (1 - spread + 2 * spread * i / (n - 1)) for i in range(n)]


def _runs(path: Path, name: str, centers: list[float]) -> Path:
    """One segment (run) per center, each with tight literal samples around it."""
    return _write(path, [(f"{name}{i}", [_record(_samples(c), f"{name}{i}")]) for i, c in enumerate(centers)])


def test_literal_runs_exact_verdicts_and_exports(tmp_path):
    quiet = [1.00e-3, 1.01e-3, 0.99e-3]  # three runs a side, 1% apart
    base = _runs(tmp_path / "base.jsonl", "b", quiet)
    slow = _runs(tmp_path / "slow.jsonl", "s", [1.3 * c for c in quiet])
    same = _runs(tmp_path / "same.jsonl", "a", quiet[::-1])
    res = run_cli("compare", str(base), str(slow), "--json", str(tmp_path / "c.json"), "--github-benchmark",
                  str(tmp_path / "gb.json"), "--markdown", str(tmp_path / "c.md"))
    assert res.returncode == 1, res.stdout + res.stderr
    assert "regression: attention fwd · naive · N=128: time +30.0% [" in res.stdout
    data = json.loads((tmp_path / "c.json").read_text())
    assert [c["verdict"] for c in data["cases"]] == ["slower"]
    gb = json.loads((tmp_path / "gb.json").read_text())
    assert gb[0]["unit"] == "s" and gb[0]["value"] == pytest.approx(1.3e-3)
    assert "slower" in (tmp_path / "c.md").read_text()
    res = run_cli("compare", str(base), str(same))
    assert res.returncode == 0 and "same" in res.stdout
    one = _write(tmp_path / "one.jsonl", [("o", [_record(_samples(1.3e-3), "o")])])
    res = run_cli("compare", str(_write(tmp_path / "b1.jsonl", [("p", [_record(_samples(1e-3), "p")])])), str(one))
    assert res.returncode == 0 and "not called slower" in res.stdout  # one run a side decides nothing


def test_a_case_that_now_fails_is_a_regression(tmp_path):
    base = _runs(tmp_path / "base.jsonl", "b", [1e-3, 1e-3])
    cur = tmp_path / "cur.jsonl"
    rec = _record(_samples(1e-3), "c").model_copy(update={"status": "oom", "time": None, "reason": "OutOfMemory"})
    _write(cur, [("c", [rec, _record(_samples(1e-3), "c", case="c2")])])
    _write(base, [("b9", [_record(_samples(1e-3), "b9", case="c2")])])
    res = run_cli("compare", str(base), str(cur))
    assert res.returncode == 1, res.stdout + res.stderr
    assert "regression: attention fwd · naive · N=128: ok in the baseline, oom now (OutOfMemory)" in res.stdout


@pytest.mark.parametrize("make, expected", [
    (lambda t: (t / "missing", t / "missing2"), "no results file at"),
    (lambda t: (_write(t / "a.jsonl", [("r1", [_record(_samples(1e-3), "r1", case="x")])]),
                _write(t / "b.jsonl", [("r2", [_record(_samples(1e-3), "r2", case="y")])])),
     "no case in common to compare time: the baseline has 1 ok case (attention), the current has 1 ok case"),
    (lambda t: (_write(t / "a.jsonl", [("r1", [_record(_samples(1e-3), "r1")])]),
                _write(t / "b.jsonl", [("r2", [_record(_samples(1e-3), "r2")])], threads=1)),
     "threads: 2 (baseline) vs 1 (current)"),
])
def test_compare_bad_input_is_one_line_exit_2(tmp_path, make, expected):
    base, cur = make(tmp_path)
    res = run_cli("compare", str(base), str(cur))
    assert res.returncode == 2, res.stdout + res.stderr
    assert expected in res.stderr and res.stderr.count("\n") == 1 and "Traceback" not in res.stderr


def test_newer_schema_and_bad_options_exit_2(tmp_path):
    base = _write(tmp_path / "a.jsonl", [("r1", [_record(_samples(1e-3), "r1")])])
    newer = tmp_path / "newer.jsonl"
    lines = base.read_text().splitlines()
    head = json.loads(lines[0])
    head["schema_version"] = 99
    newer.write_text("\n".join([json.dumps(head), *lines[1:]]) + "\n")
    for args, expected in (
        ([str(base), str(newer)], "newer than this xfbench"),
        ([str(base), str(base), "--threshold", "500%"], "--threshold: 500% is outside"),
        ([str(base), str(base), "--metric", "speed"], "--metric: unknown value 'speed'"),
        ([str(base)], "compare needs BASELINE and CURRENT"),
        ([str(base), str(base), "--json", "-", "--markdown", "-"], "only one output can go to stdout"),
    ):
        res = run_cli("compare", *args)
        assert res.returncode == 2, (args, res.stdout, res.stderr)
        assert expected in res.stderr, (args, res.stderr)


def test_different_threads_allowed_with_a_warning(tmp_path):
    base = _write(tmp_path / "a.jsonl", [("r1", [_record(_samples(1e-3), "r1")])])
    cur = _write(tmp_path / "b.jsonl", [("r2", [_record(_samples(1e-3), "r2")])], threads=1)
    res = run_cli("compare", str(base), str(cur), "--allow-different-env")
    assert res.returncode == 0, res.stderr
    assert "warning: environments differ: threads: 2 (baseline) vs 1 (current)" in res.stdout


def test_history_and_compare_against_history(tmp_path):
    db = tmp_path / "h.sqlite"
    past = [1.00, 1.01, 0.99, 1.02, 0.98, 1.00, 1.01]
    for i, center in enumerate(past):
        run_id = f"2026120{1 + i // 10}T00000{i}Z-1-aaaaa{i}"
        path = _write(tmp_path / f"p{i}.jsonl", [(run_id, [_record(_samples(center * 1e-3), run_id)])])
        from xfbench.reports.history import History
        from xfbench.reports.store import load_results

        with History(db) as h:
            assert h.record(load_results(path), source=str(path)) == 1
    res = run_cli("history", "--db", str(db), "--html", str(tmp_path / "trend.html"))
    assert res.returncode == 0, res.stderr
    assert "attention fwd · naive · N=128" in res.stdout and any(ch in res.stdout for ch in "▁▂▃▄▅▆▇█")
    assert "<svg" in (tmp_path / "trend.html").read_text()
    run_id = "20261203T000000Z-1-bbbbbb"
    slow = _write(tmp_path / "slow.jsonl", [(run_id, [_record(_samples(1.3e-3), run_id)])])
    res = run_cli("compare", "--against-history", str(slow), "--db", str(db))
    assert res.returncode == 1, res.stdout + res.stderr
    assert "history band of 7 runs" in res.stdout
    run_id = "20261203T000001Z-1-cccccc"
    fine = _write(tmp_path / "fine.jsonl", [(run_id, [_record(_samples(1.0e-3), run_id)])])
    assert run_cli("compare", "--against-history", str(fine), "--db", str(db)).returncode == 0
    assert run_cli("history", "--db", str(tmp_path / "none.sqlite")).returncode == 2


def test_gate_uses_the_history_band_when_there_are_no_repeats(tmp_path):
    """A noisy history (±15% between runs) widens a single-run comparison's gate past a 10% change."""
    db = tmp_path / "h.sqlite"
    from xfbench.reports.history import History
    from xfbench.reports.store import load_results

    for i, center in enumerate([1.0, 1.15, 0.85, 1.1, 0.9, 1.05, 0.95]):
        run_id = f"20261201T00000{i}Z-1-aaaaa{i}"
        path = _write(tmp_path / f"p{i}.jsonl", [(run_id, [_record(_samples(center * 1e-3), run_id)])])
        with History(db) as h:
            h.record(load_results(path))
    base = _write(tmp_path / "a.jsonl", [("ra", [_record(_samples(1e-3), "ra")])])
    cur = _write(tmp_path / "b.jsonl", [("rb", [_record(_samples(1.1e-3), "rb")])])
    res = run_cli("compare", str(base), str(cur), "--db", str(db))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "history band of" in res.stdout and "inconclusive" in res.stdout
    assert os.path.exists(db)
