"""SIGINT, SIGTERM and SIGKILL during a real sweep (the console script in a subprocess): everything
measured is kept and reported, one line says how to finish, exit 130 / 143, and no child survives."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
from pathlib import Path

import psutil

from xfbench.reports.store import load_results

from .conftest import XFBENCH, run_cli

LENS = "16,24,32,40,48,56,64,72"  # 8 tiny cases
SWEEP = ["attention", "--seq-lens", LENS, "--impl", "naive", "--heads", "2", "--head-dim", "8", "--max-time", "0.3",
         "--no-calibrate", "--device", "cpu", "--no-history"]
ENV = {**os.environ, "NO_COLOR": "1", "COLUMNS": "400"}


def _records(path: Path) -> int:
    return path.read_text().count('"kind":"record"') if path.exists() else 0


class Sweep:
    """A sweep started as a subprocess; every process below it seen while it ran is remembered."""

    def __init__(self, args: list[str], out: Path):
        self.results = out / "results.jsonl"
        self.proc = subprocess.Popen([XFBENCH, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=ENV)
        self.seen: set[psutil.Process] = set()

    def watch_until(self, done, timeout: float = 120.0) -> None:
        t0 = time.monotonic()
        while not done():
            assert self.proc.poll() is None, self.proc.communicate()
            assert time.monotonic() - t0 < timeout, "the sweep never got there"
            try:
                self.seen.update(psutil.Process(self.proc.pid).children(recursive=True))
            except psutil.Error:
                pass
            time.sleep(0.05)

    def finish(self, timeout: float = 120.0) -> tuple[int, str, str]:
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out, err

    def survivors(self) -> list[psutil.Process]:
        return [p for p in self.seen if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def _line(stdout: str, signame: str) -> str:
    lines = [x for x in stdout.splitlines() if x.startswith(f"interrupted ({signame})")]
    assert len(lines) == 1, stdout
    return lines[0]


def _check_kept(out: Path, stdout: str, signame: str, kept: int) -> str:
    run = load_results(out)
    ids = [r.case_id for r in run.records]
    assert len(ids) == kept and len(set(ids)) == kept
    html = (out / "report.html").read_text()
    assert all(i in html for i in ids)  # the report of the completed cases
    line = _line(stdout, signame)
    assert line.startswith(f"interrupted ({signame}): {kept} of 8 cases are in {out / 'results.jsonl'}; finish with: ")
    return line.split("finish with: ", 1)[1]


def test_sigint_stops_after_the_current_case_and_reports_what_was_measured(tmp_path):
    sweep = Sweep([*SWEEP, "--out", str(tmp_path)], tmp_path)
    sweep.watch_until(lambda: _records(sweep.results) >= 2)
    sweep.proc.send_signal(signal.SIGINT)
    rc, out, err = sweep.finish()
    assert rc == 130, out + err
    assert "Traceback" not in err
    assert "SIGINT: stopping after the current case" in out
    kept = _records(sweep.results)
    assert 2 <= kept < 8  # the case running when it arrived was finished and written
    resume = _check_kept(tmp_path, out, "SIGINT", kept)
    assert resume == shlex.join(["xfbench", *SWEEP, "--out", str(tmp_path), "--resume"])


def test_sigterm_with_isolate_stops_after_the_case_and_no_child_survives(tmp_path):
    sweep = Sweep([*SWEEP, "--isolate", "--out", str(tmp_path)], tmp_path)
    sweep.watch_until(lambda: _records(sweep.results) >= 1 and len(sweep.seen) >= 2)
    sweep.proc.send_signal(signal.SIGTERM)
    rc, out, err = sweep.finish()
    assert rc == 143, out + err
    kept = _records(sweep.results)
    assert 2 <= kept < 8, out  # the child measuring when SIGTERM came was let finish
    _check_kept(tmp_path, out, "SIGTERM", kept)
    assert sweep.seen and sweep.survivors() == []


def test_a_second_signal_kills_the_isolated_child_at_once(tmp_path):
    args = [*SWEEP, "--isolate", "--max-time", "30", "--target-ci", "0.0001", "--out", str(tmp_path)]
    sweep = Sweep(args, tmp_path)
    sweep.watch_until(lambda: len(sweep.seen) >= 1)  # the first case's child is up
    time.sleep(1.0)
    sweep.proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    t0 = time.monotonic()
    sweep.proc.send_signal(signal.SIGINT)
    rc, out, err = sweep.finish()
    assert rc == 130, out + err
    assert time.monotonic() - t0 < 20  # not the 30 s the case would have taken
    assert _records(sweep.results) == 0
    assert "interrupted (SIGINT): 0 of 8 cases are in" in _line(out, "SIGINT")
    assert sweep.survivors() == []


def test_a_sweep_killed_halfway_resumes_exactly_the_missing_cases(tmp_path):
    sweep = Sweep([*SWEEP, "--out", str(tmp_path)], tmp_path)
    sweep.watch_until(lambda: _records(sweep.results) >= 3)
    sweep.proc.send_signal(signal.SIGKILL)
    sweep.finish()
    first = load_results(tmp_path).records  # every completed case loads
    done = len(first)
    assert 3 <= done < 8 and all(r.status == "ok" for r in first)
    res = run_cli(*SWEEP, "--out", str(tmp_path), "--resume")
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"{8 - done} cases to run ({done} already in the file, skipped by --resume)" in res.stdout
    run = load_results(tmp_path)
    ids = [r.case_id for r in run.records]
    assert len(ids) == 8 and len(set(ids)) == 8  # each case once
    assert ids[:done] == [r.case_id for r in first] and len(run.headers) == 2


SUITE = """
name = "sig"
[run]
device = "cpu"
max_time = 0.3
memory = false
calibrate = false
[[cases]]
name = "attn"
workload = "attention"
seq_lens = [16, 24, 32, 40, 48, 56]
impl = "naive"
heads = 2
head_dim = 8
"""


def test_sigterm_to_a_repeat_run_reaches_its_child_and_the_report_is_written(tmp_path):
    suite = tmp_path / "sig.toml"
    suite.write_text(SUITE)
    out = tmp_path / "run"
    sweep = Sweep(["run", str(suite), "--repeat", "2", "--no-history", "--out", str(out)], out)
    sweep.watch_until(lambda: _records(sweep.results) >= 2)
    sweep.proc.send_signal(signal.SIGTERM)  # to the parent only, as a CI runner's cancel may
    rc, stdout, err = sweep.finish()
    assert rc == 143, stdout + err
    kept = _records(sweep.results)
    assert 2 <= kept < 6  # the repeat stopped after its current case, not at once
    line = _line(stdout, "SIGTERM")
    assert line.startswith(f"interrupted (SIGTERM) in repeat 1 of 2: {kept} records (0 whole repeats) are in ")
    html = (out / "report.html").read_text()
    assert all(r.case_id in html for r in load_results(out).records)
    assert sweep.seen and sweep.survivors() == []
