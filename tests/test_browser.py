"""The HTML report in a real headless Chromium (Debian's /usr/bin/chromium driven by Playwright):
offline, it makes no request, logs no error (a CSP violation would be one, so the script's hash
is right), draws every figure, shows the table values the library computes, and sorts.

Skips with the reason when chromium or playwright is missing, except under CI=true, where it
fails: CI must prove it ran (.ci/install_browser.sh installs chromium)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from xfbench.reports.html import render
from xfbench.reports.store import load_results
from xfbench.reports.tables import line_text, result_cell

CHROMIUM = Path("/usr/bin/chromium")
FIXTURE = Path(__file__).parent / "fixtures" / "report_attention.jsonl"
STAMP = "2026-12-02T00:00:00Z"
IN_CI = os.environ.get("CI", "").lower() == "true"


def _require(ok: bool, why: str) -> None:
    if ok:
        return
    if IN_CI:
        pytest.fail(f"{why}; under CI=true the browser test must run (sh .ci/install_browser.sh)")
    pytest.skip(why)


def _sync_playwright():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _require(False, "playwright is not installed (pip install -e '.[dev]')")
    _require(CHROMIUM.exists(), f"{CHROMIUM} is missing (sh .ci/install_browser.sh installs Debian's chromium)")
    return sync_playwright


def _row_heads(table) -> list[str]:
    return [t.strip() for t in table.locator("tbody tr > th").all_inner_texts()]


def test_report_in_headless_chromium(tmp_path):
    sync_playwright = _sync_playwright()
    started = time.perf_counter()
    run = load_results(FIXTURE)
    page_path = tmp_path / "report.html"
    page_path.write_text(render(run, generated_utc=STAMP), encoding="utf-8")
    naive = sorted((r for r in run.records if r.variant == "naive"), key=lambda r: r.size)
    want_cell = line_text(result_cell(naive[0]).lines[0])  # N=128, naive: the median ±CI
    by_time = [str(r.size) for r in sorted(naive, key=lambda r: r.time.median_s)]

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        try:
            context = browser.new_context(offline=True, viewport={"width": 1280, "height": 900})
            remote: list[str] = []

            def route(r):
                if r.request.url.startswith("file:"):
                    r.continue_()
                else:
                    remote.append(r.request.url)
                    r.abort()

            context.route("**/*", route)
            page = context.new_page()
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(page_path.as_uri(), wait_until="load")

            figures = page.locator("figure svg")
            assert figures.count() >= 2  # time/memory and roofline
            for i in range(figures.count()):
                svg = figures.nth(i)
                svg.scroll_into_view_if_needed()
                box = svg.bounding_box()
                assert svg.is_visible() and box and box["width"] > 100 and box["height"] > 50, (i, box)

            table = page.locator("#workload-attention-table-1 table")
            heads = [h.strip(" ↕▲▼") for h in table.locator("thead th").all_inner_texts()]
            col = heads.index("naive")
            cell = table.locator("tbody tr").nth(0).locator("th, td").nth(col)
            assert cell.inner_text().splitlines()[0] == want_cell

            sort = table.locator("thead th").nth(col).get_by_role("button")
            assert sort.count() == 1  # the script ran (the CSP admitted it by its hash) and added it
            assert _row_heads(table) == [str(r.size) for r in naive]
            sort.click()
            assert _row_heads(table) == by_time
            assert table.locator("thead th").nth(col).get_attribute("aria-sort") == "ascending"
            sort.focus()
            page.keyboard.press("Enter")  # keyboard: the same button sorts the other way
            assert _row_heads(table) == by_time[::-1]
            assert table.locator("thead th").nth(col).get_attribute("aria-sort") == "descending"

            page.emulate_media(color_scheme="dark")
            dark = page.evaluate("getComputedStyle(document.body).backgroundColor")
            page.emulate_media(color_scheme="light")
            assert dark != page.evaluate("getComputedStyle(document.body).backgroundColor")

            page.set_viewport_size({"width": 420, "height": 900})  # a phone: figures shrink to the page
            widths = page.evaluate(
                "[...document.querySelectorAll('figure svg')].map(s => s.getBoundingClientRect().width)"
            )
            assert max(widths) <= 420 and min(widths) > 100, widths
            page.set_viewport_size({"width": 1280, "height": 900})

            page.emulate_media(media="print")  # printing opens the raw-data appendix
            assert page.locator("#rec-1 pre").is_visible()
            page.emulate_media(media="screen")
            assert not page.locator("#rec-1 pre").is_visible()

            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
            assert remote == [] and errors == [], (remote, errors)

            # The policy is enforced, so the script above ran because its hash matched: an inline
            # script added now is refused, with a console error.
            page.evaluate(
                "() => { const s = document.createElement('script'); s.textContent = 'window.injected = 1';"
                " document.body.appendChild(s); }"
            )
            assert page.evaluate("window.injected") is None
            assert any("Content Security Policy" in e for e in errors), errors
        finally:
            browser.close()
    print(f"\nreport: {page_path} ({page_path.stat().st_size:,} bytes); screenshot: {shot} "
          f"({shot.stat().st_size:,} bytes); browser test {time.perf_counter() - started:.1f} s")


def test_profile_section_in_headless_chromium(tmp_path):
    """The --profile section: visible, each bar segment drawn with a nonzero width in proportion to
    its share, the trace links resolve to the run folder, and no request, error or CSP violation."""
    sync_playwright = _sync_playwright()
    fixture = Path(__file__).parent / "fixtures" / "report_profile.jsonl"
    run = load_results(fixture)
    page_path = tmp_path / "report.html"  # written into the "run folder": the record's paths are the hrefs
    page_path.write_text(render(run, generated_utc=STAMP), encoding="utf-8")
    profiled = [r for r in run.records if r.profile]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        try:
            context = browser.new_context(offline=True, viewport={"width": 1280, "height": 900})
            remote: list[str] = []

            def route(r):
                if r.request.url.startswith("file:"):
                    r.continue_()
                else:
                    remote.append(r.request.url)
                    r.abort()

            context.route("**/*", route)
            page = context.new_page()
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(page_path.as_uri(), wait_until="load")

            section = page.locator("section#profile")
            section.scroll_into_view_if_needed()
            assert section.is_visible()
            bars = section.locator(".opbar")
            assert bars.count() == len(profiled)
            for i, rec in enumerate(profiled):
                bar = bars.nth(i)
                bar.scroll_into_view_if_needed()
                assert bar.is_visible()
                total = bar.evaluate("b => b.clientWidth")
                widths = bar.evaluate("b => [...b.querySelectorAll('.seg')].map(s => s.getBoundingClientRect().width)")
                prof = rec.profile
                shares = [o["share"] for o in prof["ops"]]
                shares += [prof["other_ops"]["share"], prof["breakdown"]["outside_ops"]]
                assert len(widths) == len(shares) and min(widths) > 0, widths
                for w, s in zip(widths, shares, strict=True):
                    assert abs(w - s * total) < 1.0, (i, w, s, total)  # layout rounds to a pixel at most
            hrefs = section.locator(".profile-files a").evaluate_all("as => as.map(a => a.href)")
            assert hrefs == [(tmp_path / r.profile["trace"]).as_uri() for r in profiled]
            assert "memory snapshot: skipped" in section.inner_text()
            assert remote == [] and errors == [], (remote, errors)
        finally:
            browser.close()
