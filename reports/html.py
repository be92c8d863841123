"""The HTML report: one self-contained file (inline CSS, inline SVG figures, one hashed script).

`render(run)` draws reports.document's Document with the Jinja2 template templates/report.html.j2,
autoescaped: every string from a results file (labels, variants, reasons, info, the record
JSON) is escaped. The only markup passed through unescaped is the SVG reports.figures draws
from this run and this module's own fixed SCRIPT. A Content-Security-Policy meta tag allows no
fetch at all (default-src 'none'), inline styles, data: images and exactly one script: the one
whose SHA-256 it names, computed here from SCRIPT at render time. The page reads the same
without that script; the script only adds sort buttons to table headers and opens every
<details> before printing.

A profiled run (--profile) adds, per case, a bar of operator shares: spans whose only inline
style is their width (the CSP allows inline styles; colours are classes in the stylesheet) and
links to the profiler's files, named relative to the run folder: an href only for a plain
relative path, resolved from where the page goes (`files_base`), text otherwise.

Pure: no file is written, and the same results with the same `generated_utc` render
byte-identical HTML (order comes from the file and the Document, ids from positions and keys).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import posixpath
import re
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .schema import Header, Record, RunResult
from .tables import Cell, Table, line_text
from .units import fmt_bytes, fmt_many

if TYPE_CHECKING:
    from .document import Document

TEMPLATES = Path(__file__).parent / "templates"
TEMPLATE = "report.html.j2"

# What the raw-data appendix holds per record. Every level keeps the case, status and reason;
# 'json' adds the full record JSON (every digit; about 5 KB a record on CPU, so on a large run it
# outweighs the rest of the page), 'samples' the time samples in display units, 'none' leaves the
# appendix out. 'auto' (the default) is 'json' while the records' JSON stays within
# AUTO_JSON_BUDGET bytes, else 'samples', and the page says which and why: a 1,000-record run
# stays under 2 MB, and the results file beside it holds every digit.
RAW_DATA = {
    "json": "case, status, time samples and full record JSON",
    "samples": "case, status and time samples (3 significant digits; the results file holds every digit)",
    "none": "no appendix",
}
AUTO_JSON_BUDGET = 1_000_000

# The page's one script, inline; the CSP below allows it by its hash and nothing else.
# Progressive enhancement: headers of table.sortable get a <button> (keyboard reachable) that
# sorts the rows by data-sort (the raw SI value) where cells have one, else by text; numbers
# stay above text in both directions. Before printing, every <details> opens (and closes again).
SCRIPT = """
(function () {
  "use strict";
  function num(cell) {
    return cell && cell.hasAttribute("data-sort") ? parseFloat(cell.getAttribute("data-sort")) : null;
  }
  function text(cell) {
    return cell ? cell.textContent.trim() : "";
  }
  function sortBy(table, col, th) {
    var dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", dir > 0 ? "ascending" : "descending");
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = num(a.cells[col]), y = num(b.cells[col]);
      if (x !== null && y !== null) return dir * (x - y);
      if (x !== null) return -1;
      if (y !== null) return 1;
      return dir * text(a.cells[col]).localeCompare(text(b.cells[col]), undefined, {numeric: true});
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    if (!table.tHead || !table.tBodies.length) return;
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
      var b = document.createElement("button");
      b.type = "button";
      b.className = "sort";
      b.title = "sort by this column";
      while (th.firstChild) b.appendChild(th.firstChild);
      th.appendChild(b);
      b.addEventListener("click", function () { sortBy(table, col, th); });
    });
  });
  window.addEventListener("beforeprint", function () {
    document.querySelectorAll("details:not([open])").forEach(function (d) {
      d.setAttribute("data-reclose", "");
      d.open = true;
    });
  });
  window.addEventListener("afterprint", function () {
    document.querySelectorAll("details[data-reclose]").forEach(function (d) {
      d.removeAttribute("data-reclose");
      d.open = false;
    });
  });
})();
"""

# An inline <svg> needs no namespace declarations (the HTML parser puts it, and xlink:href, in
# their namespaces), and matplotlib's comments and RDF metadata carry nothing the page shows but
# its own URLs; dropping them keeps the page free of any URL and smaller.
_SVG_NOISE = re.compile(r"<!--.*?-->\s*|<metadata>.*?</metadata>\s*", re.S)
_XMLNS = re.compile(r'\s+xmlns(?::[\w-]+)?="[^"]*"')
# matplotlib escapes '<' and '>' in text and attribute values, so each match is inside a real tag
_ACTIVE = re.compile(r"<\s*(script|foreignobject|iframe)\b|<[^>]*\s(on[a-z]+\s*=|(xlink:)?href\s*=\s*\"(?!#))", re.I)


def script_hash(script: str = SCRIPT) -> str:
    """The CSP source that allows exactly `script`: 'sha256-<base64 of its UTF-8 digest>'."""
    digest = hashlib.sha256(script.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode('ascii')}'"


def content_security_policy(script: str = SCRIPT) -> str:
    """No fetch of any kind; inline styles (the page's and the SVGs'), data: images, one script."""
    return (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
        f"script-src {script_hash(script)}; base-uri 'none'; form-action 'none'"
    )


def embed_svg(svg: str) -> str:
    """reports.figures' SVG as inline markup: from its <svg> tag on, without comments, metadata
    or namespace declarations. Refuses markup that could run script (matplotlib writes none)."""
    start = svg.find("<svg")
    if start < 0:
        raise ValueError("figure markup holds no <svg> element")
    body = _XMLNS.sub("", _SVG_NOISE.sub("", svg[start:]))
    if _ACTIVE.search(body):
        raise ValueError("figure SVG holds active content (a script, a handler or an outside link)")
    return body.strip()


class _Ids:
    """Unique, deterministic HTML ids: a repeated base gets -2, -3, ..."""

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}

    def __call__(self, base: str) -> str:
        n = self.seen.get(base, 0) + 1
        self.seen[base] = n
        return base if n == 1 else f"{base}-{n}"


def _sort_attr(c: Cell) -> str | None:
    """data-sort: the raw SI value of a numeric cell, exact (repr), so sorting ignores display units."""
    if not c.numeric or not math.isfinite(c.value):
        return None
    return repr(c.sort_key)


def cell_view(c: Cell) -> dict[str, Any]:
    """One table cell for the template: its lines (label, value, CI, suffix each, via
    tables.line_text), class by status, its note as a title, data-sort when numeric."""
    lines = [
        {"text": line_text(line), "cls": line.status if i else None, "title": line.note if i else None}
        for i, line in enumerate(c.lines)
    ]
    classes = [x for x in (c.status, "num" if c.numeric else None) if x]
    return {"cls": " ".join(classes) or None, "title": c.note, "sort": _sort_attr(c), "lines": lines}


def table_view(t: Table, table_id: str, sortable: bool) -> dict[str, Any]:
    return {
        "id": table_id,
        "title": t.title,
        "columns": t.columns,
        "rows": [[cell_view(c) for c in row] for row in t.rows],
        "notes": t.notes,
        "sortable": sortable and len(t.rows) > 1,
    }


def _command_line(h: Header) -> str:
    return shlex.join(["xfbench", *h.argv]) if h.argv else h.command


def header_view(h: Header) -> dict[str, Any]:
    own = h.xfbench or {}
    commit = own.get("commit")
    built = f"xfbench {own.get('version') or h.tool_version}" + (
        f" at {commit[:12]}" + (" (dirty)" if own.get("dirty") else "") if commit else ""
    )
    return {"run_id": h.run_id, "command": _command_line(h), "created_utc": h.created_utc, "xfbench": built}


def record_view(r: Record, index: int, with_json: bool = True) -> dict[str, Any]:
    """One record of the raw-data appendix: identity, status, its samples in one display unit
    (units.fmt_many), and its full JSON (compact, every digit kept)."""
    t = r.time
    return {
        "id": f"rec-{index}",
        "case_id": r.case_id,
        "run_id": r.run_id,
        "label": r.label,
        "variant": r.variant,
        "size": f"{r.size_name}={r.size}",
        "status": r.status,
        "cls": {"oom": "bad", "error": "bad", "skipped": "dim"}.get(r.status),
        "reason": r.reason,
        "warnings": ", ".join(r.warnings),
        "samples": fmt_many(t.samples_s, "s") if t is not None else None,
        "samples_of": (f"per call, one per window: {t.n} windows of {t.calls_per_sample} "
                       f"call{'s' if t.calls_per_sample != 1 else ''}, {t.clock} clock") if t else None,
        "json": json.dumps(r.model_dump(mode="json"), ensure_ascii=False, separators=(",", ":")) if with_json else None,
    }


def _records_view(records: list[Record], raw_data: str) -> tuple[list[dict[str, Any]] | None, str]:
    """The appendix's records at level `raw_data` (RAW_DATA or 'auto'), and a line saying what it holds."""
    if raw_data not in (*RAW_DATA, "auto"):
        raise ValueError(f"raw_data {raw_data!r}: choose one of auto, {', '.join(RAW_DATA)}")
    if raw_data == "none":
        return None, RAW_DATA["none"]
    views, size = [], 0
    for i, r in enumerate(records, 1):
        v = record_view(r, i, with_json=raw_data != "samples" and (raw_data == "json" or size <= AUTO_JSON_BUDGET))
        size += len(v["json"].encode("utf-8")) if v["json"] is not None else 0
        views.append(v)
    if raw_data == "json" or (raw_data == "auto" and size <= AUTO_JSON_BUDGET):
        return views, RAW_DATA["json"]
    for v in views:  # past the budget, no record's JSON is shown (nor computed further)
        v["json"] = None
    note = RAW_DATA["samples"]
    if raw_data == "auto":
        note += (f"; the record JSON (over {fmt_bytes(AUTO_JSON_BUDGET)}) is left out "
                 "(choose raw data 'json' to include it)")
    return views, note


# The bar of operator shares (reports.profile_report.segments): one colour per top operator, in
# the order of the table's '#' (Tableau 10, readable on the light and the dark background), a
# grey for the other ops and a hatched grey for the time outside ops / device idle (classes in
# the template's stylesheet; only the widths are inline styles, which the CSP allows).
BAR_COLOURS = 10
# A path the record names relative to the run folder becomes a link only when it is plainly
# that: no scheme, not absolute, no '..', no backslash or control character (a results file is
# data, and a crafted one must not put a javascript: or outside URL on the page).
_SAFE_PATH = re.compile(r"^(?![/~])[A-Za-z0-9._+=@,\- ][A-Za-z0-9._+=@,\- /]*$")


def _file_href(path: str, files_base: str | None) -> str | None:
    """The href of a file named relative to the run folder, from a page whose folder reaches the
    run folder by `files_base` ('' = the page is in the run folder; None = not known: no link)."""
    from urllib.parse import quote

    if files_base is None or not _SAFE_PATH.match(path) or ".." in path.split("/"):
        return None
    return quote(posixpath.join(files_base, path) if files_base else path, safe="/._-~+=@,")


def _segment_colour(key: str) -> str:
    """The colour class of a bar segment (and its legend swatch)."""
    if key.isdigit():
        return f"seg-{(int(key) - 1) % BAR_COLOURS}"
    return "seg-other" if key == "other" else "seg-rest"


def profile_view(case: Any, table: dict[str, Any], files_base: str | None) -> dict[str, Any]:
    """One profiled case for the template: its bar (a segment per table row with a share; widths
    in % of the bar, to 3 decimals), its table, and its files as links (or text, see _file_href)."""
    from .units import fmt_bytes, fmt_pct

    bar = [
        {
            "key": seg.key,
            "colour": _segment_colour(seg.key),
            "width": f"{100 * seg.width:.3f}%",
            "share": repr(seg.share),
            "label": seg.label,
            "share_text": fmt_pct(seg.share),
        }
        for seg in case.segments
    ]
    files = [
        {
            "what": f.what,
            "path": f.path,
            "href": _file_href(f.path, files_base),
            "size": fmt_bytes(f.size_bytes) if f.size_bytes is not None else None,
            "how": f.how_to_open,
        }
        for f in case.files
    ]
    unlinked = [f for f in files if f["href"] is None]
    if unlinked and files_base is None:
        from .profile_report import UNLOCATED_NOTE

        files_note = UNLOCATED_NOTE
    elif unlinked:
        files_note = "a path that is not a plain relative path inside the run folder is shown as text, not linked"
    else:
        files_note = None
    from .profile_report import file_text

    summary = ", ".join(f"{b['label']} {b['share_text']}" for b in bar)
    listed = {file_text(f) for f in case.files}  # the list under the table shows (and links) these
    return {
        "id": f"{table['id']}-case",
        "name": case.name,
        "caption": "operators by self time per step (torch.profiler)",
        "table": {**table, "notes": [n for n in table["notes"] if n not in listed]},
        "bar": bar,
        "bar_label": f"share of the profiled step: {summary}" if bar else "",
        "bar_note": case.bar_note,
        "files": files,
        "files_note": files_note,
    }


def _slot(i: int) -> str:
    """Where figure i goes in the rendered page until it is drawn: a comment no escaped text can
    contain (escaping turns every '<' of record text into '&lt;')."""
    return f"<!--xfbench-figure-{i}-->"


def document_view(doc: Document, raw_data: str = "auto", files_base: str | None = "") -> dict[str, Any]:
    """Everything the template draws, from a reports.document.Document: escaped text, and
    Markup only for the fixed SCRIPT and the figure slots (_slot), which render_document
    replaces with this run's figures. `files_base`: how the page's folder reaches the run folder,
    for links to the profiler's files (see render)."""
    from markupsafe import Markup

    from .document import slug

    ids = _Ids()
    sections = []
    slots = iter(range(sum(len(s.figures) for s in doc.sections)))
    for s in doc.sections:
        figures = [
            {
                "id": ids(f"fig-{slug(spec.key)}"),
                "title": spec.title,
                "caption": spec.caption,
                "svg": Markup(_slot(next(slots))),
            }
            for spec in s.figures
        ]
        sid = ids(s.key)
        tables = [table_view(t, ids(f"{sid}-table-{i}"), sortable=True) for i, t in enumerate(s.tables, 1)]
        by_table = {id(t): v for t, v in zip(s.tables, tables, strict=True)}
        profiles = [profile_view(c, by_table[id(c.table)], files_base) for c in s.profiles if id(c.table) in by_table]
        drawn = {p["table"]["id"] for p in profiles}
        sections.append({"id": sid, "title": s.title, "intro": s.intro, "figures": figures, "tables": tables,
                         "profiles": profiles, "rest": [t for t in tables if t["id"] not in drawn]})
    environment = [table_view(t, ids(f"environment-table-{i}"), sortable=False)
                   for i, t in enumerate(doc.environment, 1)]
    records, raw_note = _records_view(doc.run.records, raw_data)
    return {
        "title": doc.title,
        "generated_utc": doc.generated_utc,
        "runs": [header_view(h) for h in doc.run.headers or [doc.run.header]],
        "summary": doc.summary,
        "notes": doc.notes,
        "sections": sections,
        "environment": environment,
        "methodology": [
            {"id": ids(f"methodology-{slug(heading)}"), "heading": heading, "paragraphs": paragraphs}
            for heading, paragraphs in doc.methodology
        ],
        "records": records,
        "raw_note": raw_note,
        "has_profiles": any(s["profiles"] for s in sections),
        "csp": content_security_policy(SCRIPT),
        "script": Markup(SCRIPT),
    }


def render_document(doc: Document, *, raw_data: str = "auto",
                    svgs: Callable[[], list[str]] | None = None, files_base: str | None = "") -> str:
    """The HTML of an already built reports.document.Document (see render and document_view).

    `svgs` gives the inline SVG of each section figure in order once they are drawn (render
    starts drawing them on the other cores first); by default they are drawn here. The page is
    rendered before waiting for them, and each goes into its slot.
    """
    from .figures import start_inline_svgs

    if svgs is None:
        svgs = start_inline_svgs(doc.run, [spec for s in doc.sections for spec in s.figures])
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    page = env.get_template(TEMPLATE).render(**document_view(doc, raw_data=raw_data, files_base=files_base))
    for i, svg in enumerate(svgs()):
        slot = _slot(i)
        if page.count(slot) != 1:
            raise ValueError(f"figure slot {i} appears {page.count(slot)} times in the page, not once")
        page = page.replace(slot, embed_svg(svg))
    return page


def render(run: RunResult, *, generated_utc: str | None = None, raw_data: str = "auto",
           files_base: str | None = "") -> str:
    """The self-contained HTML report of `run`.

    Args:
        run: a loaded results file (reports.store.load_results).
        generated_utc: the timestamp the page prints; default now, or SOURCE_DATE_EPOCH when set
            (reports.render.generated_utc). Pass one to render reproducibly.
        raw_data: what the raw-data appendix holds per record: 'json' (samples and the full record
            JSON), 'samples', 'none' (no appendix), or 'auto' (default: 'json' up to
            AUTO_JSON_BUDGET bytes of record JSON, else 'samples'); see RAW_DATA.
        files_base: the run folder as seen from the folder the page is written to, for links to
            the profiler's files (their paths are relative to the run folder): '' (default) when
            the page goes into the run folder (report.html, as every sweep writes it), a relative
            path ('../runs/x') when elsewhere, None when not known: the paths are then text.
    """
    from .document import build_document, figure_order
    from .figures import figure_specs, start_inline_svgs

    specs = figure_specs(run)
    figures = start_inline_svgs(run, figure_order(run, specs))  # drawn on the other cores while the page renders
    doc = build_document(run, generated_utc=generated_utc, specs=specs)
    return render_document(doc, raw_data=raw_data, svgs=figures, files_base=files_base)
