"""The paper and CI renderers (LaTeX, Markdown, CSV): snapshots of the fixtures, determinism,
hostile strings rendered inert, LaTeX that compiles and is well formed, units in headers."""

from __future__ import annotations

import csv
import io
import math
import os
import re
import shutil
import struct
import subprocess
import warnings
import zlib
from pathlib import Path

import pytest

from xfbench.reports import csv_report, latex, markdown, terminal
from xfbench.reports.document import build_document
from xfbench.reports.store import load_results
from xfbench.reports.tables import Cell, Table, column_unit
from xfbench.reports.units import steps_for

FIXTURES = Path(__file__).parent / "fixtures"
SNAPSHOTS = Path(__file__).parent / "snapshots"
STAMP = "2026-01-02T03:04:05Z"
HOSTILE = r"<script>alert(1)</script> \input{/etc/passwd} a|b `x` _&%$# { } ~ ^ \"q\" [c] *s* -- ''"


def load(name: str):
    return load_results(FIXTURES / f"{name}.jsonl")


# --- snapshots -------------------------------------------------------------------------

CASES = {
    "latex_attention.tex": lambda: latex.render(load("report_attention"), generated_utc=STAMP),
    "latex_model.tex": lambda: latex.render(load("report_model"), generated_utc=STAMP),
    "latex_attention_standalone.tex": lambda: latex.render(
        load("report_attention"), generated_utc=STAMP, standalone=True, figures=["figures/attention_time.pdf"]
    ),
    "markdown_attention.md": lambda: markdown.render(load("report_attention"), generated_utc=STAMP),
    "markdown_model.md": lambda: markdown.render(load("report_model"), generated_utc=STAMP),
    "markdown_model_summary.md": lambda: markdown.render(load("report_model"), summary_only=True),
    "markdown_results_v1.md": lambda: markdown.render(load("results_v1"), generated_utc=STAMP),
    "csv_attention.csv": lambda: csv_report.render(load("report_attention")),
    "csv_model.csv": lambda: csv_report.render(load("report_model")),
    "csv_results_v1.csv": lambda: csv_report.render(load("results_v1")),
    "terminal_report_attention.txt": lambda: terminal.render_text(load("report_attention")),
    "terminal_report_model.txt": lambda: terminal.render_text(load("report_model")),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_snapshot(name):
    """Compared exactly; XFBENCH_UPDATE_SNAPSHOTS=1 rewrites the snapshot (and the test passes)."""
    text = CASES[name]()
    path = SNAPSHOTS / name
    if os.environ.get("XFBENCH_UPDATE_SNAPSHOTS") == "1":
        path.write_text(text, encoding="utf-8")
        warnings.warn(f"snapshot written: {path}", stacklevel=1)
        return
    assert path.exists(), f"no snapshot {path}; run with XFBENCH_UPDATE_SNAPSHOTS=1 to write it"
    assert text == path.read_text(encoding="utf-8"), (
        f"{name} changed; if intended, rerun with XFBENCH_UPDATE_SNAPSHOTS=1 and review the diff"
    )


@pytest.mark.parametrize("name", sorted(CASES))
def test_rendering_twice_gives_the_same_text(name):
    assert CASES[name]() == CASES[name]()


def test_without_a_timestamp_nothing_depends_on_the_clock():
    run = load("report_attention")
    assert latex.render(run) == latex.render(run) and "generated" not in latex.render(run)
    assert "generated" not in markdown.render(run)
    assert f"generated {STAMP}" in markdown.render(run, generated_utc=STAMP)


# --- hostile strings -------------------------------------------------------------------


def hostile_run():
    """The attention fixture with HOSTILE in labels, variants, a reason, params, info and argv."""
    run = load("report_attention")
    records = []
    for i, r in enumerate(run.records):
        update = {
            "label": f"att {HOSTILE}",
            "params": {**r.params, "evil": HOSTILE, "formula": "=1+2", "neg": "-1.5"},
            "info": {**r.info, "evil": HOSTILE, "at": "@SUM(A1)"},
        }
        if r.variant == "naive":
            update["variant"] = f"naive {HOSTILE}"
        if r.variant == "flash":
            update["variant"] = "=HYPERLINK(\"http://x\")"
        if i == 0:
            update.update(status="error", reason=f"+{HOSTILE}", time=None, memory=None, metrics={})
        records.append(r.model_copy(update=update))
    header = run.header.model_copy(update={"argv": [*run.header.argv, HOSTILE]})
    return run.model_copy(update={"records": records, "header": header, "headers": [header]})


# What latex.escape writes for each character it maps, read back (the test's own decoder).
DETEX = [
    (r"\textbackslash{}", "\\"), (r"\{", "{"), (r"\}", "}"), (r"\$", "$"), (r"\&", "&"), (r"\#", "#"),
    (r"\%", "%"), (r"\_", "_"), (r"\~{}", "~"), (r"\^{}", "^"), (r"\textless{}", "<"),
    (r"\textgreater{}", ">"), (r"\textbar{}", "|"), (r"{\ttfamily\char34}", '"'), ("{[}", "["), ("{]}", "]"),
    ("{*}", "*"), ("-{}", "-"), ("'{}", "'"), ("`{}", "`"), (",{}", ","),
]
SPECIAL = set("\\{}$&#^_%~<>|\"[]*")


def detex(tex: str) -> str:
    """Read escaped text back; raise if a special character is left unescaped."""
    out, i = [], 0
    while i < len(tex):
        for macro, ch in DETEX:
            if tex.startswith(macro, i):
                out.append(ch)
                i += len(macro)
                break
        else:
            assert tex[i] not in SPECIAL, f"unescaped {tex[i]!r} at {i} in {tex!r}"
            assert not tex.startswith("--", i) and not tex.startswith("''", i), f"ligature at {i} in {tex!r}"
            out.append(tex[i])
            i += 1
    return "".join(out)


@pytest.mark.parametrize(
    "text", [HOSTILE, r"\input{/etc/passwd}", "|`_&%$#{}~^", "a--b ''c'' ``d`` ,,e", "[x] *y*", '"q"']
)
def test_latex_escape_leaves_no_special_character_live_and_reads_back_exactly(text):
    tex = latex.escape(text)
    assert tex.isascii() and "\\input" not in tex
    assert detex(tex) == text


def test_latex_escape_maps_the_reports_symbols_to_macros_pdflatex_knows():
    assert latex.escape("12 µs ±2% · 3×4 ≈ 5 — é") == (
        r"12 $\mu$s $\pm$2\% $\cdot$ 3$\times$4 $\approx$ 5 \textemdash{} \'{e}"
    )
    assert latex.escape("\u2603 tab\tnew\nline") == "? tab new line"


def test_latex_renders_hostile_strings_inert():
    tex = latex.render(hostile_run(), standalone=True, environment=True)
    assert tex.isascii()
    assert "\\input{" not in tex and "<script" not in tex and "_&%$#" not in tex
    assert latex.escape(f"att {HOSTILE}") in tex  # the caption and the scaling table's cells
    assert latex.escape(f"naive {HOSTILE}") in tex  # a column header
    assert latex.escape(f"+{HOSTILE}") in tex  # the failed case's reason, in the notes
    check_structure(tex)


def unescaped_pipes(line: str) -> int:
    """Pipes not preceded by an odd number of backslashes (GFM's cell separators)."""
    return sum(1 for m in re.finditer(r"(\\*)\|", line) if len(m.group(1)) % 2 == 0)


def test_markdown_escape():
    assert markdown.escape("a|b") == r"a\|b"
    assert markdown.escape("<script>&") == "&lt;script&gt;&amp;"
    assert markdown.escape("`x` *y* _z_ [l](u) ~s~ $m$ \\") == r"\`x\` \*y\* \_z\_ \[l\](u) \~s\~ \$m\$ \\"
    assert markdown.escape("two\nlines") == "two lines"
    assert markdown.block("# head") == r"\# head" and markdown.block("- item") == r"\- item"
    assert markdown.block("1. one") == r"1\. one" and markdown.block("12) x") == r"12\) x"


def test_markdown_renders_hostile_strings_inert():
    md = markdown.render(hostile_run(), environment=True)
    assert "<script" not in md and "&lt;script&gt;" in md
    assert r"\\input{/etc/passwd}" in md  # an escaped backslash: shown, not a Markdown escape
    assert unescaped_pipes(md.replace("|", "")) == 0  # sanity of the counter
    tables = 0
    lines = md.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("|") and (i == 0 or not lines[i - 1].startswith("|")):  # a table's header
            tables += 1
            width = unescaped_pipes(line)
            j = i
            while j < len(lines) and lines[j].startswith("|"):
                assert unescaped_pipes(lines[j]) == width, lines[j]
                j += 1
    assert tables == len(build_document(hostile_run(), "-").tables) + 2  # + environment, calibration
    for line in lines:  # every backtick in the output comes from the data, escaped
        assert not re.search(r"(?<!\\)`", line), line


def test_markdown_never_mentions_a_user_named_in_a_label():
    assert markdown.escape("ping @octocat") == "ping @\u2060octocat"
    assert not re.search(r"@\w", markdown.escape("a@b @c"))


def test_csv_round_trips_hostile_strings_and_defuses_formulas():
    run = hostile_run()
    rows = list(csv.DictReader(io.StringIO(csv_report.render(run))))
    assert len(rows) == len(run.records)
    first, by_variant = rows[0], {r["variant"]: r for r in rows}
    assert first["label"] == f"att {HOSTILE}" and first["params.evil"] == HOSTILE and first["info.evil"] == HOSTILE
    assert first["status"] == "error" and first["reason"] == f"'+{HOSTILE}" and first["time_median_s"] == ""
    assert first["params.formula"] == "'=1+2" and first["info.at"] == "'@SUM(A1)"
    assert first["params.neg"] == "-1.5"  # a number as text is no formula
    assert "'=HYPERLINK(\"http://x\")" in by_variant
    assert f"naive {HOSTILE}" in by_variant


# --- CSV contents ----------------------------------------------------------------------


def test_csv_columns_and_full_precision():
    run = load("report_model")
    rows = list(csv.reader(io.StringIO(csv_report.render(run))))
    header = rows[0]
    assert header[: len(csv_report.FIXED)] == csv_report.FIXED and header[-1] == "warnings"
    tail = header[len(csv_report.FIXED):-1]
    for group in ("params", "metrics", "info"):
        keys = [h.split(".", 1)[1] for h in tail if h.startswith(group + ".")]
        assert keys == sorted({k for r in run.records for k in getattr(r, group)})
    for rec, row in zip(run.records, rows[1:], strict=True):
        d = dict(zip(header, row, strict=True))
        assert float(d["time_median_s"]) == rec.time.median_s  # repr: exact
        assert float(d["time_ci_rel"]) == rec.time.ci_rel and int(d["time_n"]) == rec.time.n
        assert int(d["memory_peak_bytes"]) == rec.memory.peak_bytes
        assert float(d["metrics.tokens_per_s"]) == rec.metrics["tokens_per_s"]
        assert d["warnings"] == ";".join(rec.warnings)
        assert "samples" not in ",".join(header)


def test_csv_keeps_the_latest_record_of_a_case_unless_asked_for_all():
    run = load("report_attention")
    rerun = run.records[0].model_copy(update={"status": "oom", "reason": "rerun", "time": None})
    run = run.model_copy(update={"records": [*run.records, rerun]})
    latest_rows = list(csv.DictReader(io.StringIO(csv_report.render(run))))
    every = list(csv.DictReader(io.StringIO(csv_report.render(run, all_records=True))))
    assert len(latest_rows) == 16 and len(every) == 17
    assert latest_rows[0]["status"] == "oom" and every[0]["status"] == "ok" and every[-1]["reason"] == "rerun"


# --- LaTeX structure, digits and units ------------------------------------------------


def split_cells(row: str) -> list[str]:
    return [c.strip() for c in re.split(r"(?<!\\)&", row)]


def latex_tables(tex: str) -> list[dict]:
    """Each top-level tabular: its column spec, header cells and body rows (cells split on &)."""
    out, current, part = [], None, None
    for line in tex.splitlines():
        if line.startswith(r"\begin{tabular}{"):
            current = {"spec": line[len(r"\begin{tabular}{"):-1], "header": None, "rows": [], "rules": []}
            out.append(current)
        elif current is None:
            continue
        elif line in (r"\toprule", r"\midrule", r"\bottomrule"):
            current["rules"].append(line)
            part = {"\\toprule": "header", "\\midrule": "rows", "\\bottomrule": None}[line]
        elif line.startswith(r"\end{tabular}"):
            current = None
        elif part == "header":
            current["header"] = split_cells(line.removesuffix(r" \\"))
        elif part == "rows":
            assert line.endswith(r" \\"), line
            current["rows"].append(split_cells(line.removeprefix(r"\addlinespace ").removesuffix(r" \\")))
    return out


@pytest.mark.parametrize("fixture", ["report_attention", "report_model", "results_v1"])
def test_latex_structure(fixture):
    run = load(fixture)
    tex = latex.render(run, environment=True)
    doc = build_document(run, "-")
    check_structure(tex, len(doc.tables) + len(doc.environment))


def check_structure(tex: str, count: int | None = None) -> None:
    tables = latex_tables(tex)
    assert tex.count(r"\begin{table}[t]") == len(tables) == tex.count(r"\end{table}")
    if count is not None:
        assert len(tables) == count
    for t in tables:
        assert t["rules"] == [r"\toprule", r"\midrule", r"\bottomrule"]
        assert re.fullmatch("[lr]+", t["spec"]), t["spec"]
        for row in [t["header"], *t["rows"]]:
            assert len(row) == len(t["spec"]), row
    for n in ("toprule", "midrule", "bottomrule"):
        assert tex.count("\\" + n) == len(tables)
    labels = re.findall(r"\\label\{(tab:[a-z0-9-]+)\}", tex)
    assert len(labels) == len(tables) == len(set(labels))


def test_latex_digits_follow_the_ci_and_the_unit_moves_to_the_header():
    t = Table("t", ["name", "time", "tokens"], [
        [Cell("a"), Cell(0.0101234, "s", ci_rel=0.02), Cell(1234.5, "tok/s")],
        [Cell("b"), Cell(0.0101234, "s", ci_rel=0.001), Cell(2345.6, "tok/s")],
        [Cell("c"), Cell(0.0201234, "s", ci_rel=0.3, ci_level=0.75), Cell(None, "tok/s")],
    ])
    (parsed,) = latex_tables(latex.table_tex(t, "t"))
    assert parsed["spec"] == "lrr" and parsed["header"] == ["name", "time (ms)", "tokens (ktok/s)"]
    assert parsed["rows"] == [
        ["a", r"10.1 $\pm$2.0\%", "1.23"],
        ["b", r"10.12 $\pm$0.1\%", "2.35"],
        ["c", r"20 $\pm$30.0\% (75\% CI)", "-"],
    ]


def test_latex_stacked_cells_nest_a_tabular_with_units_inline():
    t = Table("t", ["N", "impl"], [[Cell(128, "size"), Cell(0.0006, "s", ci_rel=0.05, status="warn", more=(
        Cell(5.5e10, "FLOP/s"), Cell(0.48, "ratio", suffix=" of peak")))]])
    (parsed,) = latex_tables(latex.table_tex(t, "t"))
    assert parsed["header"] == ["N", "impl"]  # stacked cells keep their units inline
    assert parsed["rows"] == [[
        "128", r"{\itshape \begin{tabular}[t]{@{}r@{}}600 $\mu$s $\pm$5.0\%\\ 55 GFLOP/s\\ 0.48 of peak\end{tabular}}"
    ]]


def shown_digits(number: str) -> int:
    return len(number.replace(".", "").replace("-", "").lstrip("0"))


def test_model_headers_carry_the_unit_and_cells_the_scaled_number():
    run = load("report_model")
    doc = build_document(run, "-")
    parsed = latex_tables(latex.render(run))
    assert len(parsed) == len(doc.tables)
    checked = 0
    for table, tex in zip(doc.tables, parsed, strict=True):
        for j, name in enumerate(table.columns):
            cells = [row[j] for row in table.rows]
            symbol = column_unit(cells)
            if symbol is None:
                continue
            assert tex["header"][j] == latex.escape(f"{name} ({symbol})")
            for cell, row in zip(cells, tex["rows"], strict=True):
                m = re.fullmatch(r"(?:\{\\itshape )?(-?[\d,]+(?:\.\d+)?)(?: \$\\pm\$.*)?\}?", row[j])
                assert m, row[j]
                number = m.group(1).replace(",", "")
                factor = dict((s, f) for f, s in steps_for(cell.unit))[symbol]
                last_place = 10 ** (math.floor(math.log10(abs(float(number)))) - shown_digits(number) + 1)
                assert abs(float(number) - cell.value / factor) <= last_place / 2 * (1 + 1e-9), (row[j], cell)
                checked += 1
    assert checked >= 20  # step time, FLOP/s, tokens/s and the memory columns of three tables


# --- compiling -------------------------------------------------------------------------


def tiny_png() -> bytes:
    """A 1x1 white PNG, so the standalone document's \\includegraphics has a file to read."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)) + chunk(
        b"IDAT", zlib.compress(b"\x00\xff")) + chunk(b"IEND", b"")


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not on PATH (texlive not installed)")
@pytest.mark.parametrize("which", ["hostile", "report_model"])
def test_the_standalone_document_compiles_with_pdflatex(tmp_path, which):
    run = hostile_run() if which == "hostile" else load(which)
    (tmp_path / "fig.png").write_bytes(tiny_png())
    tex = latex.render(run, generated_utc=STAMP, standalone=True, environment=True, figures=["fig.png"])
    # report every glyph the fonts lack in the log (a dropped character would be silent)
    (tmp_path / "doc.tex").write_text(tex.replace("\\begin{document}", "\\tracinglostchars=1\n\\begin{document}"))
    out = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "-no-shell-escape", "doc.tex"],
        cwd=tmp_path, capture_output=True, text=True, timeout=180,
    )
    log = (tmp_path / "doc.log").read_text(errors="replace")
    assert out.returncode == 0, log[-3000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 1000
    assert "Missing character" not in log and "Undefined control sequence" not in log


def test_figures_become_floats_and_unsafe_file_names_are_refused():
    run = load("report_attention")
    tex = latex.render(run, standalone=True, figures=["figs/attention_time.pdf", "b.png"])
    assert tex.count(r"\includegraphics") == 2 and r"\includegraphics[width=\linewidth]{b.png}" in tex
    assert tex.startswith("% ") and r"\usepackage{booktabs}" in tex and tex.rstrip().endswith(r"\end{document}")
    for bad in ["a b.pdf", "x}\\input{/etc/passwd}.pdf", "../up.pdf", "-x.pdf", "é.pdf"]:
        with pytest.raises(ValueError, match="figure file name"):
            latex.render(run, standalone=True, figures=[bad])
    floats = latex.render(run, figures=["b.png"])  # for the caller's own document
    assert r"\documentclass" not in floats and r"\includegraphics[width=\linewidth]{b.png}" in floats


def test_a_short_row_keeps_the_column_count_in_both_renderers():
    t = Table("t", ["a", "b", "c"], [[Cell("x")], [Cell(1.0, "s"), Cell("y"), Cell("z")]])
    (parsed,) = latex_tables(latex.table_tex(t, "t"))
    assert [len(r) for r in parsed["rows"]] == [3, 3]
    assert {unescaped_pipes(line) for line in markdown.table_md(t).splitlines() if line.startswith("|")} == {4}
