"""The HTML report: snapshots, byte-identical renders, hostile record text rendered inert, the CSP
and its script hash, the raw-data appendix, and no jinja2 at import."""

from __future__ import annotations

import base64
import difflib
import hashlib
import html as htmllib
import json
import os
import re
import shlex
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from markupsafe import escape

from xfbench.reports import html as report_html
from xfbench.reports.html import SCRIPT, render
from xfbench.reports.store import load_results
from xfbench.reports.tables import line_text, result_cell

FIXTURES = Path(__file__).parent / "fixtures"
SNAPSHOTS = Path(__file__).parent / "snapshots"
STAMP = "2026-12-02T00:00:00Z"
UPDATE = os.environ.get("XFBENCH_UPDATE_SNAPSHOTS") == "1"

HOSTILE = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    r"\input{/etc/passwd}",
    "|",
    "`whoami`",
    "_&%$#",
    "https://evil.example/x.js",
]
EVIL = " ".join(HOSTILE)
# attributes a browser loads, follows or submits to
URL_ATTRS = {"src", "href", "xlink:href", "action", "formaction", "data", "poster", "srcset", "background", "ping"}


class Page(HTMLParser):
    """Every start tag with its attributes, the text of each script, and all other text."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self.text: list[str] = []
        self._in_script = False
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"
        if self._in_script:
            self.scripts.append("")

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts[-1] += data
        else:
            self.text.append(data)


@pytest.fixture(scope="module")
def pages() -> dict[str, str]:
    """Each fixture's report, rendered once for the module (figures take a second or two)."""
    return {
        name: render(load_results(FIXTURES / f"report_{name}.jsonl"), generated_utc=STAMP)
        for name in ("attention", "model")
    }


def without_svg(text: str) -> str:
    """Each inline <svg>...</svg> replaced by a placeholder naming its <figure>, so a snapshot
    does not change with matplotlib's drawing."""
    out, n = re.subn(r'(<figure id="([^"]+)">)\s*<svg\b.*?</svg>', r'\1\n<svg data-snapshot="\2"/>', text,
                     flags=re.S)
    assert text.count("<svg") == n, "an <svg> outside a <figure>"
    return out


@pytest.mark.parametrize("name", ["attention", "model"])
def test_html_matches_snapshot(pages, name):
    got = without_svg(pages[name])
    path = SNAPSHOTS / f"html_{name}.html"
    if UPDATE or not path.exists():
        path.write_text(got, encoding="utf-8")
        if not UPDATE:
            pytest.fail(f"wrote the missing snapshot {path.name}; check it and run again")
    assert got == path.read_text(encoding="utf-8"), (
        f"{path.name} differs: if the change is intended, rerun with XFBENCH_UPDATE_SNAPSHOTS=1"
    )


def first_difference(a: str, b: str) -> str:
    diff = difflib.unified_diff(a.splitlines(), b.splitlines(), lineterm="", n=0)
    return "\n".join(line[:200] for line in list(diff)[:12])


def test_two_renders_are_byte_identical(pages):
    run = load_results(FIXTURES / "report_attention.jsonl")
    again = render(run, generated_utc=STAMP)
    assert again == pages["attention"], first_difference(pages["attention"], again)
    assert render(run, generated_utc="2030-01-01T00:00:00Z") != pages["attention"]


def test_the_page_has_every_part(pages):
    page = pages["attention"]
    run = load_results(FIXTURES / "report_attention.jsonl")
    for anchor in ("summary", "workload-attention", "environment", "methodology", "raw-data"):
        assert f'<section id="{anchor}">' in page
        assert f'<a href="#{anchor}">' in page  # the table of contents links it
    assert run.header.run_id in page and STAMP in page
    assert "xfbench attention --seq-lens 128:1024:x2" in page  # the command line
    assert page.count("<figure id=") == page.count("<figcaption>") >= 1
    assert 'class="warn"' in page  # the summary's not_converged finding
    assert "<details>" in page and "<caption>" in page and '<ul class="notes">' in page


def test_a_cell_shows_its_lines_status_note_and_sort_key(pages):
    run = load_results(FIXTURES / "report_attention.jsonl")
    rec = next(r for r in run.records if r.variant == "naive" and r.size == 128)
    cell = result_cell(rec)
    lines = "<br>".join(str(escape(line_text(c))) for c in cell.lines)
    want = f'<td class="{cell.status} num" title="{cell.note}" data-sort="{cell.sort_key!r}">{lines}</td>'
    assert want in pages["attention"]


def test_record_json_in_the_appendix_is_the_whole_record(pages):
    run = load_results(FIXTURES / "report_model.jsonl")
    blocks = re.findall(r"<pre>(.*?)</pre>", pages["model"], re.S)
    dumps = [r.model_dump(mode="json") for r in run.records]
    assert [json.loads(htmllib.unescape(b)) for b in blocks] == dumps  # every digit
    compact = [json.dumps(d, ensure_ascii=False, separators=(",", ":")) for d in dumps]
    assert [htmllib.unescape(b) for b in blocks] == compact  # no whitespace between tokens


def test_raw_data_levels(monkeypatch):
    run = load_results(FIXTURES / "report_model.jsonl")
    samples = render(run, generated_utc=STAMP, raw_data="samples")
    assert "<pre>" not in samples and 'id="rec-1"' in samples and "every digit" in samples
    none = render(run, generated_utc=STAMP, raw_data="none")
    assert 'id="raw-data"' not in none and 'href="#raw-data"' not in none
    with pytest.raises(ValueError, match="raw_data 'all'"):
        render(run, generated_utc=STAMP, raw_data="all")
    monkeypatch.setattr(report_html, "AUTO_JSON_BUDGET", 1000)
    auto = render(run, generated_utc=STAMP)
    assert "<pre>" not in auto and "choose raw data &#39;json&#39; to include it" in auto


def hostile_run():
    """The attention fixture with hostile text in a header's argv and records' label, variant,
    reason, info and params; one record turned into an error whose reason is hostile."""
    run = load_results(FIXTURES / "report_attention.jsonl")
    records = []
    for i, r in enumerate(run.records):
        update = {"label": f"{r.label} {EVIL}", "params": {**r.params, "evil": EVIL},
                  "info": {**r.info, "evil": EVIL}}
        if r.variant == "naive":
            update["variant"] = f"naive {EVIL}"
        if i == 1:
            update["reason"] = EVIL
        if r.variant == "lstm" and r.size == 1024:
            update |= {"status": "error", "reason": f"RuntimeError: {EVIL}", "time": None, "memory": None,
                       "metrics": {}}
        records.append(r.model_copy(update=update))
    header = run.header.model_copy(update={"argv": [*run.header.argv, EVIL]})
    return run.model_copy(update={"header": header, "headers": [header], "records": records})


def test_hostile_record_text_renders_inert():
    page = render(hostile_run(), generated_utc=STAMP)
    parsed = Page(page)
    assert [t for t, _ in parsed.tags].count("script") == 1 and parsed.scripts == [SCRIPT]
    assert not [t for t, _ in parsed.tags if t in ("img", "iframe", "object", "embed", "link", "base", "form")]
    handlers = [(t, a) for t, attrs in parsed.tags for a in attrs if a.lower().startswith("on")]
    assert handlers == []
    assert page.count("onerror=") == page.count("&lt;img src=x onerror=alert(1)&gt;") > 0  # only as text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in page
    text = "".join(parsed.text)
    for shown in (
        f"{load_results(FIXTURES / 'report_attention.jsonl').records[0].label} {EVIL}",  # label: captions
        f"naive {EVIL}",  # variant: a column header
        f"reason: {EVIL}",  # reason: the appendix
        f"RuntimeError: {EVIL}",  # an error's reason: the table's notes
        '"evil":' + json.dumps(EVIL, ensure_ascii=False),  # params and info: the record JSON
        shlex.quote(EVIL),  # argv: the command line
    ):
        assert shown in text, shown
    # a URL is only text the page shows (or a tooltip), never in an attribute a browser would load or follow
    followed = [(t, k, v) for t, a in parsed.tags for k, v in a.items() if k in URL_ATTRS and "#" != (v or "#")[0]]
    assert followed == []


def _csp(page: str) -> str:
    metas = [a for t, a in Page(page).tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"]
    assert len(metas) == 1
    return metas[0]["content"]


def test_csp_allows_exactly_the_inline_script(pages):
    for page in pages.values():
        policy = _csp(page)
        directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
        assert directives["default-src"] == "'none'"
        assert directives["style-src"] == "'unsafe-inline'"
        assert directives["img-src"] == "data:"
        (script,) = re.findall(r"<script>(.*?)</script>", page, re.S)
        digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode()
        assert directives["script-src"] == f"'sha256-{digest}'"
        assert script == SCRIPT


def test_no_remote_resource_or_url(pages):
    for page in pages.values():
        assert not re.search(r"https?://", page)  # the fixtures' records hold no URL
        tags = Page(page).tags
        for tag, attrs in tags:
            assert all((v or "#").startswith("#") for k, v in attrs.items() if k in URL_ATTRS), (tag, attrs)
            assert tag not in ("link", "img", "iframe", "object", "embed")
        assert not re.search(r"\son[a-z]+=", " ".join(f"<{t} {' '.join(a)}>" for t, a in tags))
        assert "@import" not in page and "url(http" not in page


def test_embed_svg_drops_urls_and_refuses_script():
    svg = ('<?xml version="1.0"?>\n<svg xmlns:xlink="http://www.w3.org/1999/xlink" width="10pt" '
           'xmlns="http://www.w3.org/2000/svg"><metadata><rdf:RDF/></metadata><!-- made by x -->'
           '<use xlink:href="#a"/></svg>')
    assert report_html.embed_svg(svg) == '<svg width="10pt"><use xlink:href="#a"/></svg>'
    for active in ("<svg><script>alert(1)</script></svg>", '<svg><g onload="alert(1)"/></svg>',
                   '<svg><a href="https://x.example/">x</a></svg>', '<svg><use xlink:href="http://x/#a"/></svg>'):
        with pytest.raises(ValueError, match="active content"):
            report_html.embed_svg(active)
    text = '<svg><text>&lt;b onload="x"&gt; href="http://x"</text></svg>'  # escaped text is not a tag
    assert report_html.embed_svg(text) == text


def test_importing_the_module_imports_no_jinja2_or_matplotlib():
    code = (
        "import sys\n"
        "import xfbench.reports.html\n"
        "bad = sorted(m for m in ('jinja2', 'markupsafe', 'matplotlib') if m in sys.modules)\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
