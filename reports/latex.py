"""LaTeX renderer: the document's tables as booktabs floats for a paper, or a standalone document.

Every string from a results file is escaped into plain ASCII that pdflatex typesets as text in
any font encoding (OT1 or T1): TeX specials become their text macros, ligature pairs are broken,
and the non-ASCII symbols the reports use become math or accent macros, so a label such as
`\\input{/etc/passwd}` prints as itself. A table's preamble needs `booktabs` and `graphicx` (its
tabular shrinks to the line width when it is wider; \\resizebox never enlarges it).
"""

from __future__ import annotations

import math
import re
import unicodedata

from .document import Document, build_document, slug
from .schema import RunResult
from .tables import Cell, Table, ci_text, column_unit, numeric_column, paper_digits, value_text
from .units import plain, scale, steps_for

PACKAGES = ("booktabs", "graphicx")  # what \input{tables.tex} needs in the caller's preamble
# How a cell's status shows (the terminal's colours), said under each table that has one.
LEGEND = {"bad": "bold: the case failed", "warn": "italic: the cell carries a warning (see the notes)"}

# TeX's specials, and the characters OT1 prints as something else (< > | " and the quotes),
# as macros that typeset the character itself in OT1 and T1 alike.
_ASCII = {
    "\\": r"\textbackslash{}",
    "{": r"\{",
    "}": r"\}",
    "$": r"\$",
    "&": r"\&",
    "#": r"\#",
    "%": r"\%",
    "_": r"\_",
    "~": r"\~{}",
    "^": r"\^{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "|": r"\textbar{}",
    '"': r"{\ttfamily\char34}",
    "[": "{[}",  # a cell opening with [ or * after \\ would read as \\[len] or \\*
    "]": "{]}",
    "*": "{*}",
}
# The non-ASCII the reports write (units, formulas), in forms pdflatex needs no extra font for.
_UNICODE = {
    "µ": r"$\mu$",
    "μ": r"$\mu$",
    "·": r"$\cdot$",
    "±": r"$\pm$",
    "≈": r"$\approx$",
    "×": r"$\times$",
    "≤": r"$\leq$",
    "≥": r"$\geq$",
    "≠": r"$\neq$",
    "→": r"$\rightarrow$",
    "←": r"$\leftarrow$",
    "∞": r"$\infty$",
    "√": r"$\surd$",
    "²": r"$^2$",
    "³": r"$^3$",
    "°": r"$^\circ$",
    "—": r"\textemdash{}",
    "–": r"\textendash{}",
    "…": r"\ldots{}",
    "‘": "`",
    "’": "'",
    "“": "``",
    "”": "''",
    "ß": r"\ss{}",
    "\u00a0": "~",
}
# combining marks (after NFD) -> the accent macro that puts them on the letter before them
_ACCENTS = {
    "\u0300": "`", "\u0301": "'", "\u0302": "^", "\u0303": "~", "\u0308": '"',
    "\u0327": "c", "\u030a": "r", "\u030c": "v",
}
# Pairs TeX fonts fuse into one glyph (-- en dash, `` '' quotes, ,, low quote, !` ?` inverted).
_LIGATURE_FIRST = {"-": "-", "`": "`", "'": "'", ",": ",", "!": "`", "?": "`"}


def escape(text: object) -> str:
    """`text` as LaTeX that typesets exactly these characters: ASCII only, no live macro."""
    s = unicodedata.normalize("NFC", str(text))
    out: list[str] = []
    for i, ch in enumerate(s):
        nxt = s[i + 1] if i + 1 < len(s) else ""
        if ch in _ASCII:
            out.append(_ASCII[ch])
        elif ch in _UNICODE:
            out.append(_UNICODE[ch])
        elif ch in "\n\r\t":
            out.append(" ")
        elif ch.isascii():
            if ch.isprintable():
                out.append(ch + ("{}" if _LIGATURE_FIRST.get(ch) == nxt else ""))
        else:
            out.append(_fallback(ch))
    return "".join(out)


def _fallback(ch: str) -> str:
    """An accented Latin letter as its accent macro (é -> \\'{e}); anything else '?'."""
    base, *marks = unicodedata.normalize("NFD", ch)
    if base.isascii() and base.isalpha() and all(m in _ACCENTS for m in marks):
        text = base
        for m in marks:
            text = f"\\{_ACCENTS[m]}{{{text}}}"
        return text
    return "?"


def _line(c: Cell, symbol: str | None) -> str:
    """One line of a cell, escaped; under a header that carries `symbol`, the bare number in it."""
    if symbol is not None and c.numeric and math.isfinite(c.value):
        scaled, sym = scale(c.value, c.unit)
        if sym != symbol:  # column_unit promises one symbol; stay right should it not
            scaled = c.value / dict((s, f) for f, s in steps_for(c.unit))[symbol]
        return escape(plain(scaled, paper_digits(c)) + ci_text(c))
    if c.unit == "count" and c.numeric and math.isfinite(c.value) and "e" in value_text(c):
        mantissa, _, exp = value_text(c).partition("e")  # 2.028e20 -> $2.028\times10^{20}$
        number = f"${mantissa}\\times10^{{{int(exp)}}}$"
        return escape(c.label) + number + escape(f"{ci_text(c)}{c.suffix}")
    return escape(f"{c.label}{value_text(c, paper_digits(c))}{ci_text(c)}{c.suffix}")


def _cell(c: Cell, symbol: str | None, align: str) -> str:
    lines = [_line(x, symbol) for x in c.lines]
    body = lines[0] if len(lines) == 1 else (
        f"\\begin{{tabular}}[t]{{@{{}}{align}@{{}}}}" + r"\\ ".join(lines) + r"\end{tabular}"
    )
    if c.status == "bad":
        return f"{{\\bfseries {body}}}"
    if c.status == "warn":
        return f"{{\\itshape {body}}}"
    return body


def _note(note: str) -> str:
    return (r"\quad " if note[:1].isspace() else "") + escape(note.strip())


def _padded(row: list[Cell], width: int) -> list[Cell]:
    """A row as wide as the header: a short one gets blank cells (the tabular's & count holds)."""
    return [*row[:width], *[Cell("")] * (width - len(row))]


def table_tex(t: Table, label: str) -> str:
    """One table float: caption and label above, booktabs tabular, the notes small below it."""
    width = len(t.columns)
    columns = [[row[j] for row in t.rows if j < len(row)] for j in range(width)]
    symbols = [column_unit(cells) for cells in columns]
    aligns = ["r" if numeric_column(cells) else "l" for cells in columns]
    header = [escape(name + (f" ({sym})" if sym else "")) for name, sym in zip(t.columns, symbols, strict=True)]
    marked = {c.status for row in t.rows for c in row}
    stacked = any(c.more for row in t.rows for c in row)  # space between rows of stacked cells
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        f"\\caption{{{escape(t.title)}}}",
        f"\\label{{tab:{label}}}",
        r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%",
        f"\\begin{{tabular}}{{{''.join(aligns)}}}",
        r"\toprule",
        " & ".join(header) + r" \\",
        r"\midrule",
        *(
            (r"\addlinespace " if i and stacked else "")
            + " & ".join(_cell(c, symbols[j], aligns[j]) for j, c in enumerate(_padded(row, width))) + r" \\"
            for i, row in enumerate(t.rows)
        ),
        r"\bottomrule",
        r"\end{tabular}}",
    ]
    notes = [_note(n) for n in t.notes]
    legend = [text for status, text in LEGEND.items() if status in marked]
    if legend:
        notes.append(escape("; ".join(legend)))
    if notes:
        lines += [r"\par\smallskip", r"{\footnotesize\raggedright", *(f"{n}\\par" for n in notes), "}"]
    lines.append(r"\end{table}")
    return "\n".join(lines)


def _labels(tables: list[Table]) -> list[str]:
    """A unique label per table from its title (a-z, 0-9 and dashes: safe in \\label)."""
    seen: dict[str, int] = {}
    out = []
    for t in tables:
        base = slug(t.title)[:60].strip("-") or "table"
        seen[base] = seen.get(base, 0) + 1
        out.append(base if seen[base] == 1 else f"{base}-{seen[base]}")
    return out


_SAFE_PATH = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]*")


def _figure(name: str) -> str:
    if not _SAFE_PATH.fullmatch(name) or ".." in name:
        raise ValueError(f"figure file name {name!r}: use letters, digits and . _ / - only")
    return "\n".join([
        r"\begin{figure}[t]",
        r"\centering",
        f"\\includegraphics[width=\\linewidth]{{{name}}}",
        r"\end{figure}",
    ])


def render_document(
    doc: Document, *, standalone: bool = False, figures: list[str] | tuple[str, ...] = (),
    environment: bool = False, stamp: bool = True,
) -> str:
    """The LaTeX of `doc` (see render)."""
    tables = doc.tables + (doc.environment if environment else [])
    floats = [table_tex(t, label) for t, label in zip(tables, _labels(tables), strict=True)]
    floats += [_figure(f) for f in figures]
    head = [f"% {escape(doc.title)}" + (f" (generated {escape(doc.generated_utc)})" if stamp else "")]
    head.append(f"% needs \\usepackage{{{','.join(PACKAGES)}}}")
    if not standalone:
        return "\n".join(head) + "\n\n" + "\n\n".join(floats) + "\n"
    preamble = [
        r"\documentclass{article}",
        *(f"\\usepackage{{{p}}}" for p in PACKAGES),
        r"\usepackage[margin=2cm]{geometry}",
        r"\begin{document}",
        f"\\section*{{{escape(doc.title)}}}",
        *([escape(f"generated {doc.generated_utc}") + r"\par"] if stamp else []),
        *[escape(n) + r"\par" for n in doc.notes],
    ]
    body = [*floats, "\\clearpage\n\\end{document}"]
    return "\n".join([*head, *preamble]) + "\n\n" + "\n\n".join(body) + "\n"


def render(
    run: RunResult, *, generated_utc: str | None = None, standalone: bool = False,
    figures: list[str] | tuple[str, ...] = (), environment: bool = False,
) -> str:
    """The tables of `run` as LaTeX: one booktabs `table` float each (environment tables too with
    `environment=True`), then a `figure` float per file name in `figures` (files the caller wrote
    beside it); `standalone=True` wraps them in a document that compiles on its own. A pure
    function of the results file and `generated_utc` (printed only when given)."""
    doc = build_document(run, generated_utc=generated_utc or "-")
    return render_document(
        doc, standalone=standalone, figures=figures, environment=environment, stamp=generated_utc is not None
    )
