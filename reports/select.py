"""Which records a report shows: the latest record of each case (a resumed run appends)."""

from __future__ import annotations

from .schema import Record


def latest(records: list[Record]) -> list[Record]:
    """The last record of each case_id, in the order the cases were first seen.

    `--resume` reruns a failed case and appends its new record; every table, note and fit
    reads this view, so an earlier failure never shows next to the rerun that replaced it.
    """
    last: dict[str, Record] = {}
    for r in records:
        last[r.case_id] = r  # re-assigning a key keeps its first position
    return list(last.values())
