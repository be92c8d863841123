"""Open a report.html in real headless Chromium, offline, and say what it did.

    python bench/report_browser.py runs/demo/report.html [--screenshot report.png]

Debian's /usr/bin/chromium driven by Playwright (`make browser` installs it). Prints the file's
size, the requests that were not file: (aborted and counted: the goal is 0), console errors and
page errors (a CSP violation is one), each figure's rendered size, and where the full-page
screenshot went. Exit code 1 when anything reached for the network, errored, or a figure did
not render.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("report", type=Path)
    ap.add_argument("--screenshot", type=Path, default=None, help="default: <report>.png beside it")
    args = ap.parse_args()
    if not args.report.is_file():
        print(f"report_browser: no file at {args.report}", file=sys.stderr)
        return 2
    if not shutil.which(CHROMIUM):
        print(f"report_browser: no {CHROMIUM} (make browser installs Debian's chromium)", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    shot = args.screenshot or args.report.with_suffix(".png")
    remote: list[str] = []
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        context = browser.new_context(offline=True, viewport={"width": 1280, "height": 900})

        def route(r):
            if r.request.url.startswith("file:"):
                r.continue_()
            else:
                remote.append(r.request.url)
                r.abort()

        context.route("**/*", route)
        page = context.new_page()
        page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
        page.goto(args.report.resolve().as_uri(), wait_until="load")
        figures = page.eval_on_selector_all(
            "figure svg", "els => els.map(e => { const b = e.getBoundingClientRect(); return [b.width, b.height]; })"
        )
        title = page.title()
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    size = args.report.stat().st_size
    drawn = [f for f in figures if f[0] > 0 and f[1] > 0]
    print(f"report: {args.report} ({size:,} bytes, {size / 2**20:.2f} MiB; goal <= 2 MiB)")
    print(f"title: {title}")
    print(f"requests that were not file: {len(remote)}" + (f" ({', '.join(remote[:5])})" if remote else ""))
    print(f"console and page errors: {len(errors)}" + "".join(f"\n  {e}" for e in errors))
    print(f"figures rendered: {len(drawn)} of {len(figures)} with a non-zero size "
          f"({', '.join(f'{w:.0f}x{h:.0f}' for w, h in figures)})")
    print(f"screenshot: {shot}")
    return 0 if not remote and not errors and len(drawn) == len(figures) > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
