"""CSV renderer: one flat row per record, raw SI values at full precision, units in the column names.

For spreadsheets and pandas: no display scaling (a time is seconds, a peak is bytes), floats
as repr() so they read back exactly, and no raw samples (the JSONL keeps them). params, metrics
and info become `params.<k>`, `metrics.<k>`, `info.<k>` columns over the union of keys. Text that
a spreadsheet would run as a formula (= + - @ first) gets a leading apostrophe.
"""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any

from .schema import Record, RunResult
from .select import latest

FIXED = [
    "run_id", "case_id", "workload", "label", "variant", "size_name", "size", "device", "status", "reason",
    "time_median_s", "time_ci_low_s", "time_ci_high_s", "time_ci_rel", "time_ci_level", "time_n",
    "time_calls_per_sample", "time_clock", "time_converged", "memory_peak_bytes", "memory_method",
]
_TIME = {
    "time_median_s": "median_s", "time_ci_low_s": "ci_low_s", "time_ci_high_s": "ci_high_s",
    "time_ci_rel": "ci_rel", "time_ci_level": "ci_level", "time_n": "n",
    "time_calls_per_sample": "calls_per_sample", "time_clock": "clock", "time_converged": "converged",
}
# OWASP "CSV injection": a cell opening with one of these is a formula in Excel, LibreOffice and
# Google Sheets (tab and carriage return too, as field separators some of them accept).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _is_number_text(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def text_cell(s: str) -> str:
    """A string as a cell no spreadsheet evaluates: "'=1+2" for "=1+2"; "-1.5" stays a number."""
    return "'" + s if s.startswith(FORMULA_START) and not _is_number_text(s) else s


def cell(v: Any) -> str:
    """One value as CSV text: '' for None, repr for floats (exact), true/false, JSON for containers."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else str(v)  # nan / inf / -inf, as pandas reads them
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return text_cell(v)
    return text_cell(json.dumps(v, sort_keys=True, default=str))


def _fixed(r: Record) -> dict[str, Any]:
    row: dict[str, Any] = {k: getattr(r, k) for k in FIXED[:10]}
    for column, attr in _TIME.items():
        row[column] = getattr(r.time, attr) if r.time is not None else None
    row["memory_peak_bytes"] = r.memory.peak_bytes if r.memory is not None else None
    row["memory_method"] = r.memory.method if r.memory is not None else None
    return row


def render(run: RunResult, *, all_records: bool = False) -> str:
    """The records of `run` as CSV: the latest of each case, or every record with `all_records`."""
    records = run.records if all_records else latest(run.records)
    groups = {
        "params": sorted({k for r in records for k in r.params}),
        "metrics": sorted({k for r in records for k in r.metrics}),
        "info": sorted({k for r in records for k in r.info}),
    }
    header = [*FIXED, *(f"{g}.{k}" for g, keys in groups.items() for k in keys), "warnings"]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([text_cell(h) for h in header])
    for r in records:
        row = _fixed(r)
        values = [row[k] for k in FIXED]
        for g, keys in groups.items():
            d = getattr(r, g)
            values += [d.get(k) for k in keys]
        values.append(";".join(r.warnings))
        writer.writerow([cell(v) for v in values])
    return out.getvalue()
