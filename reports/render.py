"""The reporters, in one registry: each is a pure `render(run, **opts) -> str | bytes`.

A name maps to "module:function" and is imported only when used, so a run that writes only
its HTML never imports matplotlib's PDF backend, and `xfbench --help` imports none of them.
Figures are the one multi-file reporter: reports.figures.render_figures returns
{file name: bytes}. Only reports.writer touches files.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from datetime import UTC, datetime

from .schema import RunResult

RENDERERS: dict[str, str] = {
    "terminal": "xfbench.reports.terminal:render_text",
    "html": "xfbench.reports.html:render",
    "markdown": "xfbench.reports.markdown:render",
    "latex": "xfbench.reports.latex:render",
    "csv": "xfbench.reports.csv_report:render",
}


def renderer(name: str) -> Callable[..., str | bytes]:
    module, _, function = RENDERERS[name].partition(":")
    return getattr(importlib.import_module(module), function)


def render(name: str, run: RunResult, **opts) -> str | bytes:
    """The report `name` of `run` (see RENDERERS)."""
    return renderer(name)(run, **opts)


def generated_utc() -> str:
    """The generation timestamp a report prints: now, or SOURCE_DATE_EPOCH when set (the
    reproducible-builds convention), so two renders can be byte-identical."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = datetime.fromtimestamp(int(epoch), UTC) if epoch and epoch.isdigit() else datetime.now(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")
