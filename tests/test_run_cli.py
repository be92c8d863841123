"""`xfbench run` and `xfbench suites`: real small suites on CPU, one run folder, --repeat in fresh processes."""

from __future__ import annotations

import json

from tests.conftest import run_cli
from xfbench.reports.store import load_results

TINY = """
name = "tiny"
description = "two attention cases and a tiny model step"
[run]
device = "cpu"
max_time = 0.05
target_ci = 0.05
memory = false
calibrate = false
[compare]
threshold = "7%"
[output]
html = true
markdown = true
csv = true
[[cases]]
name = "attn"
workload = "attention"
seq_lens = [64, 128]
impl = "naive"
threshold = "10%"
[[cases]]
name = "gpt"
workload = "model"
layers = 1
d_model = 32
heads = 2
vocab = 64
mode = "prefill"
batch = 2
seq_len = 16
"""


def _suite(tmp_path, text=TINY):
    path = tmp_path / "tiny.toml"
    path.write_text(text)
    return path


def test_run_writes_one_folder_with_every_suite_case_and_its_settings(tmp_path):
    out, db = tmp_path / "run", tmp_path / "h.sqlite"
    res = run_cli("run", str(_suite(tmp_path)), "--out", str(out), "--db", str(db))
    assert res.returncode == 0, res.stderr + res.stdout
    run = load_results(out)
    assert [r.workload for r in run.records] == ["attention", "attention", "model"]
    assert all(r.status == "ok" for r in run.records)
    suites = [h.suite for h in run.headers]  # one segment per suite case, each naming its settings
    assert [s["case"] for s in suites] == ["attn", "gpt"]
    assert suites[0]["threshold"] == {"rel": 0.10, "abs_s": None}
    assert suites[1]["threshold"] == {"rel": 0.07, "abs_s": None}
    assert {s["suite_run"] for s in suites} == {suites[0]["suite_run"]} and suites[0]["repeats"] == 1
    for name in ("report.html", "summary.md", "results.csv"):
        assert (out / name).is_file(), name
    assert "suite case 'attn' (attention): 2 cases" in res.stdout
    assert f"history: 3 results recorded in {db}" in res.stdout
    assert db.is_file()


def test_resume_runs_nothing_twice(tmp_path):
    out = tmp_path / "run"
    assert run_cli("run", str(_suite(tmp_path)), "--out", str(out), "--no-history").returncode == 0
    headers = len(load_results(out).headers)  # one per suite case
    res = run_cli("run", str(_suite(tmp_path)), "--out", str(out), "--no-history", "--resume")
    assert res.returncode == 0, res.stderr
    assert "suite case 'attn' (attention): 0 cases" in res.stdout
    run = load_results(out)
    assert len(run.records) == 3
    assert len(run.headers) == headers  # nothing to run: nothing appended, not even a header


def test_repeat_runs_each_repeat_in_a_fresh_process_and_shows_the_spread(tmp_path):
    out = tmp_path / "run"
    res = run_cli("run", str(_suite(tmp_path)), "--out", str(out), "--no-history", "--repeat", "2")
    assert res.returncode == 0, res.stderr + res.stdout
    run = load_results(out)
    pids = {h.run_id.split("-")[1] for h in run.headers}
    assert len(pids) == 2  # two processes wrote the file
    assert sorted((h.suite["repeat"], h.suite["repeats"]) for h in run.headers) == [(1, 2), (1, 2), (2, 2), (2, 2)]
    assert len(run.records) == 6 and len({r.case_id for r in run.records}) == 3
    assert "Between-run spread (--repeat) beside the within-run CI" in res.stdout
    assert res.stdout.count("repeat 1 of 2") == 1 and res.stdout.count("repeat 2 of 2") == 1


def test_bad_run_options_exit_2(tmp_path):
    suite = str(_suite(tmp_path))
    for args, expected in (
        (["--repeat", "0"], "--repeat"),
        (["--resume"], "--resume needs --out"),
        (["--repeat", "2", "--resume", "--out", str(tmp_path / "x")], "--resume and --repeat"),
        (["--device", "tpu"], "--device"),
        (["--threads", "0"], "--threads"),
    ):
        res = run_cli("run", suite, *args)
        assert res.returncode == 2, (args, res.stderr)
        assert expected in res.stderr and "Traceback" not in res.stderr


def test_suites_lists_the_builtins_and_prints_one():
    res = run_cli("suites")
    assert res.returncode == 0
    for name in ("quick", "why-transformers", "attention-scaling", "model-scaling", "parallel-scaling"):
        assert name in res.stdout
    res = run_cli("suites", "quick")
    assert res.returncode == 0 and 'name = "quick"' in res.stdout
    assert run_cli("suites", "nope").returncode == 2


def test_planted_slowdown_is_recorded(tmp_path):
    """The test-only slowdown is real (the step busy-waits) and every record that ran under it says so."""
    out = tmp_path / "run"
    res = run_cli("run", str(_suite(tmp_path)), "--out", str(out), "--no-history",
                  env={"XFBENCH_PLANT_SLOWDOWN": "0.1"})
    assert res.returncode == 0, res.stderr
    assert all(r.info.get("planted_slowdown") == 0.1 for r in load_results(out).records)
    line = json.loads((out / "results.jsonl").read_text().splitlines()[1])
    assert line["info"]["planted_slowdown"] == 0.1


def test_every_sweep_records_into_the_history_unless_told_not_to(tmp_path):
    db = tmp_path / "h.sqlite"
    args = ["attention", "--seq-lens", "64", "--impl", "naive", "--device", "cpu", "--max-time", "0.05",
            "--no-memory", "--no-calibrate", "--no-html", "--db", str(db)]
    res = run_cli(*args, "--out", str(tmp_path / "a"))
    assert res.returncode == 0, res.stderr
    assert f"history: 1 results recorded in {db}" in res.stdout
    from xfbench.reports.history import History

    with History(db) as h:
        assert [c.variant for c in h.cases()] == ["naive"]
    res = run_cli(*args, "--out", str(tmp_path / "b"), "--no-history")
    assert res.returncode == 0 and "history:" not in res.stdout
    with History(db) as h:
        assert h.cases()[0].runs == 1
