"""Report figures: which figures a run has, what they plot, and byte-identical, inline-safe output."""

from __future__ import annotations

import re
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import psutil
import pytest

from xfbench.reports import figures
from xfbench.reports.figures import FORMATS, FigureSpec, build_figure, figure_specs, inline_svg, render_figure
from xfbench.reports.scaling import fit_series
from xfbench.reports.schema import Header, MemoryStats, Record, RunResult, TimeStats
from xfbench.reports.select import latest
from xfbench.reports.store import load_results
from xfbench.reports.units import fmt_exponent

FIXTURES = Path(__file__).parent / "fixtures"
ATTENTION_LABEL = "attention fwd · float32 · full · B=1 H=8 d=64"
HOSTILE = ["<script>alert(1)</script>", "&", "$x$", "_%#"]


@pytest.fixture(scope="module")
def attention() -> RunResult:
    return load_results(FIXTURES / "report_attention.jsonl")


@pytest.fixture(scope="module")
def model() -> RunResult:
    return load_results(FIXTURES / "report_model.jsonl")


def _time(median: float, low: float | None = None, high: float | None = None, level: float = 0.95) -> TimeStats:
    return TimeStats(
        n=10, calls_per_sample=1, warmup_calls=2, median_s=median, mean_s=median, min_s=median, max_s=median,
        p10_s=median, p90_s=median, iqr_s=0.0, iqr_over_median=0.0, ci_level=level,
        ci_low_s=low if low is not None else 0.97 * median, ci_high_s=high if high is not None else 1.04 * median,
        ci_rel=0.04, target_ci_rel=0.02, converged=True, total_s=10 * median, clock="perf_counter",
        samples_s=[median] * 10,
    )


def _rec(variant: str, size: float, *, workload: str = "parallel", label: str = "parallel ddp · float32",
         size_name: str = "world_size", status: str = "ok", median: float | None = None, peak: int | None = None,
         case: str | None = None, **metrics) -> Record:
    ok = status == "ok"
    return Record(
        run_id="r", case_id=case or f"{label}-{variant}-{size}", workload=workload, label=label, variant=variant,
        size=size, size_name=size_name, params={"dtype": "float32"}, device="cpu", status=status,
        reason=None if ok else f"{status} reason",
        time=_time(median if median is not None else 1e-3 * size) if ok else None,
        memory=MemoryStats(method="vmhwm", peak_bytes=peak if peak is not None else int(2**20 * size)) if ok else None,
        metrics=metrics if ok else {},
    )


def _run(records: list[Record], calibration: dict | None = None) -> RunResult:
    env = {"calibration": calibration} if calibration else {}
    header = Header(run_id="r", tool_version="t", created_utc="2025-01-01T00:00:00+00:00", command="x",
                    environment=env)
    return RunResult(header=header, records=records, headers=[header])


def _spec(run: RunResult, kind: str, label: str | None = None) -> FigureSpec:
    (spec,) = [s for s in figure_specs(run) if s.kind == kind and (label is None or s.label == label)]
    return spec


def _legend_texts(fig) -> list[str]:
    return [t.get_text() for t in fig.legends[0].get_texts()]


def _svg_text(svg: str) -> list[str]:
    """The text of every <text> element (what a reader sees), XML entities decoded."""
    root = ET.fromstring(svg)
    return ["".join(e.itertext()) for e in root.iter("{http://www.w3.org/2000/svg}text")]


# --- which figures ----------------------------------------------------------------------------


def test_the_attention_run_gets_time_memory_with_every_variant_and_a_roofline(attention):
    specs = figure_specs(attention)
    assert [(s.kind, s.label) for s in specs] == [("time_memory", ATTENTION_LABEL), ("roofline", None)]
    tm, roof = specs
    assert tm.key == "time-memory-attention-fwd-float32-full-b1-h8-d64" and roof.key == "roofline-attention"
    assert tm.workload == roof.workload == "attention"
    fig = build_figure(attention, tm)
    assert _legend_texts(fig) == ["naive", "sdpa", "flash", "lstm"]  # the recurrent baseline beside attention
    assert "calibration-bd419d0616824612.json" in roof.caption and "115 GFLOP/s" in roof.caption


def test_the_model_run_gets_time_memory_model_scaling_and_decode_floor(model):
    kinds = [(s.kind, s.label.split(" ·")[0] if s.label else None) for s in figure_specs(model)]
    assert kinds == [
        ("time_memory", "model train"), ("time_memory", "model prefill"), ("time_memory", "model decode"),
        ("model_scaling", "model train"), ("model_scaling", "model prefill"),
        ("decode_floor", "model decode"),
        ("roofline", None),  # decode records carry an intensity and the run calibrated read bandwidth
    ]
    decode = _spec(model, "decode_floor")
    assert "Cache-resident, plotted without a floor" in decode.caption and "eager at params=957K" in decode.caption
    assert "read 19.2 GB/s" in decode.caption


def test_an_unknown_workload_still_gets_time_and_memory():
    run = _run([_rec(v, n) for v in ("ddp", "fsdp") for n in (1, 2, 4, 8)])
    (spec,) = figure_specs(run)
    assert (spec.kind, spec.workload, spec.label) == ("time_memory", "parallel", "parallel ddp · float32")
    assert "vs world_size" in spec.title
    assert render_figure(run, spec).startswith(b"<?xml")


def test_keys_are_unique_filename_safe_stems_even_when_labels_slug_alike():
    run = _run([_rec("a", n, label=label) for label in ("x=1", "x1", "é" * 3, "L" * 200) for n in (1, 2)])
    keys = [s.key for s in figure_specs(run)]
    assert keys[:2] == ["time-memory-x1", "time-memory-x1-2"]
    assert len(set(keys)) == 4 and all(re.fullmatch(r"[a-z0-9-]{1,90}", k) for k in keys)


def test_figures_read_the_latest_record_of_each_case():
    rerun = _rec("ddp", 2, status="error", case="c2")
    run = _run([_rec("ddp", 1), rerun, _rec("ddp", 2, case="c2"), _rec("ddp", 4)])
    spec = _spec(run, "time_memory")
    assert "Not plotted" not in spec.caption
    ax = build_figure(run, spec).axes[0]
    assert list(ax.lines[0].get_xdata()) == [1.0, 2.0, 4.0]


def test_no_calibration_no_roofline(attention):
    bare = attention.model_copy(deep=True)
    for h in bare.headers:
        h.environment.pop("calibration", None)
    assert [s.kind for s in figure_specs(bare)] == ["time_memory"]


# --- what they plot ---------------------------------------------------------------------------


def test_time_memory_is_log_log_with_unit_ticks_and_ci_error_bars(attention):
    spec = _spec(attention, "time_memory")
    fig = build_figure(attention, spec)
    ax_t, ax_m = fig.axes
    assert all(ax.get_xscale() == ax.get_yscale() == "log" for ax in (ax_t, ax_m))
    ticks = [t.get_text() for ax in (ax_t, ax_m) for t in ax.get_xticklabels() + ax.get_yticklabels()]
    assert {"128", "1024", "1 ms", "10 ms", "1 MiB", "16 MiB"} <= set(ticks)
    assert not any("e-" in t or "$" in t or "×" in t for t in ticks)  # no offsets, no mathtext
    assert ax_t.get_ylabel() == "median time per call (s)" and ax_m.get_ylabel() == "peak memory (bytes)"
    naive = sorted((r for r in latest(attention.records) if r.variant == "naive"), key=lambda r: r.size)
    (bars,) = [c for c in ax_t.collections if c.get_label() == "CI: naive"]
    got = [[float(v) for point in seg for v in point] for seg in bars.get_segments()]
    assert got == [[r.size, r.time.ci_low_s, r.size, r.time.ci_high_s] for r in naive]  # exactly the CI bounds


def test_the_svg_holds_each_fitted_slope(attention):
    svg = render_figure(attention, _spec(attention, "time_memory")).decode()
    texts = _svg_text(svg)
    for fit in fit_series(latest(attention.records)):
        assert f"k={fmt_exponent(fit.time_exponent)}" in texts
        assert f"k={fmt_exponent(fit.memory_exponent)}" in texts


def test_failed_records_are_not_plotted_and_an_oom_is_marked_and_listed():
    recs = [_rec("ddp", n) for n in (1, 2, 4)] + [_rec("ddp", 8, status="oom"), _rec("fsdp", 1, status="skipped"),
                                                  _rec("fsdp", 2), _rec("fsdp", 4)]
    run = _run(recs)
    spec = _spec(run, "time_memory")
    assert "ddp: oom at world_size=8" in spec.caption and "fsdp: skipped at world_size=1" in spec.caption
    fig = build_figure(run, spec)
    ax_t = fig.axes[0]
    assert [list(line.get_xdata()) for line in ax_t.lines[:2]] == [[1, 2, 4], [2, 4]]
    (mark,) = [line for line in ax_t.lines if line.get_marker() == "x"]
    assert list(mark.get_xdata()) == [8.0]
    assert _legend_texts(fig)[-1] == "OOM (not plotted)"


def test_roofline_draws_both_roofs_of_the_records_traffic_kind(attention, model):
    fig = build_figure(attention, _spec(attention, "roofline"))
    (ax,) = fig.axes
    assert ax.get_xscale() == ax.get_yscale() == "log"
    texts = {t.get_text() for t in ax.texts}
    assert texts == {"float32 peak 115 GFLOP/s", "copy 20.3 GB/s"}  # attention's floors divide by copy
    roof_texts = {t.get_text() for t in build_figure(model, _spec(model, "roofline")).axes[0].texts}
    assert "read 19.2 GB/s" in roof_texts  # decode's floors divide by read


def test_model_scaling_plots_measured_solid_beside_analytic_dashed(model):
    spec = _spec(model, "model_scaling", label=next(s.label for s in figure_specs(model) if "train" in s.label))
    fig = build_figure(model, spec)
    ax_tps, ax_mfu, ax_mem = fig.axes
    assert ax_tps.get_xscale() == "log" and ax_mfu.get_yscale() == "linear"
    recs = sorted((r for r in latest(model.records) if r.label == spec.label), key=lambda r: r.size)
    measured, analytic = ax_mem.lines
    assert measured.get_linestyle() == "-" and analytic.get_linestyle() == "--"
    assert list(measured.get_ydata()) == [r.memory.peak_bytes for r in recs]
    assert list(analytic.get_ydata()) == [r.info["mem_analytic_step_bytes"] for r in recs]
    assert list(ax_mfu.lines[0].get_ydata()) == [r.metrics["mfu_measured"] for r in recs]
    assert [t.get_text() for t in ax_tps.get_xticklabels()] == ["957K", "10.5M"]


def test_decode_floor_plots_floors_where_they_exist(model):
    spec = _spec(model, "decode_floor")
    (ax,) = build_figure(model, spec).axes
    recs = sorted((r for r in latest(model.records) if r.label == spec.label), key=lambda r: r.size)
    time_line, floor_line = ax.lines
    assert list(time_line.get_ydata()) == [r.time.median_s for r in recs]
    # the 1M model is cache-resident (no floor); the 10M one has its floor
    assert list(floor_line.get_xdata()) == [recs[1].size]
    assert list(floor_line.get_ydata()) == [recs[1].metrics["bandwidth_floor_s"]]
    assert [t.get_text() for t in ax.texts] == ["cache-resident"]


# --- output -----------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_same_results_render_the_same_bytes(model, fmt):
    spec = _spec(model, "decode_floor")
    assert render_figure(model, spec, fmt) == render_figure(model, spec, fmt)


def test_svg_has_no_date_and_pdf_embeds_truetype_without_dates(model):
    spec = _spec(model, "decode_floor")
    svg = render_figure(model, spec, "svg")
    assert b"<dc:date>" not in svg and b"<text" in svg  # text stays text (svg.fonttype none)
    pdf = render_figure(model, spec, "pdf")
    assert b"/FontFile2" in pdf and b"/Type3" not in pdf  # TrueType (Type 42), not Type 3
    assert b"/CreationDate" not in pdf and b"/ModDate" not in pdf


def test_png_size_follows_dpi(model):
    spec = _spec(model, "decode_floor")

    def size(dpi: int) -> tuple[int, int]:
        png = render_figure(model, spec, "png", dpi=dpi)
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
        return struct.unpack(">II", png[16:24])

    (w1, h1), (w2, h2) = size(100), size(200)
    assert (w2, h2) == (2 * w1, 2 * h1)
    assert (w1, h1) == (500, 360)  # figsize 5 x 3.6 in


def test_inlined_svgs_share_no_id_and_every_reference_resolves(attention):
    tm, roof = figure_specs(attention)
    a, b = inline_svg(attention, tm), inline_svg(attention, roof)
    assert a.startswith("<svg") and "<?xml" not in a and "<!DOCTYPE" not in a
    assert a == inline_svg(attention, tm)
    ids_a, ids_b = (set(re.findall(r'\bid="([^"]+)"', s)) for s in (a, b))
    assert ids_a and ids_b and not ids_a & ids_b
    for svg, ids in ((a, ids_a), (b, ids_b)):
        refs = set(re.findall(r'(?:href="#|url\(#)([^")]+)', svg))
        assert refs and refs <= ids
        ET.fromstring(svg)  # still well-formed XML


def test_render_figures_names_each_file_by_key_and_format(model):
    out = figures.render_figures(model, formats=("svg", "png"), dpi=50)
    keys = [s.key for s in figure_specs(model)]
    assert list(out) == [f"{k}.{f}" for k in keys for f in ("svg", "png")]
    with pytest.raises(ValueError, match="figure format 'gif'"):
        figures.render_figures(model, formats=("gif",))
    with pytest.raises(ValueError, match="figure format 'jpg'"):
        render_figure(model, figure_specs(model)[0], "jpg")


def test_hostile_names_render_as_text_escaped_and_never_as_math():
    label = "<b>lab</b> & $y$"
    run = _run([_rec(v, n, label=label) for v in HOSTILE for n in (1, 2, 4)])
    (spec,) = figure_specs(run)
    assert re.fullmatch(r"[a-z0-9-]+", spec.key)
    fig = build_figure(run, spec)
    assert _legend_texts(fig) == HOSTILE  # '_%#' too: labels starting with '_' are not dropped
    svg = render_figure(run, spec).decode()
    assert "<script" not in svg and "&lt;script&gt;alert(1)&lt;/script&gt;" in svg and "&amp;" in svg
    texts = _svg_text(svg)
    assert set(HOSTILE) <= set(texts)  # '$x$' shown as typed (text.parse_math off), not as an italic x
    for fmt in ("pdf", "png"):
        assert render_figure(run, spec, fmt)


def test_importing_the_module_does_not_import_matplotlib():
    code = "import sys, xfbench.reports.figures; print(sorted(m for m in sys.modules if m.startswith('matplotlib')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_the_style_ships_beside_the_module_and_is_applied():
    assert figures.STYLE.is_file() and figures.STYLE.suffix == ".mplstyle"
    run = _run([_rec("ddp", n) for n in (1, 2)])
    fig = build_figure(run, figure_specs(run)[0])
    ax = fig.axes[0]
    assert not ax.spines["top"].get_visible() and not ax.spines["right"].get_visible()
    assert ax.lines[0].get_color().lower() == "#0072b2"  # Okabe-Ito blue, the cycle's first


def test_renders_leave_global_rcparams_alone_and_are_the_same_from_threads(attention):
    import matplotlib as mpl

    before = dict(mpl.rcParams)
    specs = figure_specs(attention)
    alone = [render_figure(attention, s) for s in specs]
    assert dict(mpl.rcParams) == before
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        together = list(pool.map(lambda s: render_figure(attention, s), specs * 2))
    assert together == alone * 2


def test_a_run_without_memory_or_records_still_renders():
    assert figure_specs(_run([])) == [] and figures.render_figures(_run([])) == {}
    recs = [_rec("ddp", n) for n in (1, 2, 4)]
    for r in recs:
        r.memory = None
    run = _run(recs)
    (spec,) = figure_specs(run)
    assert "No peak memory measured for: ddp." in spec.caption
    assert "no memory measured" in _svg_text(render_figure(run, spec).decode())


def test_a_spec_of_another_run_is_refused_with_its_name(attention, model):
    with pytest.raises(ValueError, match="no timed records"):
        render_figure(model, figure_specs(attention)[0])


def test_every_way_of_drawing_many_figures_gives_the_same_bytes(monkeypatch):
    """Drawn here, by forked workers, or by warm_up's drawer: the same bytes in the same order; a
    drawer that died is replaced by workers forked here."""
    run = load_results(FIXTURES / "report_model.jsonl")
    jobs = [(s, "svg") for s in figure_specs(run)]
    assert len(jobs) >= figures.PARALLEL_MIN
    here = [render_figure(run, s, f) for s, f in jobs]
    if figures._usable_cores() < 2:
        pytest.skip("one usable core: figures are always drawn in this process")
    monkeypatch.setattr(figures, "_DRAWER", None)
    workers = figures.render_many(run, jobs)
    assert workers.where == "workers" and workers.result() == here
    figures.warm_up()
    proc, _ = figures._DRAWER
    try:
        drawer = figures.render_many(run, jobs)
        assert drawer.where == "drawer" and drawer.result() == here
        # its workers are gone before the reply comes: a caller that exits at once orphans none
        assert psutil.Process(proc.pid).children() == []
    finally:
        proc.kill()
        proc.join()
    again = figures.render_many(run, jobs)
    assert again.where == "workers" and again.result() == here


@pytest.mark.parametrize("wait_s", [0.0, 0.5])
def test_a_process_that_exits_while_its_drawer_works_leaves_nothing_holding_its_output(wait_s):
    """A caller reading the command's output waits for every holder of the pipe: the drawer and its
    workers must all be gone when the process exits, whether or not the figures were collected."""
    if figures._usable_cores() < 2:
        pytest.skip("one usable core: no drawer is started")
    code = (
        "import time\n"
        "from pathlib import Path\n"
        "from xfbench.reports import figures\n"
        "from xfbench.reports.store import load_results\n"
        f"run = load_results(Path({str(FIXTURES / 'report_model.jsonl')!r}))\n"
        "figures.warm_up()\n"
        "pending = figures.render_many(run, [(s, f) for s in figures.figure_specs(run) for f in ('svg', 'pdf')])\n"
        f"time.sleep({wait_s})\n"
        "print(pending.where, flush=True)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "drawer", out.stderr
    assert "Traceback" not in out.stderr, out.stderr


def test_byte_ticks_are_few_powers_of_two():
    """A bytes axis over many decades gets at most five ticks (the labels never collide)."""
    from xfbench.reports.figures import BYTE_TICKS_MAX, _byte_ticks

    assert _byte_ticks(512, 2**28) == [2.0**10, 2.0**15, 2.0**20, 2.0**25]  # 1 KiB, 32 KiB, 1 MiB, 32 MiB
    assert _byte_ticks(1e6, 8.5e6) == [2.0**20, 2.0**21, 2.0**22, 2.0**23]
    for lo, hi in [(1, 2**60), (3, 5), (1e3, 1e12)]:
        ticks = _byte_ticks(lo, hi)
        assert 1 <= len(ticks) <= BYTE_TICKS_MAX


def test_control_characters_in_labels_and_variants_never_reach_a_figure_raw():
    """A hand-edited results file's ESC/BEL/bidi override in a label or variant: the SVG stays well-formed
    XML (a raw ESC made it ill-formed) and shows the characters escaped, and no missing-glyph warning."""
    import warnings

    label, variant = "evil\x1b]0;title\x07 · float32", "v\x1b[2J\u202e"
    run = _run([_rec(variant, s, label=label, workload="attention", size_name="seq_len") for s in (256, 512, 1024)])
    spec = _spec(run, "time_memory")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 'Glyph 27 missing from font' was one warning per character
        svg = render_figure(run, spec, "svg").decode("utf-8")
        render_figure(run, spec, "png")
    assert "\x1b" not in svg and "\x07" not in svg and "\u202e" not in svg
    assert "v\\x1b[2J\\u202e" in _svg_text(svg)  # the legend; _svg_text parses: the SVG is well-formed XML
