"""Markdown renderer: GitHub-flavoured Markdown for a pull-request comment or $GITHUB_STEP_SUMMARY.

A title, the summary findings as bullets (warnings and failures marked), then each table as a
pipe table under its title, its notes listed below. Every string from a results file is escaped
so it shows as text: HTML entities for & < >, backslashes for Markdown's punctuation (a `|` in a
label never adds a column, `<script>` never reaches the page as a tag).
"""

from __future__ import annotations

import re

from .document import Document, build_document
from .schema import RunResult
from .tables import Cell, Table, ci_text, numeric_column, paper_digits, value_text

MARKS = {"bad": "❌", "warn": "⚠️"}  # a finding's or a cell's status, in front of its text
# '@' gets a WORD JOINER (U+2060) after it: invisible, but a label holding '@name' never
# mentions (notifies) that user in a pull-request comment.
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "@": "@\u2060"}
# Markdown punctuation that could start emphasis, code, links, strikethrough, math or a table
# cell; backslash first, so an escape in the data cannot cancel ours.
_PUNCT = set("\\`*_[]|~$")
# What only means something at the start of a line: a heading, a list item, a setext underline,
# a numbered item ('>' is already &gt;).
_BLOCK_START = re.compile(r"^(#|[-+=]|\d+[.)])")


def escape(text: object) -> str:
    """`text` as inline Markdown that renders as exactly this text, on one line (a table cell)."""
    s = " ".join(str(text).splitlines())
    return "".join(
        _ENTITIES[ch] if ch in _ENTITIES else f"\\{ch}" if ch in _PUNCT else ch
        for ch in s
        if ch.isprintable() or ch == " "
    )


def block(text: object) -> str:
    """escape(text) for the start of a line or list item, where # - + = and '1.' begin blocks."""
    s = escape(text)
    m = _BLOCK_START.match(s)
    if not m:
        return s
    cut = m.end() - 1 if m.group(0)[0].isdigit() else 0  # escape the '.' of '1.', else the mark
    return s[:cut] + "\\" + s[cut:]


def _line(c: Cell) -> str:
    """One line of a cell: label, value (to the digits its CI supports), CI, suffix."""
    return escape(f"{c.label}{value_text(c, paper_digits(c))}{ci_text(c)}{c.suffix}")


def _cell(c: Cell) -> str:
    text = "<br>".join(_line(x) for x in c.lines)
    mark = MARKS.get(c.status or "")
    return f"{mark} {text}" if mark and text else text


def table_md(t: Table) -> str:
    """A table's title in bold, the pipe table, then its notes as a list."""
    width = len(t.columns)
    columns = [[row[j] for row in t.rows if j < len(row)] for j in range(width)]
    rule = ["---:" if numeric_column(cells) else ":---" for cells in columns]
    lines = [f"**{escape(t.title)}**", ""]
    lines.append("| " + " | ".join(escape(c) for c in t.columns) + " |")
    lines.append("|" + "|".join(rule) + "|")
    for row in t.rows:
        cells = [_cell(c) for c in row[:width]] + [""] * (width - len(row))
        lines.append("| " + " | ".join(cells) + " |")
    if t.notes:
        lines.append("")
        lines += [("  - " if n[:1].isspace() else "- ") + block(n.strip()) for n in t.notes]
    return "\n".join(lines)


def _finding(f) -> str:
    mark = MARKS.get(f.status or "")
    word = {"bad": "**problem:** ", "warn": "**warning:** "}.get(f.status or "", "")
    return f"- {mark + ' ' if mark else ''}{word}{block(f.text) if not word else escape(f.text)}"


def render_document(
    doc: Document, *, summary_only: bool = False, environment: bool = True, stamp: bool = True
) -> str:
    """The Markdown of `doc` (see render)."""
    runs = doc.run.headers or [doc.run.header]
    lines = [f"# {escape(doc.title)}", ""]
    lines += [
        block(f"run {h.run_id} · {h.command} · {h.created_utc} · xfbench {h.tool_version}") + "  " for h in runs
    ]
    if stamp:
        lines.append(block(f"generated {doc.generated_utc}"))
    lines.append("")
    if doc.notes:
        lines += [f"- {MARKS['warn']} **note:** {escape(n)}" for n in doc.notes] + [""]
    lines += ["## Summary", ""]
    lines += [_finding(f) for f in doc.summary] or ["- no findings: the file holds no measured case"]
    if not summary_only:
        for s in doc.sections:
            lines += ["", f"## {escape(s.title)}", ""]
            lines += [block(text) for text in s.intro]
            for t in s.tables:
                lines += ["", table_md(t)]
        if environment and doc.environment:
            lines += ["", "<details><summary>Environment</summary>"]
            for t in doc.environment:
                lines += ["", table_md(t)]
            lines += ["", "</details>"]
    return "\n".join(lines) + "\n"


def render(
    run: RunResult, *, generated_utc: str | None = None, summary_only: bool = False, environment: bool = True
) -> str:
    """`run` as GitHub Markdown: the title, the findings, each workload's tables, and (folded,
    with `environment`) each run's environment; `summary_only=True` stops after the findings.
    A pure function of the results file and `generated_utc` (printed only when given)."""
    doc = build_document(run, generated_utc=generated_utc or "-")
    return render_document(doc, summary_only=summary_only, environment=environment,
                           stamp=generated_utc is not None)
