"""The profile report (--profile): per profiled case a top-operator table whose rows are the
record's own figures, in the terminal (the sweep's path and `xfbench report`'s), Markdown, LaTeX
and HTML; the HTML's bar of operator shares (widths = the shares) and links to the profiler's
files (relative to wherever the page is written; text when that is unknown or the path is not
a plain relative one); no section without a profile; a failed pass and a skipped CPU memory
snapshot say so. The fixture is a real CPU run: attention N=256,512 naive and sdpa profiled
with --memory-snapshot, and a 1M-parameter model's train step profiled."""

from __future__ import annotations

import io
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
from rich.console import Console

from tests.conftest import run_cli
from xfbench.reports import html as report_html
from xfbench.reports import latex, markdown, terminal
from xfbench.reports.document import build_document
from xfbench.reports.profile_report import case_name, profile_cases, profile_tables, segments
from xfbench.reports.store import load_results
from xfbench.reports.units import fmt_bytes, fmt_time

FIXTURES = Path(__file__).parent / "fixtures"
FIXTURE = FIXTURES / "report_profile.jsonl"
STAMP = "2026-12-02T00:00:00Z"


@pytest.fixture(scope="module")
def run():
    return load_results(FIXTURE)


def _with_profile(run, profile, index=0, **update):
    """The run with record `index`'s profile replaced (a record as the profiler pass would write it)."""
    recs = list(run.records)
    recs[index] = recs[index].model_copy(update={"profile": profile, **update})
    return run.model_copy(update={"records": recs})


def _text(run, tables=None) -> str:
    """What the sweep prints (reports.terminal.render, as cli/sweep.py calls it)."""
    console = Console(file=io.StringIO(), width=200, no_color=True, highlight=False, force_terminal=False)
    terminal.render(run, console, tables=tables)
    return console.file.getvalue()


def _html(run, files_base: str | None = "") -> str:
    """The HTML page without figures (they are the other tests' concern, and take seconds)."""
    doc = build_document(run, STAMP, specs=[])
    return report_html.render_document(doc, svgs=lambda: [], files_base=files_base)


class Tags(HTMLParser):
    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def find(self, tag: str, cls: str | None = None) -> list[dict[str, str | None]]:
        return [a for t, a in self.tags if t == tag and (cls is None or cls in (a.get("class") or "").split())]


# --- the tables -----------------------------------------------------------------------------------


def test_one_table_per_profiled_case_whose_rows_are_the_records_figures(run):
    recs = [r for r in run.records if r.profile]
    assert len(recs) == 5  # 4 attention cases and the model's train step, all profiled
    tables = {t.title: t for t in profile_tables(run)}
    assert list(tables) == [f"profile: {case_name(r)}" for r in recs]
    for r in recs:
        p, t = r.profile, tables[f"profile: {case_name(r)}"]
        ops = p["ops"]
        assert [row[1].value for row in t.rows[: len(ops)]] == [o["name"] for o in ops]
        top = t.rows[0]
        assert top[0].value == 1 and top[2].value == ops[0]["shapes"] and top[3].value == ops[0]["calls"]
        assert top[4].value == ops[0]["self_s"] and top[4].unit == "s"
        assert top[5].value == ops[0]["share"] and top[5].unit == "%"
        assert top[6].value == ops[0]["flops"]
        assert t.rows[len(ops)][1].value == f"other ops ({p['other_ops']['count']} more)"
        assert t.rows[len(ops)][5].value == p["other_ops"]["share"]
        assert t.rows[-1][1].value == "outside ops" and t.rows[-1][5].value == p["breakdown"]["outside_ops"]
        shares = [row[5].value for row in t.rows]
        assert all(0 <= s <= 1 for s in shares)
        assert sum(shares) <= 1 + 1e-6  # on CPU the ops, the rest and the time outside ops are one step
        assert sum(shares) > 0.99  # ... and they account for it
    naive = next(r for r in recs if r.variant == "naive" and r.size == 256)
    assert naive.profile["ops"][0]["name"] == "aten::bmm"  # the matmul leads the naive attention at N=256
    model = next(r for r in recs if r.workload == "model")
    assert tables[f"profile: {case_name(model)}"].rows[2][1].value == "aten::mm"


def test_notes_carry_the_breakdown_overhead_flop_check_trace_and_snapshot(run):
    r = next(r for r in run.records if r.variant == "naive" and r.size == 256)
    p = r.profile
    (t,) = [t for t in profile_tables(run) if t.title == f"profile: {case_name(r)}"]
    notes = "\n".join(t.notes)
    b = p["breakdown"]
    assert (f"where the step went: compute {100 * b['compute']:.1f}% · communication {100 * b['communication']:.1f}%"
            f" · memory copies {100 * b['memory']:.1f}% · outside ops {100 * b['outside_ops']:.1f}%") in notes
    assert p["breakdown_source"] in notes
    overhead = (f"profiled step {fmt_time(p['profiled_median_s'])} vs timed median {fmt_time(p['timed_median_s'])}: "
                f"+{100 * p['overhead_rel']:.1f}% profiler overhead ({p['overhead_note']})")
    assert overhead in notes
    assert f"= {p['flops_over_work']:.2f} × the analytic work ({p['flops_note']})" in notes
    assert f"trace: {p['trace']} ({fmt_bytes(p['trace_bytes'])}): {p['how_to_open']}" in notes
    assert f"memory snapshot: skipped ({p['memory_snapshot_skipped']})" in notes
    assert "this case ran on cpu" in p["memory_snapshot_skipped"]
    assert f"share = self time / the profiled step, {fmt_time(p['step_s'])}" in notes


def test_no_profile_no_section(run):
    plain = load_results(FIXTURES / "report_attention.jsonl")
    assert profile_tables(plain) == []
    assert "profile" not in [s.key for s in build_document(plain, STAMP, specs=[]).sections]
    assert "profile:" not in _text(plain)
    assert "Profile" not in markdown.render(plain)
    page = _html(plain)
    assert 'id="profile"' not in page and "opbar" not in page.split("</style>")[1]
    # one record of the profiled file without its profile: only the others get a table
    stripped = _with_profile(run, None)
    assert len(profile_tables(stripped)) == len(profile_tables(run)) - 1


# --- the terminal, Markdown and LaTeX -------------------------------------------------------------


def test_the_sweep_and_report_print_the_profile_tables(run):
    model = next(r for r in run.records if r.workload == "model")
    title = f"profile: {case_name(model)}"
    for text in (_text(run), _text(run, tables=[]), terminal.render_text(run)):
        # tables=[]: a command whose own tables replace the generic ones (model, parallel) still prints them
        assert title in text
        assert "aten::_scaled_dot_product_flash_attention_for_cpu_backward" in text  # folded, never cut short
        assert "outside ops" in text and "profiler overhead" in text
    assert _text(run).count(title) == 1
    # a command that already printed them (its extra_tables hold them) does not print them twice
    assert _text(run, tables=profile_tables(run)).count(title) == 1


def test_markdown_and_latex_hold_the_tables(run):
    md = markdown.render(run)
    assert "## Profile: operators inside a step (--profile)" in md
    model = next(r for r in run.records if r.workload == "model")
    assert f"**{markdown.escape(f'profile: {case_name(model)}')}**" in md
    assert "| 1 | aten::\\_scaled\\_dot\\_product\\_flash\\_attention\\_for\\_cpu\\_backward |" in md
    assert markdown.escape(f"trace: {model.profile['trace']}") in md
    tex = latex.render(run)
    assert tex.count("profile: ") >= 5


# --- the HTML -------------------------------------------------------------------------------------


def test_html_bar_widths_are_the_shares_and_the_files_are_links(run):
    page = _html(run)
    tags = Tags(page)
    assert len(tags.find("section")) and any(a.get("id") == "profile" for a in tags.find("section"))
    bars = [a for a in tags.find("div", "opbar")]
    assert len(bars) == 5 and all(a.get("role") == "img" and a.get("aria-label") for a in bars)
    segs = tags.find("span", "seg")
    want = []
    for r in (r for r in run.records if r.profile):
        p = r.profile
        want += [o["share"] for o in p["ops"]] + [p["other_ops"]["share"], p["breakdown"]["outside_ops"]]
    assert [float(a["data-share"]) for a in segs] == pytest.approx(want, rel=1e-12)
    widths = [float(re.fullmatch(r"width: ([\d.]+)%", a["style"]).group(1)) for a in segs]
    assert widths == pytest.approx([100 * s for s in want], abs=5e-4)  # the width is the share, unscaled
    assert len({a["class"] for a in segs}) == 12  # ten op colours, other ops, outside ops
    hrefs = [a["href"] for a in tags.find("a") if not a["href"].startswith("#")]
    assert hrefs == [r.profile["trace"] for r in run.records if r.profile]
    assert page.count("open in ui.perfetto.dev or chrome://tracing") >= 5
    assert "memory snapshot: skipped (memory snapshots record the CUDA caching allocator" in page


def test_html_links_from_elsewhere_and_text_when_the_run_folder_is_unknown(run):
    trace = next(r for r in run.records if r.profile).profile["trace"]
    moved = Tags(_html(run, files_base="../runs/a b"))
    assert [a["href"] for a in moved.find("a") if not a["href"].startswith("#")][0] == f"../runs/a%20b/{trace}"
    unknown = _html(run, files_base=None)
    assert [a for a in Tags(unknown).find("a") if not a["href"].startswith("#")] == []
    assert f"<code>{trace}</code>" in unknown
    assert "this page does not know where that folder is from here" in unknown


@pytest.mark.parametrize("path", ["javascript:alert(1)", "https://evil.example/t.json.gz", "/etc/passwd",
                                  "../../secret/trace.json.gz", "a\\b.json.gz", '"><script>x</script>'])
def test_html_never_links_a_path_that_is_not_plainly_inside_the_run_folder(run, path):
    p = {**run.records[0].profile, "trace": path}
    page = _html(_with_profile(run, p))
    tags = Tags(page)
    assert path not in [a["href"] for a in tags.find("a")]
    assert all(a["href"].startswith(("#", "profiles/")) for a in tags.find("a"))
    assert "<script>x" not in page
    assert "a plain relative path inside the run folder is shown as text" in page


def test_cli_report_html_elsewhere_links_back_to_the_run_folder(tmp_path):
    d = tmp_path / "run"
    d.mkdir()
    shutil.copy(FIXTURE, d / "results.jsonl")
    out = run_cli("report", str(d), "--html", str(tmp_path / "pages" / "r.html"))
    assert out.returncode == 0, out.stderr
    page = (tmp_path / "pages" / "r.html").read_text(encoding="utf-8")
    trace = next(r for r in load_results(FIXTURE).records if r.profile).profile["trace"]
    assert f'href="../run/{trace}"' in page
    out = run_cli("report", str(d))  # report.html into the run folder: the record's path as it is
    assert out.returncode == 0, out.stderr
    assert "profile: attention fwd" in out.stdout and "aten::bmm" in out.stdout
    assert f'href="{trace}"' in (d / "report.html").read_text(encoding="utf-8")


def test_overlapping_device_shares_scale_the_bar_and_say_so(run):
    """On a GPU the kernels of concurrent streams overlap: shares may add up past 100%."""
    p = {**run.records[0].profile, "sort_by": "self device time",
         "breakdown": {"compute": 0.9, "communication": 0.4, "memory": 0.0, "idle": 0.1}}
    p["ops"] = [{**o, "share": s} for o, s in zip(p["ops"][:2], (0.9, 0.4), strict=True)]
    p["other_ops"] = {"count": 0, "self_s": 0.0, "share": 0.0}
    segs, note = segments(p)
    assert [s.share for s in segs] == [0.9, 0.4, 0.1]
    assert [s.width for s in segs] == pytest.approx([0.9 / 1.4, 0.4 / 1.4, 0.1 / 1.4])
    assert note and "add up to 140.0% of the step" in note
    t = profile_cases(_with_profile(run, p))[0].table
    assert t.rows[-1][1].value == "device idle" and t.rows[-1][5].value == 0.1
    assert "add up to 140.0%" in _html(_with_profile(run, p))


def test_the_profilers_own_note_is_shown(run):
    note = "no device activity was recorded (is CUPTI available?): ops sorted by self CPU time"
    noted = _with_profile(run, {**run.records[0].profile, "note": note})
    assert f"profiler: {note}" in profile_cases(noted)[0].table.notes
    assert f"profiler: {note}" in _text(noted)


# --- what the pass could not do -------------------------------------------------------------------


def test_a_failed_profiler_pass_renders_its_error(run):
    bad = _with_profile(run, {"error": "RuntimeError: profiler exploded <b>"})
    (t,) = [t for t in profile_tables(bad) if t.title.endswith(case_name(bad.records[0]))]
    assert t.rows[0][1].value == "profiler pass failed (see below)" and t.rows[0][1].status == "bad"
    for text in (_text(bad), markdown.render(bad), _html(bad)):
        assert "profiler pass failed: RuntimeError: profiler exploded" in text
    assert "exploded <b>" not in _html(bad)  # escaped like any record text


def test_snapshot_only_records_get_the_snapshot_table(run):
    """--memory-snapshot without --profile on CPU, and an out-of-memory case: the snapshot or why none."""
    why = "memory snapshots record the CUDA caching allocator's history; this case ran on cpu (CUDA only)"
    snap = _with_profile(run, {"memory_snapshot": None, "memory_snapshot_skipped": why})
    snap = _with_profile(snap, {"memory_snapshot": "profiles/r/c/memory_snapshot.oom.pickle",
                                "memory_snapshot_bytes": 123456, "memory_snapshot_how_to_open": "drag onto "
                                "pytorch.org/memory_viz", "memory_snapshot_note": "dumped at the out-of-memory error"},
                         index=1, status="oom", reason="CUDA out of memory")
    tables = profile_tables(snap)
    assert tables[-1].title == "memory snapshots (--memory-snapshot)"
    rows = tables[-1].rows
    assert [r[1].value for r in rows] == ["ok", "oom"]
    assert rows[0][4].value == f"skipped: {why}" and rows[1][2].value.endswith("memory_snapshot.oom.pickle")
    assert rows[1][3].value == 123456 and rows[1][3].unit == "B"
    for text in (_text(snap), markdown.render(snap).replace("\\_", "_"), _html(snap)):
        assert "skipped: memory snapshots record the CUDA caching allocator" in text
        assert "memory_snapshot.oom.pickle" in text
    assert len(tables) == len(profile_tables(run)) - 2 + 1


def test_data_parallel_traces_one_per_rank(run):
    p = {**run.records[0].profile, "summary_of_rank": 0}
    base = p["trace"].removesuffix("trace.json.gz")
    p["trace"] = base + "trace.rank0.json.gz"
    p["traces"] = [p["trace"], base + "trace.rank1.json.gz"]
    dp = _with_profile(run, p)
    case = profile_cases(dp)[0]
    assert [(f.what, f.path, f.size_bytes) for f in case.files] == [
        ("trace (rank 0)", p["traces"][0], p["trace_bytes"]), ("trace (rank 1)", p["traces"][1], None)]
    assert "rank 0's operators" in case.table.notes[0]
    hrefs = [a["href"] for a in Tags(_html(dp)).find("a") if not a["href"].startswith("#")]
    assert hrefs[:2] == p["traces"]
