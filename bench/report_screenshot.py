"""Render a run's HTML report and save a PNG screenshot of one of its sections (default: the profile).

    python bench/report_screenshot.py RUN_DIR OUT.png [--section profile] [--width 1280]

RUN_DIR is a run folder (holding results.jsonl) or a results file. The report is rendered from
the results alone (reports.html.render) into a temporary folder, with its links to the
profiler's files pointing back at the run folder, and opened offline in Debian's
/usr/bin/chromium driven by Playwright (headless, --no-sandbox, every request that is not file:
aborted). The screenshot is of the element whose id is --section: 'profile' (the --profile
section), 'summary', 'workload-attention', 'environment', ... Prints the section's size, the
bar segments drawn (profile) and where the PNG went. Exit code 2 on bad input (no results, no
such section, no chromium), 1 when the page made a request, logged an error (a CSP violation
is one) or the section drew nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
STAMP = "2026-12-02T00:00:00Z"  # a fixed stamp: the same results give the same picture


def _fail(msg: str, code: int = 2) -> int:
    print(f"report_screenshot: {msg}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="a run folder (holding results.jsonl) or a results file")
    ap.add_argument("out", type=Path, help="the PNG to write")
    ap.add_argument("--section", default="profile", help="the id of the report section to capture (default: profile)")
    ap.add_argument("--width", type=int, default=1280, help="viewport width in CSS pixels (default 1280)")
    args = ap.parse_args(argv)
    if args.width < 320 or args.width > 4000:
        return _fail(f"--width {args.width}: choose 320..4000")
    if not shutil.which(CHROMIUM):
        return _fail(f"no {CHROMIUM} (make browser installs Debian's chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return _fail("playwright is not installed (pip install -e '.[dev]')")

    from xfbench.reports.errors import BadInput
    from xfbench.reports.html import render
    from xfbench.reports.store import load_results

    try:
        run = load_results(args.run)
    except BadInput as e:
        return _fail(str(e))
    run_dir = (args.run if args.run.is_dir() else args.run.parent).resolve()
    with tempfile.TemporaryDirectory(prefix="xfbench-shot-") as tmp:
        page_path = Path(tmp) / "report.html"
        base = Path(os.path.relpath(run_dir, page_path.parent)).as_posix()
        page_path.write_text(render(run, generated_utc=STAMP, files_base=base), encoding="utf-8")
        remote: list[str] = []
        errors: list[str] = []
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
            try:
                context = browser.new_context(offline=True, viewport={"width": args.width, "height": 900},
                                              device_scale_factor=2)

                def route(r):
                    if r.request.url.startswith("file:"):
                        r.continue_()
                    else:
                        remote.append(r.request.url)
                        r.abort()

                context.route("**/*", route)
                page = context.new_page()
                page.on("console",
                        lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
                page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
                page.goto(page_path.as_uri(), wait_until="load")
                section = page.locator(f"section[id='{args.section}']")
                if section.count() != 1:
                    ids = page.eval_on_selector_all("main > section[id]", "els => els.map(e => e.id)")
                    return _fail(f"no section '{args.section}' in the report of {args.run} "
                                 f"(sections: {', '.join(ids)})")
                box = section.bounding_box()
                segments = page.eval_on_selector_all(
                    f"section[id='{args.section}'] .opbar .seg", "els => els.map(e => e.getBoundingClientRect().width)"
                )
                args.out.parent.mkdir(parents=True, exist_ok=True)
                section.screenshot(path=str(args.out))
            finally:
                browser.close()
    print(f"section '{args.section}': {box['width']:.0f}×{box['height']:.0f} CSS px at {args.width} px wide")
    if segments:
        print(f"bar segments drawn: {len(segments)}, {sum(w > 0 for w in segments)} of nonzero width")
    print(f"screenshot: {args.out} ({args.out.stat().st_size:,} bytes)")
    if remote or errors:
        for line in [*(f"request (aborted): {u}" for u in remote), *errors]:
            print(line, file=sys.stderr)
        return 1
    if not box or box["height"] <= 0:
        return _fail(f"section '{args.section}' drew nothing", 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
