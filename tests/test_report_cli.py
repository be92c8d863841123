"""`xfbench report` renders every format from the results file alone; a sweep writes
report.html into its run folder; the same file renders identically apart from the timestamp;
bad input is one line and exit code 2."""

import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import run_cli
from xfbench.reports.store import load_results

FIXTURES = Path("tests/fixtures")
STAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")


@pytest.fixture
def run_dir(tmp_path):
    d = tmp_path / "run"
    d.mkdir()
    shutil.copy(FIXTURES / "report_attention.jsonl", d / "results.jsonl")
    return d


def test_report_with_no_output_prints_the_summary_and_tables_and_writes_report_html(run_dir):
    out = run_cli("report", str(run_dir))
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("summary\n- attention fwd")
    assert "median time/call ±95% CI" in out.stdout
    html = run_dir / "report.html"
    assert f"html: {html} (" in out.stdout and html.stat().st_size > 10_000


def test_report_writes_every_format(run_dir, tmp_path):
    figs = tmp_path / "figs"
    out = run_cli("report", str(run_dir / "results.jsonl"), "--html", str(tmp_path / "r.html"),
                  "--latex", str(tmp_path / "t.tex"), "--csv", str(tmp_path / "t.csv"),
                  "--markdown", str(tmp_path / "t.md"), "--figures", str(figs), "--format", "svg,png", "--dpi", "60")
    assert out.returncode == 0, out.stderr
    for name in ("r.html", "t.tex", "t.csv", "t.md"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert "\\toprule" in (tmp_path / "t.tex").read_text()
    assert (tmp_path / "t.csv").read_text().count("\n") == 1 + 16  # header + one row per record
    svgs, pngs = sorted(figs.glob("*.svg")), sorted(figs.glob("*.png"))
    assert svgs and [p.stem for p in svgs] == [p.stem for p in pngs] and not list(figs.glob("*.pdf"))
    assert pngs[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"figures: {2 * len(svgs)} files in {figs} (svg, png)" in out.stdout


def test_raw_data_none_leaves_the_appendix_out(run_dir, tmp_path):
    full, bare = tmp_path / "full.html", tmp_path / "bare.html"
    assert run_cli("report", str(run_dir), "--html", str(full), "--raw-data", "json").returncode == 0
    assert run_cli("report", str(run_dir), "--html", str(bare), "--raw-data", "none").returncode == 0
    first = load_results(run_dir).records[0]
    assert first.case_id in full.read_text() and first.case_id not in bare.read_text()


def test_a_report_to_stdout_keeps_the_status_lines_off_it(run_dir, tmp_path):
    out = run_cli("report", str(run_dir), "--markdown", "-", "--csv", str(tmp_path / "t.csv"))
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("#") and "csv: " in out.stderr and "csv: " not in out.stdout


def test_the_same_results_render_identically_apart_from_the_timestamp(run_dir, tmp_path):
    """HTML, LaTeX, Markdown and every SVG figure, rendered twice at different times."""
    texts = []
    for i, epoch in enumerate(("0", "1700000000")):
        d = tmp_path / f"r{i}"
        out = run_cli("report", str(run_dir), "--html", str(d / "r.html"), "--latex", str(d / "t.tex"),
                      "--markdown", str(d / "t.md"), "--figures", str(d / "figs"), "--format", "svg,pdf",
                      env={"SOURCE_DATE_EPOCH": epoch})
        assert out.returncode == 0, out.stderr
        files = {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}
        texts.append(files)
    a, b = texts
    assert a.keys() == b.keys() and any(k.endswith(".svg") for k in a)
    stamps = {"r.html": "1970-01-01T00:00:00Z", "t.tex": "1970-01-01T00:00:00Z", "t.md": "1970-01-01T00:00:00Z"}
    for name in a:
        if name in stamps:
            assert stamps[name] in a[name].decode() and "2023-11-14T22:13:20Z" in b[name].decode(), name
            assert a[name].decode().replace(stamps[name], "T") == b[name].decode().replace("2023-11-14T22:13:20Z", "T")
        else:
            assert a[name] == b[name], name  # figures carry no timestamp at all


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["report", "/nonexistent/run"], "no results file at /nonexistent/run"),
        (["report", "RUN", "--figures", "F", "--format", "svg,gif"], "--format: unknown value 'gif'"),
        (["report", "RUN", "--html", "-", "--csv", "-"], "only one report can go to stdout"),
        (["report", "RUN", "--dpi", "5"], "--dpi"),
        (["report", "RUN", "--html", "/proc/nope/r.html"], "cannot write /proc/nope/r.html"),
        (["report", "RUN", "--figures", "RUN/results.jsonl"], "it is a file, not a folder"),
        (["report", "RUN", "--raw-data", "everything"], "--raw-data: unknown value 'everything'"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(run_dir, args, message):
    out = run_cli(*[a.replace("RUN", str(run_dir)) for a in args])
    assert out.returncode == 2, (out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xfbench: error: ") and message in lines[0], out.stderr
    assert "Traceback" not in out.stderr


def test_a_damaged_results_file_is_one_line_and_exit_code_2(tmp_path):
    bad = tmp_path / "results.jsonl"
    bad.write_text('{"kind": "record"}\n')
    out = run_cli("report", str(bad))
    assert out.returncode == 2 and "not an xfbench results file" in out.stderr


def test_a_sweep_writes_report_html_into_its_run_folder_and_no_html_skips_it(tmp_path):
    args = ["attention", "--fake-clock", "--seq-lens", "32,64", "--impl", "naive,lstm", "--heads", "2",
            "--head-dim", "8", "--device", "cpu", "--no-calibrate", "--no-memory"]
    out = run_cli(*args, "--out", str(tmp_path / "a"))
    assert out.returncode == 0, out.stderr
    html = tmp_path / "a" / "report.html"
    assert out.stdout.strip().endswith(f"report: {html}") and "<svg" in html.read_text()
    out = run_cli(*args, "--out", str(tmp_path / "b"), "--no-html")
    assert out.returncode == 0 and not (tmp_path / "b" / "report.html").exists() and "report:" not in out.stdout


def test_report_renders_a_v1_results_file(tmp_path):
    d = tmp_path / "old"
    d.mkdir()
    shutil.copy(FIXTURES / "results_v1.jsonl", d / "results.jsonl")
    out = run_cli("report", str(d), "--markdown", str(d / "t.md"), "--csv", str(d / "t.csv"), "--html",
                  str(d / "r.html"))
    assert out.returncode == 0, out.stderr
    assert STAMP.search((d / "r.html").read_text())


def test_written_reports_get_the_usual_file_mode(tmp_path):
    import os

    from xfbench.reports.writer import write_output

    mask = os.umask(0o022)
    try:
        path = write_output("x", tmp_path / "r.md")
    finally:
        os.umask(mask)
    assert path.read_text() == "x" and (path.stat().st_mode & 0o777) == 0o644  # not mkstemp's 0600
    assert not list(tmp_path.glob(".*.tmp"))  # the temporary name is gone
