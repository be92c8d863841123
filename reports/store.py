"""Results store: append a Record per case to results.jsonl (flushed and fsynced), load it back."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO

from pydantic import ValidationError

from .errors import BadInput
from .schema import SCHEMA_VERSION, Header, Record, RunResult, migrate

RESULTS_NAME = "results.jsonl"
REPORT_NAME = "report.html"  # written beside it by every sweep (cli/sweep.py) and `xfbench report`


class ResultsWriter:
    """Appends lines to a results file; each line is flushed and fsynced before returning.

    Args:
        path: the results file. An existing one (resume, or a second command into the same
            folder) is appended to, after a check that it reads back.
        header: written first, so the records that follow carry this run's environment,
            calibration and arguments (a file holds one segment per command that wrote to it).
    """

    def __init__(self, path: Path, header: Header):
        self.path = Path(path)
        if self.path.exists() and self.path.stat().st_size > 0:
            load_results(self.path)  # refuse to append to a file we cannot read back
            _terminate_partial_line(self.path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh: IO[str] = open(self.path, "a", encoding="utf-8")
        except OSError as e:
            raise BadInput(f"cannot write results to {self.path}: {e.strerror or e}") from None
        self.count = 0
        self._write(header.model_dump(mode="json"))

    def append(self, record: Record) -> None:
        self._write(record.model_dump(mode="json"))
        self.count += 1

    def _write(self, obj: dict) -> None:
        self._fh.write(json.dumps(obj, separators=(",", ":"), allow_nan=False) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> ResultsWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _terminate_partial_line(path: Path) -> None:
    """Make the file end on a complete line before appending.

    A run killed mid-write can leave a last line that is cut short: it is truncated away
    (a partial record cannot be recovered, and left in place it would sit mid-file after
    the next append). A complete last line that only lacks its newline gets one.
    """
    data = path.read_bytes()
    body, _, last = data.rstrip(b"\n").rpartition(b"\n")
    try:
        json.loads(last)
    except ValueError:
        with open(path, "rb+") as fh:
            fh.truncate(len(body) + 1 if body else 0)
        return
    if not data.endswith(b"\n"):
        with open(path, "ab") as fh:
            fh.write(b"\n")


def load_results(path: str | Path) -> RunResult:
    """Read a results file (a folder holding results.jsonl works too).

    A damaged last line (a run killed mid-write) is dropped with a note; any other damage,
    a newer schema version, or a file that is not a results file raises BadInput.
    """
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_NAME
    if not path.is_file():
        raise BadInput(f"no results file at {path}")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise BadInput(f"cannot read {path}: {e}") from None
    notes: list[str] = []
    raw: list[tuple[int, dict]] = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            if not isinstance(obj, dict):
                raise ValueError("not a JSON object")
        except ValueError as e:
            if i == len(lines):
                notes.append(f"{path}:{i}: dropped a damaged last line ({e})")
                continue
            raise BadInput(f"{path}:{i}: not a results line ({e})") from None
        raw.append((i, obj))
    if not raw or raw[0][1].get("kind") != "header":
        raise BadInput(f"{path}: not an xfbench results file (no header line)")
    headers: list[Header] = []
    records: list[Record] = []
    line_no, version = raw[0][0], None  # named in error messages
    try:
        for line_no, obj in raw:  # noqa: B007
            if obj.get("kind") == "header":  # a segment: its records migrate by its version
                version = obj.get("schema_version")
                if not isinstance(version, int) or isinstance(version, bool):
                    raise BadInput(f"{path}:{line_no}: header has no integer schema_version")
                header = Header.model_validate(migrate(obj, version))
                header.schema_version = SCHEMA_VERSION
                headers.append(header)
            else:
                rec = Record.model_validate(migrate(obj, version))
                if rec.run_id is None:  # written before records named their run (schema v1)
                    rec.run_id = headers[-1].run_id
                elif rec.run_id not in {h.run_id for h in headers}:
                    raise BadInput(f"{path}:{line_no}: record names run '{rec.run_id}', which no header before it has")
                records.append(rec)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise BadInput(f"{path}:{line_no}: invalid record field '{where}': {err['msg']}") from None
    return RunResult(header=headers[0], headers=headers, records=records, notes=notes)
