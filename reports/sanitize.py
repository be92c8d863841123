"""Text from data made safe to print: no control character from a results file, an option or an
error message reaches a terminal raw.

A label, variant, warning, path or key name may hold anything (a hand-edited results file, a
hostile suite file): ESC starts an escape sequence (`\\x1b]0;...\\x07` sets the window title,
`\\x1b[2J` clears the screen), CR overwrites the line, bidirectional overrides reorder what is
shown (U+202E). printable() replaces each such character by a visible escape (`\\x1b`, `\\r`,
`\\u202e`), so the text stays readable and says what was there. Stdlib only: cli/main.py uses it
for its one-line errors without importing rich.

On an output that cannot encode a character (PYTHONIOENCODING=ascii, a C locale), encodable()
spells it in ASCII (`·` -> `-`, `±` -> `+/-`: ASCII_FALLBACK; any other as `\\u2581`), before the
layout, so tables stay aligned; cli/output's streams use the same spelling as their error handler.

The terminal renderer (reports/terminal.py) applies it to every string it takes from data, and
the console every command prints through (cli/console.make_console) applies it once more to
every segment of text it writes, so a caller that forgets cannot leak a control character
(rich's own styling escapes are added after, and are not touched).
"""

from __future__ import annotations

import re

# C0 controls but TAB and LF, DEL, C1 controls (CSI U+009B is ESC [ on some terminals), the
# bidirectional marks, embeddings, overrides and isolates, and the Unicode line/paragraph separators.
_UNSAFE = "\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
_CONTROL = re.compile(f"[{_UNSAFE}]")
_CONTROL_OR_LINE = re.compile(f"[{_UNSAFE}\t\n]")
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape(m: re.Match) -> str:
    ch = m.group()
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object, *, lines: bool = True) -> str:
    """`text` (any object: str() of it) with every control character replaced by a visible escape.

    lines=True keeps TAB and LF (a multi-line cell, a note that wraps); lines=False escapes them
    too, for a value that must stay on one line (a path, a name).
    """
    s = text if isinstance(text, str) else str(text)
    pattern = _CONTROL if lines else _CONTROL_OR_LINE
    if pattern.search(s) is None:  # the common case: nothing to replace, no copy
        return s
    return pattern.sub(_escape, s)


def is_printable(text: str, *, lines: bool = True) -> bool:
    """True when printable(text) would return it unchanged."""
    return (_CONTROL if lines else _CONTROL_OR_LINE).search(text) is None


# What the characters xfbench prints become on an output that cannot encode them.
ASCII_FALLBACK = {
    "·": "-", "—": "-", "–": "-", "−": "-", "±": "+/-", "∓": "-/+", "×": "x", "≈": "~", "µ": "u", "μ": "u",
    "≤": "<=", "≥": ">=", "≠": "!=", "…": "...", "→": "->", "←": "<-", "²": "^2", "³": "^3", "√": "sqrt",
    "σ": "sigma", "∞": "inf", "°": " deg", "“": '"', "”": '"', "‘": "'", "’": "'", "é": "e", "ᵀ": "^T",
    "\u00a0": " ",
}


def ascii_fallback(text: str) -> str:
    """`text` in ASCII: ASCII_FALLBACK's spelling where it has one, else a backslash escape."""
    return "".join(
        ch if ch < "\x80" else ASCII_FALLBACK.get(ch) or ch.encode("ascii", "backslashreplace").decode("ascii")
        for ch in text
    )


def encodable(text: str, encoding: str | None) -> str:
    """`text` with each character `encoding` cannot encode spelled by ascii_fallback (unchanged
    for a UTF encoding, or when every character encodes)."""
    if not encoding or encoding.lower().replace("-", "").startswith("utf"):
        return text
    try:
        text.encode(encoding)
        return text
    except (UnicodeEncodeError, LookupError):
        pass
    out = []
    for ch in text:
        try:
            ch.encode(encoding)
            out.append(ch)
        except (UnicodeEncodeError, LookupError):
            out.append(ascii_fallback(ch))
    return "".join(out)
