"""History reports: a per-case trend table (band, sparkline, change points) and a small HTML page of trend figures."""

from __future__ import annotations

import io
from dataclasses import dataclass

from . import units
from .history import (
    BAND_FENCE,
    BAND_WINDOW,
    CHANGE_SCORE,
    CHANGE_WINDOW,
    MIN_BAND_RUNS,
    MIN_STEP_REL,
    Band,
    CaseSummary,
    History,
    Point,
    change_points,
    level_start,
    recent_band,
    sparkline,
    step_rel,
)
from .tables import Cell, Table, line_text

# metric -> (Cell unit, words for titles and notes)
METRIC_UNITS = {
    "time": ("s", "median time per call"),
    "tokens_per_s": ("tok/s", "throughput"),
    "peak_mem_bytes": ("B", "peak memory"),
}

BAND_NOTE = (
    f"band: median ± {BAND_FENCE:g}×IQR of the runs before the latest on this machine, since their last change "
    f"point (the last {BAND_WINDOW} at most, at least {MIN_BAND_RUNS}; quartiles by linear interpolation); "
    f"± = {BAND_FENCE:g}×IQR/median. "
    f"The {BAND_FENCE:g}×IQR fence is rustc-perf's significance threshold (IQR_MULTIPLIER, raised from Tukey's 1.5)"
)
CHANGE_NOTE = (
    f"changes: runs where the median of the next {CHANGE_WINDOW} runs differs from the median of the "
    f"{CHANGE_WINDOW} before by more than {CHANGE_SCORE:g} noise sds (1.4826 × MAD of successive differences "
    f"/ √2) and by more than {MIN_STEP_REL:.0%}; date of the first run at the new level, and the step"
)
LATEST_NOTE = "latest: highlighted when it lies outside the band of the runs before it"


@dataclass(frozen=True)
class CaseHistory:
    """One case on one machine, read for a report.

    Args:
        points: its last max(last, BAND_WINDOW + 1) ok runs, oldest first (change points read them all).
        shown: how many of the newest points the sparkline and figure show.
        band: recent_band of the points before the latest: their noise band since their last
            change point (None: too few); band_from: the index of the first point it reads.
        changes: change_points of the points' values.
    """

    case: CaseSummary
    points: list[Point]
    shown: int
    band: Band | None
    band_from: int
    changes: list[int]

    @property
    def values(self) -> list[float]:
        return [p.value for p in self.points]

    @property
    def title(self) -> str:
        c = self.case
        return f"{c.label} · {c.variant} · {c.size_name}={units.fmt_size(c.size)}"


def case_histories(history: History, fingerprint: str | None = None, case: str | None = None, last: int = 20,
                   metric: str = "time") -> list[CaseHistory]:
    """Every case (per machine fingerprint, or on `fingerprint`) with its series, band and change points.

    `case` picks cases: a case_id, or text found (case-insensitively) in 'label · variant · size'.
    """
    out = []
    for summary in history.cases(fingerprint):
        points = history.series(summary.case_id, summary.fingerprint, last=max(last, BAND_WINDOW + 1),
                                metric=metric)
        values = [p.value for p in points]
        before = values[:-1]
        band_from = max(level_start(before), len(before) - BAND_WINDOW)
        ch = CaseHistory(summary, points, min(last, len(points)), recent_band(before), band_from,
                         change_points(values))
        if case is None or case == summary.case_id or case.casefold() in ch.title.casefold():
            out.append(ch)
    return out


def _changes_text(ch: CaseHistory) -> str:
    first_shown = len(ch.points) - ch.shown
    return ", ".join(
        f"{ch.points[i].created_utc[:10]} ({100 * step_rel(ch.values, i):+.1f}%)"
        for i in ch.changes if i >= first_shown
    )


def _row(ch: CaseHistory, unit: str, machine: bool) -> list[Cell]:
    cells = [Cell(ch.title)]
    if machine:
        cells.append(Cell(ch.case.fingerprint))
    cells.append(Cell(ch.case.ok, note=f"{ch.case.runs - ch.case.ok} more runs did not finish ok"
                      if ch.case.runs > ch.case.ok else None))
    if not ch.points:
        return [*cells, Cell(None), Cell(None), Cell(None), Cell(""), Cell("")]
    latest, band = ch.values[-1], ch.band
    outside = band is not None and not band.low <= latest <= band.high
    cells.append(Cell(latest, unit, status="warn" if outside else None,
                      note="outside the noise band of the runs before it" if outside else None))
    if band is None:
        why = f"fewer than {MIN_BAND_RUNS} runs before the latest at the current level"
        cells += [Cell(None, status="dim", note=why), Cell(None, status="dim", note=why)]
    else:
        cells += [Cell(band.median, unit), Cell(band.half_width_rel, "%", label="±")]
    cells += [Cell(sparkline(ch.values[-ch.shown:])), Cell(_changes_text(ch))]
    return cells


def _machine_notes(history: History, prints: list[str]) -> list[str]:
    fields = {m.fingerprint: m.fields for m in history.fingerprints()}
    return [
        f"machine {fp}: " + ", ".join(f"{k}={v}" for k, v in fields.get(fp, {}).items())
        for fp in prints
    ]


def history_table(history: History, fingerprint: str | None = None, case: str | None = None, last: int = 20,
                  metric: str = "time") -> Table:
    """One row per case and machine: runs, latest, band median and ±, sparkline of the last `last`
    runs, change points; notes name the methods and what each machine fingerprint stands for."""
    unit, words = METRIC_UNITS[metric] if metric in METRIC_UNITS else (None, metric)
    histories = case_histories(history, fingerprint, case, last, metric)
    return _table(history, histories, unit, words, last)


def _table(history: History, histories: list[CaseHistory], unit: str | None, words: str, last: int) -> Table:
    prints = list(dict.fromkeys(ch.case.fingerprint for ch in histories))
    machine = len(prints) > 1
    columns = ["case", *(["machine"] if machine else []), "runs", "latest", "band median", "band",
               f"trend (last {last})", "changes"]
    rows = [_row(ch, unit, machine) for ch in histories]
    notes = [
        f"{words} of each run that finished ok; one row per case and machine fingerprint",
        BAND_NOTE, CHANGE_NOTE, LATEST_NOTE, *_machine_notes(history, prints),
    ]
    if not histories:
        notes.insert(0, "no recorded runs match")
    where = f" on machine {prints[0]}" if len(prints) == 1 else ""
    return Table(f"history — {words} per case{where}", columns, rows, notes)


# --- HTML ---------------------------------------------------------------------------------------------

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{{ csp }}">
<title>{{ table.title }}</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em auto; max-width: 64em; padding: 0 1em; }
table { border-collapse: collapse; } td, th { padding: .2em .6em; border-bottom: 1px solid #ddd; text-align: left; }
td.warn { background: #fff3cd; } td.dim { color: #888; } td.num { text-align: right; }
figure { margin: 1.5em 0; } figcaption { color: #444; } svg { max-width: 100%; height: auto; }
</style>
</head>
<body>
<h1>{{ table.title }}</h1>
<table>
<thead><tr>{% for c in table.columns %}<th>{{ c }}</th>{% endfor %}</tr></thead>
<tbody>
{% for row in rows %}<tr>{% for cell in row %}
<td class="{{ cell.cls }}"{% if cell.note %} title="{{ cell.note }}"{% endif %}>{{ cell.text }}</td>
{% endfor %}</tr>
{% endfor %}</tbody>
</table>
<ul>{% for n in table.notes %}<li>{{ n }}</li>{% endfor %}</ul>
{% for f in figures %}<figure id="fig-{{ loop.index }}">
<h2>{{ f.title }}</h2>
{{ f.svg }}
<figcaption>{{ f.caption }}</figcaption>
</figure>
{% endfor %}</body>
</html>
"""
# No script and no fetch: the page is text, inline styles and inline SVG only.
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"


def _trend_svg(ch: CaseHistory, unit: str | None, words: str) -> str:
    """The case's last `shown` runs as a line, its band shaded, its change points as dashed lines (SVG)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    pts = ch.points[-ch.shown:]
    offset = len(ch.points) - len(pts)
    ref = ch.band.median if ch.band else max(abs(p.value) for p in pts)
    scaled, symbol = units.scale(ref, unit) if unit and ref else (ref, "")
    k = scaled / ref if ref else 1.0
    # a salt of this figure's own keeps the SVG ids of two figures on one page apart, and the bytes stable
    with matplotlib.rc_context({"svg.hashsalt": f"history-{ch.case.case_id}-{ch.case.fingerprint}"}):
        fig = Figure(figsize=(7.0, 2.6), layout="constrained")
        ax = fig.add_subplot()
        xs = list(range(offset + 1, offset + len(pts) + 1))
        if ch.band:  # shaded over the runs it reads, and the latest run it judges
            span = [max(ch.band_from, offset) + 0.5, len(ch.points) + 0.5]
            ax.fill_between(span, ch.band.low * k, ch.band.high * k, color="C0", alpha=0.15, lw=0,
                            label=f"band ±{100 * ch.band.half_width_rel:.1f}%")
            ax.plot(span, [ch.band.median * k] * 2, color="C0", lw=0.8, ls=":")
        ax.plot(xs, [p.value * k for p in pts], color="C0", marker="o", ms=3, lw=1)
        for i in ch.changes:
            if i >= offset:
                ax.axvline(i + 0.5, color="C3", ls="--", lw=1)  # between the last old run and the first new one
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("run (oldest to newest)")
        ax.set_ylabel(f"{words} ({symbol})" if symbol else words)
        if ch.band:
            ax.legend(loc="best", frameon=False, fontsize="small")
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata={"Date": None})
    return buf.getvalue()


def _caption(ch: CaseHistory) -> str:
    pts = ch.points[-ch.shown:]
    parts = [f"case {ch.case.case_id} on machine {ch.case.fingerprint}: {len(pts)} runs, "
             f"{pts[0].created_utc} to {pts[-1].created_utc}"]
    parts.append(f"band: median ± {BAND_FENCE:g}×IQR of the runs before the latest, since the last change" if ch.band
                 else f"no band (fewer than {MIN_BAND_RUNS} runs before the latest at the current level)")
    changes = _changes_text(ch)
    parts.append(f"changes (dashed): {changes}" if changes else "no change points")
    return "; ".join(parts)


def history_html(history: History, fingerprint: str | None = None, case: str | None = None, last: int = 30,
                 metric: str = "time") -> str:
    """A self-contained HTML page: the history table, then one trend figure per case (band shaded,
    change points dashed). Autoescaped: every string from the database is escaped; only the SVG
    matplotlib draws here goes in as markup."""
    from jinja2 import Environment, StrictUndefined
    from markupsafe import Markup

    from .html import embed_svg

    unit, words = METRIC_UNITS[metric] if metric in METRIC_UNITS else (None, metric)
    histories = case_histories(history, fingerprint, case, last, metric)
    table = _table(history, histories, unit, words, last)
    rows = [
        [{"text": "\n".join(line_text(c) for c in cell.lines), "note": cell.note,
          "cls": " ".join(filter(None, [cell.status, "num" if cell.numeric else None]))} for cell in row]
        for row in table.rows
    ]
    figures = [
        {"title": ch.title, "caption": _caption(ch), "svg": Markup(embed_svg(_trend_svg(ch, unit, words)))}
        for ch in histories if ch.points
    ]
    env = Environment(autoescape=True, undefined=StrictUndefined, keep_trailing_newline=True)
    return env.from_string(PAGE).render(csp=CSP, table=table, rows=rows, figures=figures)
