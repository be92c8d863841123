"""Results store: append a Record per case to results.jsonl (flushed and fsynced, under a lock on
the run folder), load it back whole (load_results) or as an index of what was done (load_index).

One rule decides what a line is, for every reader and for the appender (parse_line): UTF-8 text
holding one JSON object, its numbers the ones JSON allows. A last line that breaks it is damaged
(a run killed mid-write, or an edit): readers drop it with a note, the appender cuts it away
before it appends, under the lock, so it never sits mid-file. Anywhere else it is BadInput.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

import pydantic_core
from pydantic import BaseModel, ConfigDict, ValidationError

from . import contract
from .errors import BadInput
from .schema import SCHEMA_VERSION, Header, Record, RunResult, Status, migrate

RESULTS_NAME = "results.jsonl"
REPORT_NAME = "report.html"  # written beside it by every sweep (cli/sweep.py) and `xfbench report`
LOCK_SUFFIX = ".lock"  # results.jsonl.lock: RunLock's file, there only while a command writes
NO_RESULTS_YET = "holds no results yet: the run that wrote it was stopped before its first case"

# NaN/Infinity tokens: the parser refuses them; this names them in the message.
_NON_FINITE = re.compile(rb"(-?Infinity|NaN)")
# A number too large for a float (1e400, or 309 digits before the point) parses as inf. A regex
# over every line costs more than the rest of the load, so a translate-and-find sieve (digits
# to 0) picks the few lines that could hold one (hex ids like "5e776" pass it too), and only
# there does the regex look for a number token, and a walk for the infinity itself.
_DIGITS = bytes.maketrans(b"123456789E", b"000000000e")
_BIG_EXPONENT = re.compile(rb"[\[:,\s]-?[0-9]+(?:\.[0-9]*)?[eE]\+?[0-9]{3}")


def parse_line(line: bytes) -> dict[str, Any]:
    """The one rule for a results line: one JSON object, numbers as JSON allows them.

    The writer writes with allow_nan=False, so NaN, Infinity and -Infinity (which Python's json
    module would read) and numbers too large for a float (which would read as inf) are refused
    like any other damage. Raises ValueError naming what is wrong.
    """
    try:
        obj = pydantic_core.from_json(line, allow_inf_nan=False)
    except ValueError as e:
        bad = _NON_FINITE.search(line)
        if bad is not None:
            try:
                pydantic_core.from_json(line, allow_inf_nan=True)
            except ValueError:
                pass
            else:
                raise ValueError(f"{bad.group().decode()} is not a number JSON allows") from None
        raise ValueError(str(e)) from None
    if not isinstance(obj, dict):
        raise ValueError(f"not a JSON object but {_json_kind(obj)}")
    if _maybe_huge(line) and not _finite(obj):
        raise ValueError("a number too large for a float (JSON allows no infinity)")
    return obj


def _maybe_huge(line: bytes) -> bool:
    sieved = line.translate(_DIGITS)
    if b"0" * 309 in sieved:
        return True
    if b"0e000" not in sieved and b"0e+000" not in sieved:
        return False
    return _BIG_EXPONENT.search(line) is not None


def _json_kind(obj: Any) -> str:
    for t, name in ((list, "an array"), (str, "a string"), (bool, "a boolean"), (int, "a number"),
                    (float, "a number"), (type(None), "null")):
        if isinstance(obj, t):
            return name
    return type(obj).__name__


def _finite(obj: Any) -> bool:
    if isinstance(obj, float):
        return math.isfinite(obj)
    if isinstance(obj, dict):
        return all(_finite(v) for v in obj.values())
    if isinstance(obj, list):
        return all(_finite(v) for v in obj)
    return True


class IndexEntry(BaseModel):
    """What --resume needs of one record: which case, how it ended, and the series and size
    (runner.oom_sizes skips larger sizes of a series that ran out of memory).

    NOTE: these fields mean the same in every schema version; load_index still migrates each
    line first, so a migration that ever touches them stays honoured.
    """

    model_config = ConfigDict(extra="ignore")

    kind: Literal["record"] = "record"
    run_id: str | None = None
    case_id: str
    workload: str
    label: str
    variant: str
    size: int | float
    status: Status


@dataclass
class ResultsIndex:
    """load_index's answer: one IndexEntry per record in file order, every segment's run_id, and
    the notes of the load (a dropped damaged last line)."""

    records: list[IndexEntry]
    run_ids: list[str]
    notes: list[str] = field(default_factory=list)


@dataclass
class _Damaged:
    line_no: int
    offset: int  # where the line starts: the appender truncates the file there
    reason: str


@dataclass
class _Scan:
    headers: list[Header]
    items: list  # Records, IndexEntries, or nothing (a check)
    notes: list[str]
    damaged: _Damaged | None
    size: int
    ends_with_newline: bool


def _scan(path: Path, keep: str) -> _Scan:
    """Read `path` line by line and validate it; keep 'records', or the 'index' (IndexEntry fields
    validated only), or 'check': every Record validated, their IndexEntries kept.

    Streams: neither the file's text nor its parsed lines are held beyond the line at hand.
    """
    model = IndexEntry if keep == "index" else Record
    headers: list[Header] = []
    items: list = []
    run_ids: set[str] = set()
    notes: list[str] = []
    version: int | None = None
    bad: _Damaged | None = None  # a line that broke the rule: fatal unless no line follows it
    offset, line_no, last = 0, 0, b""
    try:
        fh = open(path, "rb")
    except OSError as e:
        raise BadInput(f"cannot read {path}: {e.strerror or e}") from None
    with fh:
        for line_no, line in enumerate(_lines(fh, path), 1):  # noqa: B007
            start, offset, last = offset, offset + len(line), line
            if not line.strip():
                continue
            if bad is not None:
                raise BadInput(f"{path}:{bad.line_no}: not a results line ({bad.reason})")
            try:
                obj = parse_line(line)
            except ValueError as e:
                bad = _Damaged(line_no, start, str(e))
                continue
            kind = obj.get("kind")
            if not headers and kind != "header":
                raise BadInput(f"{path}: not an xfbench results file (no header line)")
            try:
                if kind == "header":  # a segment: its records migrate by its version
                    version = obj.get("schema_version")
                    if not isinstance(version, int) or isinstance(version, bool):
                        raise BadInput(f"{path}:{line_no}: header has no integer schema_version")
                    header = Header.model_validate(migrate(obj, version))
                    header.schema_version = SCHEMA_VERSION
                    headers.append(header)
                    run_ids.add(header.run_id)
                    continue
                rec = model.model_validate(migrate(obj, version))
            except ValidationError as e:
                raise BadInput(f"{path}:{line_no}: {_invalid(e)}") from None
            if keep != "index":
                try:
                    contract.check_loaded(rec)
                except ValueError as e:
                    raise BadInput(f"{path}:{line_no}: invalid record: {e}") from None
            if rec.run_id is None:  # written before records named their run (schema v1)
                rec.run_id = headers[-1].run_id
            elif rec.run_id not in run_ids:
                raise BadInput(f"{path}:{line_no}: record names run '{rec.run_id}', which no header before it has")
            if keep == "check":
                rec = IndexEntry.model_construct(**{k: getattr(rec, k) for k in IndexEntry.model_fields})
            items.append(rec)
    if bad is not None:
        notes.append(f"{path}:{bad.line_no}: dropped a damaged last line ({bad.reason})")
    return _Scan(headers, items, notes, bad, offset, last.endswith(b"\n") or offset == 0)


def _invalid(e: ValidationError) -> str:
    """The first error of a line's validation, as 'invalid record field 'params': seq_len: Field
    required' (a contract check's own text without pydantic's 'Value error, ')."""
    err = e.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    msg = err["msg"].removeprefix("Value error, ")
    return f"invalid record field '{where}': {msg}" if where else f"invalid record: {msg}"


def _lines(fh: IO[bytes], path: Path):
    try:
        yield from fh
    except OSError as e:
        raise BadInput(f"cannot read {path}: {e.strerror or e}") from None


def _results_path(path: str | Path) -> Path:
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_NAME
    if not path.is_file():
        raise BadInput(f"no results file at {path}")
    return path


def load_results(path: str | Path) -> RunResult:
    """Read a results file (a folder holding results.jsonl works too).

    A damaged last line (parse_line refuses it: a run killed mid-write, a line that is JSON but
    not an object, a NaN or Infinity the writer never writes) is dropped with a note; the same
    anywhere else, a wrong field type, a newer schema version, or a file that is not a results
    file raises BadInput naming file:line. A file with no header yet (empty, or only a damaged
    one: a run stopped during its first write) raises BadInput too: there is nothing to report;
    a header alone loads as a run with no records, and a note saying so.
    """
    path = _results_path(path)
    scan = _scan(path, "records")
    if not scan.headers:
        raise BadInput(f"{path} {NO_RESULTS_YET}")
    if not scan.items:
        scan.notes.append(f"{path} holds no records yet: its run stopped before its first case ended")
    return RunResult(header=scan.headers[0], headers=scan.headers, records=scan.items, notes=scan.notes)


def load_index(path: str | Path) -> ResultsIndex:
    """What --resume needs: each record's case_id, status, run_id, series and size, validated.

    Reads every line by the same rules as load_results (a damaged last line dropped with a note,
    damage elsewhere BadInput) but validates only the fields it keeps, and keeps nothing else: a
    file of months of runs loads in a fraction of load_results' time and memory. A file with no
    results yet (empty, or only a damaged header) has nothing done: an empty index, no error,
    so --resume starts it over.
    """
    path = _results_path(path)
    scan = _scan(path, "index")
    return ResultsIndex(scan.items, [h.run_id for h in scan.headers], scan.notes)


class RunLock:
    """An exclusive lock on a run folder's results file, held while a command writes into it.

    A second command that tries to take it raises BadInput("another xfbench is writing DIR"):
    two sweeps on one --out would otherwise both run every case and interleave their lines.
    Take it before anything slow (a sweep's calibration), hand it to ResultsWriter, release it
    after the last write (a context manager). Readers take no lock: the writer only ever appends
    whole lines, and a reader that meets one half-written drops it with a note.

    The lock is a non-blocking fcntl.flock on `results.jsonl.lock` beside the results file, not
    on the results file itself: it can be taken before the results file exists (so a sweep
    whose calibration fails leaves no empty results file behind), it stays the same file while
    the results file is truncated or replaced, and a user deleting results.jsonl cannot unlock
    it. The lock file holds the holder's pid and is removed on release (while still locked; a
    taker checks that the file it locked is still the one at the path, else tries again).
    flock locks are released by the kernel when the holder dies, so a SIGKILL leaves no stale
    lock; the file a killed holder leaves behind is locked afresh by the next command.

    Args:
        results_path: the results file (results.jsonl) the lock guards.
    """

    def __init__(self, results_path: str | Path):
        self.results_path = Path(results_path)
        self.lock_path = self.results_path.with_name(self.results_path.name + LOCK_SUFFIX)
        self._fd: int | None = None
        self._scan: _Scan | None = None
        self._stamp: tuple[int, int] | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> RunLock:
        if self._fd is not None:
            raise RuntimeError(f"{self.lock_path} is already held by this RunLock")
        folder = self.results_path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise BadInput(f"cannot write results to {self.results_path}: {e.strerror or e}") from None
        while True:
            try:
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
            except OSError as e:
                raise BadInput(f"cannot write results to {self.results_path}: {e.strerror or e}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
                os.close(fd)
                who = f" (pid {pid})" if pid.isdigit() else ""
                raise BadInput(
                    f"another xfbench is writing {folder}{who}: wait for it to end, or write elsewhere with --out"
                ) from None
            except OSError as e:
                os.close(fd)
                raise BadInput(f"cannot lock {self.lock_path}: {e.strerror or e}") from None
            try:  # the holder we waited on may have removed the file between our open and flock
                mine, there = os.fstat(fd), os.stat(self.lock_path)
                if (mine.st_dev, mine.st_ino) == (there.st_dev, there.st_ino):
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.lock_path.unlink(missing_ok=True)  # while still locked: see the class docstring
        except OSError:
            pass
        os.close(self._fd)
        self._fd, self._scan, self._stamp = None, None, None

    def check(self) -> ResultsIndex:
        """Validate the whole results file under the lock (BadInput if it cannot be read back)
        and return the index of its records; ResultsWriter, handed this lock, then needs no
        second pass unless the file changed since. No file, or one with no results yet: empty."""
        self._require()
        path = self.results_path
        if not path.exists():
            self._scan, self._stamp = None, None
            return ResultsIndex([], [])
        if not path.is_file():
            raise BadInput(f"cannot write results to {path}: it is not a regular file")
        self._stamp = _stamp(path)
        self._scan = _scan(path, "check")
        return ResultsIndex(self._scan.items, [h.run_id for h in self._scan.headers], list(self._scan.notes))

    def prepare(self) -> list[str]:
        """Make the results file ready to append to (under the lock): checked, and ending on a
        complete line. A damaged last line is cut away (a partial record cannot be recovered, and
        left in place it would sit mid-file after the next append); a file with no results yet
        (empty, or only a damaged header) is emptied, to start over; a last line that only lacks
        its newline gets one. Returns notes saying what was removed."""
        self._require()
        path = self.results_path
        if not path.exists():
            return []
        if self._scan is None or self._stamp != _stamp(path):
            self.check()
        scan = self._scan
        notes: list[str] = []
        try:
            if not scan.headers:
                if scan.size:
                    os.truncate(path, 0)
                    why = f" (line {scan.damaged.line_no}: {scan.damaged.reason})" if scan.damaged else ""
                    notes.append(f"{path} held no results (a run stopped before its first case){why}: started it over")
            elif scan.damaged is not None:
                os.truncate(path, scan.damaged.offset)
                notes.append(f"{path}:{scan.damaged.line_no}: removed a damaged last line ({scan.damaged.reason}) "
                             "before appending")
            elif not scan.ends_with_newline:
                with open(path, "ab") as fh:
                    fh.write(b"\n")
        except OSError as e:
            raise BadInput(f"cannot write results to {path}: {e.strerror or e}") from None
        self._scan, self._stamp = None, None  # what follows is this command's own appends
        return notes

    def _require(self) -> None:
        if self._fd is None:
            raise RuntimeError(f"{self.lock_path}: take the lock (acquire, or with RunLock(...)) first")

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


class ResultsWriter:
    """Appends lines to a results file; each line is flushed and fsynced before returning.

    Args:
        path: the results file. An existing one (resume, or a second command into the same
            folder) is appended to, after a check that it reads back (RunLock.prepare: a damaged
            last line is cut away, a file with no results yet started over; `notes` says so).
        header: written first, so the records that follow carry this run's environment,
            calibration and arguments (a file holds one segment per command that wrote to it).
        lock: a RunLock on `path` the caller took earlier (a sweep, before its calibration) and
            releases itself; without one the writer takes its own and releases it at close.
            Either way a second writer on the folder raises BadInput.
    """

    def __init__(self, path: str | Path, header: Header, *, lock: RunLock | None = None):
        self.path = Path(path)
        if lock is not None and (not lock.held or lock.results_path.resolve() != self.path.resolve()):
            raise RuntimeError(f"ResultsWriter({self.path}) was handed a lock not held on it")
        self._own = lock is None
        self.lock = RunLock(self.path).acquire() if lock is None else lock
        self._fh: IO[str] | None = None
        try:
            self.notes: list[str] = self.lock.prepare()
            try:
                self._fh = open(self.path, "a", encoding="utf-8")
            except OSError as e:
                raise BadInput(f"cannot write results to {self.path}: {e.strerror or e}") from None
            self.count = 0
            self._write(header.model_dump(mode="json"))
        except BaseException:
            self.close()
            raise

    def append(self, record: Record) -> None:
        self._write(record.model_dump(mode="json"))
        self.count += 1

    def _write(self, obj: dict) -> None:
        self._fh.write(json.dumps(obj, separators=(",", ":"), allow_nan=False) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        try:
            if self._fh is not None:
                self._fh.close()
        finally:
            self._fh = None
            if self._own:
                self.lock.release()

    def __enter__(self) -> ResultsWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
