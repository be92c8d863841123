"""Run history in SQLite: every recorded run's per-case results, machine fingerprints, noise bands and change points.

The database holds, per run (one results-file segment), its header facts and its latest record per
case. Timings are only comparable on the same machine, so every result carries the fingerprint of
what makes timings comparable there (fingerprint_fields); a case's series, band and change points
are read per fingerprint.

Concurrency: the database runs in WAL mode (readers never block the one writer) with a busy
timeout, and every write is one `BEGIN IMMEDIATE` transaction (the write lock is taken up front,
so two writers queue instead of failing on a read-to-write lock upgrade). Standard library only.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sqlite3
import statistics
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .errors import BadInput
from .schema import Header, Record, RunResult
from .select import latest

DB_ENV = "XFBENCH_HISTORY_DB"
DB_NAME = "history.sqlite"
# Long enough for another process's record() of a large run to commit; a writer waits, never fails.
BUSY_TIMEOUT_S = 30.0

# --- noise band ----------------------------------------------------------------------------------
# Tukey's fences use 1.5×IQR; rustc-perf (the Rust compiler's performance suite) judges a change
# significant beyond Q3 + 3×IQR of its history (site/src/comparison.rs, IQR_MULTIPLIER = 3.0,
# raised from 1.5 in commit 5ea5172, Sept. 2021) over its last 30 commits (NUM_PREVIOUS_COMMITS).
# We take its multiplier and window; centring the band on the median of the values (rustc-perf
# fences the deltas between adjacent runs) is our choice.
BAND_FENCE = 3.0
BAND_WINDOW = 30  # the band reads the last this-many runs
MIN_BAND_RUNS = 5  # below this, quartiles interpolate between one or two values a side: no band

# --- change points -------------------------------------------------------------------------------
CHANGE_WINDOW = 5  # runs on each side of a candidate step
CHANGE_SCORE = 3.0  # a step is |median after - median before| above this many noise sds (noise_sd)
MIN_STEP_REL = 0.02  # ... and above this fraction of the median before (a 2% step)
MAD_TO_SD = 1.4826  # 1/Φ⁻¹(3/4): MAD × this estimates the sd of normal data (consistency constant)

SPARK_BLOCKS = "▁▂▃▄▅▆▇█"

# metric name -> results column
METRICS = {"time": "median_s", "tokens_per_s": "tokens_per_s", "peak_mem_bytes": "peak_mem_bytes"}


def default_db_path() -> Path:
    """$XFBENCH_HISTORY_DB if set, else the user data dir's xfbench/history.sqlite (platformdirs)."""
    env = os.environ.get(DB_ENV)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("xfbench")) / DB_NAME


# --- fingerprints --------------------------------------------------------------------------------


def fingerprint_fields(environment: dict[str, Any], device: str) -> dict[str, Any]:
    """What makes timings comparable on one machine: host, CPU, GPU names, torch and CUDA
    versions, torch threads and the device type ('cuda:1' -> 'cuda'). Shown to users as the
    meaning of a fingerprint. Load, calibration and the OS patch level are left out on purpose:
    they vary between runs of one machine, and the band is what absorbs that noise."""
    gpus = [d.get("name") for d in environment.get("cuda_devices") or [] if isinstance(d, dict)]
    return {
        "hostname": environment.get("hostname"),
        "cpu_model": environment.get("cpu_model"),
        "gpus": gpus,
        "torch": environment.get("torch"),
        "cuda": environment.get("cuda"),
        "torch_threads": environment.get("torch_threads"),
        "device_type": device.split(":", 1)[0],
    }


def fingerprint(environment: dict[str, Any], device: str) -> str:
    """A short stable hash (12 hex digits of SHA-1 over the sorted JSON) of fingerprint_fields."""
    blob = json.dumps(fingerprint_fields(environment, device), sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


# --- the database --------------------------------------------------------------------------------

# MIGRATIONS[n] takes a database from schema version n-1 to n; History applies them in order in
# one transaction. Version 0 is an empty file. NOTE: add a step here (never edit a shipped one).
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        "CREATE TABLE runs (run_id TEXT PRIMARY KEY, created_utc TEXT NOT NULL, command TEXT, suite TEXT, "
        "fingerprint TEXT NOT NULL, environment TEXT NOT NULL, source TEXT, recorded_utc TEXT NOT NULL)",
        "CREATE TABLE fingerprints (fingerprint TEXT PRIMARY KEY, fields TEXT NOT NULL)",
        "CREATE TABLE results (run_id TEXT NOT NULL REFERENCES runs (run_id), case_id TEXT NOT NULL, "
        "fingerprint TEXT NOT NULL, label TEXT, variant TEXT, size NUMERIC, size_name TEXT, workload TEXT, "
        "device TEXT, status TEXT NOT NULL, median_s REAL, ci_low_s REAL, ci_high_s REAL, tokens_per_s REAL, "
        "peak_mem_bytes REAL, n_samples INTEGER, PRIMARY KEY (run_id, case_id))",
        "CREATE INDEX results_by_case ON results (case_id, fingerprint)",
    ),
}
SCHEMA_VERSION = max(MIGRATIONS)


@dataclass(frozen=True)
class Point:
    """One run's value of a case: a point of its series."""

    run_id: str
    created_utc: str
    value: float


@dataclass(frozen=True)
class CaseSummary:
    """One case on one machine, as its latest recorded result names it.

    Args:
        runs: runs that recorded the case (any status); ok: those with status 'ok'.
    """

    case_id: str
    fingerprint: str
    label: str
    variant: str
    size: int | float
    size_name: str
    workload: str
    device: str
    runs: int
    ok: int
    last_utc: str


@dataclass(frozen=True)
class Machine:
    """A fingerprint, what it hashes, and the runs recorded under it."""

    fingerprint: str
    fields: dict[str, Any]
    runs: int
    first_utc: str | None
    last_utc: str | None


class History:
    """The history database, opened (and created or migrated) on construction; a context manager.

    Args:
        path: the database file; None: default_db_path(). Its folder is created.
    """

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else default_db_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: no implicit transactions; every write is an explicit BEGIN IMMEDIATE
            self._db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except (OSError, sqlite3.Error) as e:
            raise BadInput(f"cannot open history database {self.path}: {e}") from None
        try:
            self._db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            self._wal()
            self._db.execute("PRAGMA foreign_keys = ON")
            self._migrate()
        except sqlite3.DatabaseError as e:
            self._db.close()
            raise BadInput(f"{self.path} is not a usable xfbench history database ({e})") from None
        except BadInput:
            self._db.close()
            raise

    def _wal(self) -> None:
        """Switch the file to WAL (persistent: once per database). The switch upgrades a shared lock
        to an exclusive one, where SQLite returns SQLITE_BUSY at once rather than call the busy
        handler if waiting could deadlock (sqlite3_busy_handler docs), so two processes opening a
        fresh file retry here, with backoff, up to BUSY_TIMEOUT_S."""
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        pause = 0.01
        if self._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
            return
        while True:
            try:
                self._db.execute("PRAGMA journal_mode = WAL")  # an in-memory database stays 'memory'
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(pause)
                pause = min(2 * pause, 0.5)

    # -- schema --

    @property
    def version(self) -> int:
        """The database's schema version, from its meta table (0: an empty database)."""
        has_meta = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
        ).fetchone()
        if not has_meta:
            return 0
        row = self._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return int(row[0]) if row else 0

    def _migrate(self) -> None:
        """Walk MIGRATIONS from the database's version to SCHEMA_VERSION in one transaction. A
        current database takes no write lock (a reader never waits on a writer); otherwise the
        version is read again inside the transaction, so two processes opening a fresh file
        migrate it once."""
        current = self.version
        self._refuse_newer(current)
        if current == SCHEMA_VERSION:
            return
        with self._write():
            version = self.version
            self._refuse_newer(version)
            for target in range(version + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[target]:
                    self._db.execute(statement)
                self._db.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (str(target),),
                )

    def _refuse_newer(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise BadInput(
                f"history database {self.path} has schema version {version}, newer than this xfbench "
                f"understands ({SCHEMA_VERSION}); upgrade xfbench to use it"
            )

    def _write(self) -> _Transaction:
        return _Transaction(self._db)

    # -- writing --

    def record(self, run: RunResult, source: str | None = None, suite: str | None = None) -> int:
        """Add every segment of `run` with its latest record per case; returns the result rows added.

        Idempotent: rows already there (same run_id and case_id) are kept as they are, so recording
        one file twice adds nothing, and a file that grew (a --resume) adds only its new segment.
        A segment without records adds nothing. `suite` defaults to a header's own `suite` field.
        """
        headers = run.headers or [run.header]
        known = {h.run_id for h in headers}
        stray = sorted({str(r.run_id) for r in run.records if r.run_id not in known})
        if stray:
            raise BadInput(f"records name runs no header of this results file has: {', '.join(stray)}")
        recorded = datetime.now(UTC).isoformat(timespec="seconds")
        added = 0
        with self._write():
            for header in headers:
                records = latest([r for r in run.records if r.run_id == header.run_id])
                if records:
                    added += self._insert_run(header, records, source, suite, recorded)
        return added

    def _insert_run(self, header: Header, records: list[Record], source: str | None, suite: str | None,
                    recorded: str) -> int:
        env = header.environment
        prints = {}
        for r in records:
            fp = prints.setdefault(r.device, fingerprint(env, r.device))
            self._db.execute(
                "INSERT OR IGNORE INTO fingerprints (fingerprint, fields) VALUES (?, ?)",
                (fp, json.dumps(fingerprint_fields(env, r.device), sort_keys=True, default=str)),
            )
        # a run on one device type (the usual case) has one fingerprint; results keep their own
        named = getattr(header, "suite", None)  # a suite run's header: {"name": ..., "case": ...}
        suite = suite or (named.get("name") if isinstance(named, dict) else named if isinstance(named, str) else None)
        self._db.execute(
            "INSERT OR IGNORE INTO runs (run_id, created_utc, command, suite, fingerprint, environment, source, "
            "recorded_utc) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (header.run_id, header.created_utc, header.command, suite,
             prints[records[0].device], json.dumps(env, sort_keys=True, default=str), source, recorded),
        )
        cur = self._db.executemany(
            "INSERT OR IGNORE INTO results (run_id, case_id, fingerprint, label, variant, size, size_name, "
            "workload, device, status, median_s, ci_low_s, ci_high_s, tokens_per_s, peak_mem_bytes, n_samples) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [_result_row(header.run_id, prints[r.device], r) for r in records],
        )
        return cur.rowcount

    # -- reading --

    def cases(self, fingerprint: str | None = None) -> list[CaseSummary]:
        """Every case per machine fingerprint (or on `fingerprint` only), by label, variant, size."""
        where, args = ("WHERE r.fingerprint = ?", (fingerprint,)) if fingerprint else ("", ())
        rows = self._db.execute(
            "SELECT r.case_id, r.fingerprint, COUNT(*), SUM(r.status = 'ok'), MAX(u.created_utc) "
            f"FROM results r JOIN runs u USING (run_id) {where} GROUP BY r.case_id, r.fingerprint",
            args,
        ).fetchall()
        out = []
        for case_id, fp, runs, ok, last_utc in rows:
            label, variant, size, size_name, workload, device = self._db.execute(
                "SELECT r.label, r.variant, r.size, r.size_name, r.workload, r.device FROM results r "
                "JOIN runs u USING (run_id) WHERE r.case_id = ? AND r.fingerprint = ? "
                "ORDER BY u.created_utc DESC, r.run_id DESC LIMIT 1",
                (case_id, fp),
            ).fetchone()
            out.append(CaseSummary(case_id, fp, label, variant, size, size_name, workload, device,
                                   runs, ok or 0, last_utc))
        return sorted(out, key=lambda c: (c.label, c.variant, c.size, c.fingerprint))

    def series(self, case_id: str, fingerprint: str | None = None, last: int | None = BAND_WINDOW,
               metric: str = "time") -> list[Point]:
        """The case's `metric` in its last `last` ok runs (None: all), oldest first.

        metric: 'time' (median time per call, s), 'tokens_per_s' or 'peak_mem_bytes'. Without a
        fingerprint, runs of every machine are mixed: pass one to read a noise band.
        """
        column = METRICS.get(metric)
        if column is None:
            raise BadInput(f"unknown history metric {metric!r}; choose one of: {', '.join(METRICS)}")
        if last is not None and last < 1:
            raise BadInput(f"last must be at least 1, not {last}")
        where = f"r.case_id = ? AND r.status = 'ok' AND r.{column} IS NOT NULL"
        args: list[Any] = [case_id]
        if fingerprint:
            where += " AND r.fingerprint = ?"
            args.append(fingerprint)
        rows = self._db.execute(
            f"SELECT r.run_id, u.created_utc, r.{column} FROM results r JOIN runs u USING (run_id) "
            f"WHERE {where} ORDER BY u.created_utc DESC, r.run_id DESC LIMIT ?",
            (*args, -1 if last is None else last),
        ).fetchall()
        return [Point(run_id, created, float(value)) for run_id, created, value in reversed(rows)]

    def fingerprints(self) -> list[Machine]:
        """Every machine fingerprint with its fields and runs, most recently used first."""
        rows = self._db.execute(
            "SELECT f.fingerprint, f.fields, COUNT(DISTINCT r.run_id), MIN(u.created_utc), MAX(u.created_utc) "
            "FROM fingerprints f LEFT JOIN results r ON r.fingerprint = f.fingerprint "
            "LEFT JOIN runs u ON u.run_id = r.run_id GROUP BY f.fingerprint"
        ).fetchall()
        machines = [Machine(fp, json.loads(fields), runs, first, last) for fp, fields, runs, first, last in rows]
        return sorted(machines, key=lambda m: (m.last_utc or "", m.fingerprint), reverse=True)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> History:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on an exception."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: type | None, *exc: object) -> None:
        self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")


def _result_row(run_id: str, fp: str, r: Record) -> tuple:
    t = r.time
    peak = r.metrics.get("peak_mem_bytes")
    if peak is None and r.memory is not None:
        peak = r.memory.peak_bytes
    tokens = r.metrics.get("tokens_per_s")
    return (
        run_id, r.case_id, fp, r.label, r.variant, r.size, r.size_name, r.workload, r.device, r.status,
        t.median_s if t else None, t.ci_low_s if t else None, t.ci_high_s if t else None,
        _number(tokens), _number(peak), t.n if t else None,
    )


def _number(x: object) -> float | None:
    return float(x) if isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) else None


# --- statistics ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Band:
    """The noise band of a case: where its runs on one machine fall when nothing changed.

    Args:
        median, iqr: of the last `n` runs' values (quartiles by linear interpolation, numpy's default).
        low, high: median ∓ fence × iqr.
        half_width_rel: fence × iqr / |median|: how far a new run may stray, relatively, and still
            be noise (compare widens its gate by this).
    """

    median: float
    iqr: float
    low: float
    high: float
    half_width_rel: float
    n: int
    fence: float


def noise_band(values: list[float], fence: float = BAND_FENCE, window: int = BAND_WINDOW,
               min_runs: int = MIN_BAND_RUNS) -> Band | None:
    """Median ± fence × IQR over the last `window` values; None with fewer than `min_runs`.

    Method: rustc-perf's 3 × IQR significance fence (see BAND_FENCE) around the median, so one
    outlying run neither moves the centre nor widens the band much.
    """
    xs = [float(v) for v in values][-window:]
    if len(xs) < min_runs:
        return None
    q1, median, q3 = statistics.quantiles(xs, n=4, method="inclusive")  # type 7, as numpy.quantile
    iqr = q3 - q1
    half = fence * iqr
    rel = half / abs(median) if median else (0.0 if half == 0 else math.inf)
    return Band(median, iqr, median - half, median + half, rel, len(xs), fence)


def noise_sd(values: list[float]) -> float:
    """The series' robust noise sd from successive differences: MAD_TO_SD × MAD(diff(x)) / √2.

    Differencing cancels the level, so a step moves one difference and barely this estimate (the
    difference-based MAD estimator, e.g. the R package dust's sdDiff(method = "MAD")). A 5-run
    window's own MAD is too noisy a scale: with it, 3-sd steps appeared in most flat noisy series.
    """
    diffs = [b - a for a, b in zip(values, values[1:], strict=False)]
    if not diffs:
        return 0.0
    m = statistics.median(diffs)
    return MAD_TO_SD * statistics.median(abs(d - m) for d in diffs) / math.sqrt(2)


def _score(values: list[float], i: int, window: int, sd: float) -> tuple[float, float]:
    """(step / sd, step / median before) of a change just before values[i]."""
    mb = statistics.median(values[i - window:i])
    step = abs(statistics.median(values[i:i + window]) - mb)
    score = step / sd if sd > 0 else (math.inf if step > 0 else 0.0)
    rel = step / abs(mb) if mb else (math.inf if step > 0 else 0.0)
    return score, rel


def _split_cost(values: list[float], lo: int, i: int, hi: int) -> float:
    """Total absolute deviation of values[lo:hi] from two medians, one each side of i (an L1 fit of
    one step at i). lo and hi stay fixed while i moves, so an outlier in the span costs every
    split alike."""
    before, after = values[lo:i], values[i:hi]
    mb, ma = statistics.median(before), statistics.median(after)
    return sum(abs(x - mb) for x in before) + sum(abs(x - ma) for x in after)


def change_points(values: list[float], window: int = CHANGE_WINDOW, threshold: float = CHANGE_SCORE,
                  min_step_rel: float = MIN_STEP_REL) -> list[int]:
    """Indices i where the series steps: values[i] is the first run at the new level.

    Method: i is a candidate when the median of the `window` values from i differs from the median
    of the `window` values before i by more than `threshold` robust noise sds of the whole series
    (noise_sd: the MAD of its successive differences, pooled over every run) and by more than
    `min_step_rel` of the median before. A step makes a run of adjacent candidates (a median
    ignores up to window//2 values of the other level), which counts as one step, placed where a
    one-step L1 fit of the run's span (its first candidate - window to its last + window) fits
    best (smallest total absolute deviation; ties: the higher score, then the earlier index).
    Medians make one outlying run no step; steps closer than about `window` runs merge, and a
    step shows only once `window` runs follow it.
    """
    xs = [float(v) for v in values]
    sd = noise_sd(xs)
    candidates = []
    for i in range(window, len(xs) - window + 1):
        score, rel = _score(xs, i, window, sd)
        if score > threshold and rel > min_step_rel:
            candidates.append((i, score))
    groups: list[list[tuple[int, float]]] = []
    for i, score in candidates:
        if groups and i == groups[-1][-1][0] + 1:
            groups[-1].append((i, score))
        else:
            groups.append([(i, score)])
    out = []
    for g in groups:
        lo, hi = g[0][0] - window, g[-1][0] + window
        out.append(min(g, key=lambda c: (_split_cost(xs, lo, c[0], hi), -c[1], c[0]))[0])
    return out


def step_rel(values: list[float], i: int, window: int = CHANGE_WINDOW) -> float:
    """The relative step at change point i: median of the `window` values from i / median of the
    `window` before - 1 (+0.12: 12% higher after)."""
    before, after = values[max(i - window, 0):i], values[i:i + window]
    return statistics.median(after) / statistics.median(before) - 1


def level_start(values: list[float]) -> int:
    """Index of the first run at the series' current level: its last change point, else 0."""
    changes = change_points(values)
    return changes[-1] if changes else 0


def recent_band(values: list[float]) -> Band | None:
    """The noise band of the current level: noise_band of the values from level_start on (at most
    the last BAND_WINDOW), so a past step does not widen the band of the runs after it. None when
    fewer than MIN_BAND_RUNS runs are at the current level."""
    return noise_band(values[level_start(values):])


def sparkline(values: list[float]) -> str:
    """One block per value, scaled from the min (▁) to the max (█), rounding to the nearest of the
    8 levels; a flat series is all ▄; an empty one ''."""
    xs = [float(v) for v in values]
    if not xs:
        return ""
    lo, hi = min(xs), max(xs)
    if hi == lo:
        return SPARK_BLOCKS[3] * len(xs)
    top = len(SPARK_BLOCKS) - 1
    return "".join(SPARK_BLOCKS[math.floor((x - lo) / (hi - lo) * top + 0.5)] for x in xs)
