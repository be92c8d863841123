"""An existing run or report is never overwritten without --force (issue 12, atomic outputs):
an --out holding results.jsonl is refused unless --resume adds to it or --force starts afresh,
keeping the earlier files as *.bak; report/compare/history refuse an existing output file."""

from __future__ import annotations

from xfbench.reports.store import load_results

from .conftest import run_cli

SWEEP = ("attention", "--fake-clock", "--seq-lens", "32,64", "--impl", "naive", "--heads", "2", "--head-dim", "8",
         "--device", "cpu", "--no-calibrate", "--no-memory", "--no-history")


def _sweep(out, *extra):
    return run_cli(*SWEEP, "--out", str(out), *extra)


def test_a_sweep_into_a_folder_holding_a_run_is_refused_then_force_keeps_the_old_one_as_bak(tmp_path):
    first = _sweep(tmp_path)
    assert first.returncode == 0, first.stderr
    old = {n: (tmp_path / n).read_bytes() for n in ("results.jsonl", "report.html")}

    again = _sweep(tmp_path)
    assert again.returncode == 2
    assert again.stderr.strip() == (
        f"xfbench: error: {tmp_path} already holds a run (results.jsonl): give a new --out, --resume to add to that "
        "run, or --force to start a new one there (the earlier files are kept as *.bak)"
    )
    assert again.stdout == "" and "Traceback" not in again.stderr
    assert {n: (tmp_path / n).read_bytes() for n in old} == old  # nothing touched

    forced = _sweep(tmp_path, "--force")
    assert forced.returncode == 0, forced.stderr
    assert f"--force: the earlier run's results.jsonl, report.html kept as *.bak in {tmp_path}" in forced.stdout
    assert (tmp_path / "results.jsonl.bak").read_bytes() == old["results.jsonl"]
    assert (tmp_path / "report.html.bak").read_bytes() == old["report.html"]
    new = load_results(tmp_path)
    assert len(new.headers) == 1 and len(new.records) == 2  # a new run, not an appended one
    assert new.header.run_id != load_results(tmp_path / "results.jsonl.bak").header.run_id


def test_resume_adds_to_the_run_and_force_with_resume_is_refused(tmp_path):
    assert _sweep(tmp_path).returncode == 0
    both = _sweep(tmp_path, "--resume", "--force")
    assert both.returncode == 2 and both.stderr.startswith("xfbench: error: --force contradicts --resume")
    more = run_cli(*SWEEP[:3], "32,64,128", *SWEEP[4:], "--out", str(tmp_path), "--resume")
    assert more.returncode == 0, more.stderr
    assert sorted(r.size for r in load_results(tmp_path).records) == [32, 64, 128]


def test_a_suite_run_into_a_folder_holding_a_run_is_refused(tmp_path):
    (tmp_path / "results.jsonl").write_text("")
    out = run_cli("run", "quick", "--out", str(tmp_path), "--fake-clock")
    assert out.returncode == 2 and "already holds a run" in out.stderr and out.stderr.count("\n") == 1
    assert (tmp_path / "results.jsonl").read_text() == ""


def test_report_outputs_that_exist_need_force_and_the_runs_own_report_is_rendered_again(tmp_path):
    run = tmp_path / "run"
    assert _sweep(run).returncode == 0
    md = tmp_path / "summary.md"
    md.write_text("mine")
    refused = run_cli("report", str(run), "--markdown", str(md))
    assert refused.returncode == 2
    assert refused.stderr.strip() == (
        f"xfbench: error: --markdown: {md} exists: give another path, or --force to overwrite it")
    assert md.read_text() == "mine"
    forced = run_cli("report", str(run), "--markdown", str(md), "--force")
    assert forced.returncode == 0 and md.read_text().startswith("#")
    figs = tmp_path / "figs"
    assert run_cli("report", str(run), "--figures", str(figs), "--format", "svg").returncode == 0
    again = run_cli("report", str(run), "--figures", str(figs), "--format", "svg")
    assert again.returncode == 2 and "--figures:" in again.stderr and "--force" in again.stderr
    assert run_cli("report", str(run), "--figures", str(figs), "--format", "png").returncode == 0  # other files
    # the run's own report.html is a function of its results: `xfbench report RUN` renders it again
    before = (run / "report.html").stat().st_mtime_ns
    assert run_cli("report", str(run)).returncode == 0
    assert (run / "report.html").stat().st_mtime_ns != before


def test_compare_and_history_outputs_that_exist_need_force(tmp_path):
    run = tmp_path / "run"
    assert _sweep(run).returncode == 0
    js = tmp_path / "c.json"
    js.write_text("{}")
    out = run_cli("compare", str(run), str(run), "--json", str(js))
    assert out.returncode == 2
    assert out.stderr.strip().endswith("exists: give another path, or --force to overwrite it")
    assert js.read_text() == "{}"
    assert run_cli("compare", str(run), str(run), "--json", str(js), "--force").returncode == 0
    assert js.read_text() != "{}"
    page = tmp_path / "h.html"
    page.write_text("x")
    out = run_cli("history", "--html", str(page), "--db", str(tmp_path / "none.sqlite"))
    assert out.returncode == 2 and "--html:" in out.stderr and page.read_text() == "x"


def test_ab_refuses_an_existing_json_before_its_first_round(tmp_path):
    import sys

    js = tmp_path / "ab.json"
    js.write_text("{}")
    out = run_cli("ab", "--a", sys.executable, "--b", sys.executable, "quick", "--out", str(tmp_path / "ab"),
                  "--json", str(js))
    assert out.returncode == 2 and out.stderr.startswith(f"xfbench: error: --json: {js} exists")
    assert js.read_text() == "{}" and not (tmp_path / "ab").exists()  # no round ran
