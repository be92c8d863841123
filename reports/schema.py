"""The versioned results schema: a header line, then one Record per Case (JSON Lines)."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, field_validator

from . import contract
from .errors import BadInput

# NOTE: bump SCHEMA_VERSION for any change that is not purely additive, and add a
# `migrate_to_N` function to MIGRATIONS plus a fixture in tests/fixtures/. Additive
# fields only need a default here.
SCHEMA_VERSION = 4

Status = Literal["ok", "oom", "error", "skipped"]


class TimeStats(BaseModel):
    """Per-call wall time of the measured windows, in seconds; raw samples are kept."""

    model_config = ConfigDict(extra="allow")

    statistic: str = Field("median", description="statistic shown as 'the' time")
    n: int = Field(description="number of timed windows (samples)")
    calls_per_sample: int = Field(description="calls inside one timed window (one sync per window)")
    warmup_calls: int = Field(description="calls run and discarded before timing")
    # Times are durations: > 0 (the reports take their logarithms and ratios).
    median_s: PositiveFloat
    mean_s: PositiveFloat
    min_s: PositiveFloat
    max_s: PositiveFloat
    p10_s: PositiveFloat
    p90_s: PositiveFloat
    iqr_s: float
    iqr_over_median: float
    ci_level: float = Field(0.95, description="coverage of the CI: 0.95, or less with fewer than 6 samples")
    ci_low_s: PositiveFloat = Field(description="lower bound of the CI of the median (order statistics)")
    ci_high_s: PositiveFloat
    ci_rel: float = Field(description="largest distance of a CI bound from the median, / median")
    target_ci_rel: float
    converged: bool = Field(description="ci_rel reached target_ci_rel before the time cap")
    total_s: float = Field(description="wall time spent in timed windows")
    clock: str = Field(description="perf_counter | cuda_event | fake")
    samples_s: list[PositiveFloat] = Field(description="per-call time of each window, in order")
    host_enqueue_median_s: float | None = Field(
        None,
        description="median per-call host time to enqueue a window's calls (start event to the last call "
        "returning, before the synchronize); None where the clock is the host's own (perf_counter, fake)",
    )


class MemoryStats(BaseModel):
    """Peak memory of one step measured in its own pass, above the baseline before it."""

    model_config = ConfigDict(extra="allow")

    method: str = Field(description="how the peak was read, e.g. 'cuda_allocator', 'vmhwm'")
    peak_bytes: int | None = Field(description="peak above baseline during one step")
    baseline_bytes: int | None = None
    peak_reserved_bytes: int | None = Field(None, description="CUDA caching allocator reserved")
    note: str | None = None


class Measurement(BaseModel):
    """What profilers.measure() returns for one Step: plain data, so a child process or a
    data-parallel rank can hand it to the parent, which alone builds the Record.

    Fields have the meaning of the Record fields of the same names.
    """

    model_config = ConfigDict(extra="forbid")

    time: TimeStats
    memory: MemoryStats | None = None
    metrics: dict[str, float | int | str | bool | None] = Field(default_factory=dict)
    info: dict[str, Any] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)
    telemetry: dict[str, Any] | None = None
    profile: dict[str, Any] | None = None


class RankStats(BaseModel):
    """One rank of a data-parallel case: where it ran and its own figures."""

    model_config = ConfigDict(extra="allow")

    rank: int
    host: str
    local_rank: int
    device: str
    threads: int = Field(description="torch intra-op threads this rank ran with")
    median_s: float | None = Field(
        description="median of this rank's own window times (the case's time is the max over ranks per window)"
    )
    samples_s: list[float] = Field(
        default_factory=list, description="this rank's per-call time of each timed window"
    )
    peak_mem_bytes: int | None = Field(
        None, description="this rank's peak in the memory pass (never summed over ranks)"
    )
    memory_method: str | None = None
    state_bytes: int | None = Field(
        None, description="weights and optimizer state this rank holds between steps (its local shards), counted"
    )


class Record(BaseModel):
    """One measured (or failed, or skipped) Case. Metrics are SI, unit in the field name."""

    model_config = ConfigDict(extra="allow")

    kind: Literal["record"] = "record"
    run_id: str | None = Field(None, description="the run (results-file segment) that measured it: its header")
    case_id: str
    workload: str
    label: str = Field(description="groups records into one table (e.g. workload + mode)")
    variant: str = Field(description="one series in the table (e.g. the implementation)")
    size: PositiveInt | PositiveFloat = Field(description="the swept value (e.g. seq_len); > 0, swept on log axes")
    size_name: str = Field(description="name of the swept value, e.g. 'N'")
    params: dict[str, Any]
    device: str
    status: Status
    reason: str | None = None
    time: TimeStats | None = None
    memory: MemoryStats | None = None
    metrics: dict[str, float | int | str | bool | None] = Field(default_factory=dict)
    info: dict[str, Any] = Field(
        default_factory=dict, description="which code path ran: backend, cache policy, threads"
    )
    warnings: list[str] = Field(default_factory=list)
    telemetry: dict[str, Any] | None = Field(
        None,
        description="device telemetry of the timed window: NVML energy, power, clocks, throttle reasons, "
        "GPU memory side by side, CPU contention (keys: profilers.telemetry_agg.TELEMETRY_KEYS); "
        "every figure None with a reason where unavailable",
    )
    ranks: list[RankStats] | None = Field(
        None, description="data-parallel cases: one entry per rank (the case's time is the max over ranks)"
    )
    profile: dict[str, Any] | None = Field(
        None,
        description="--profile / --memory-snapshot: the torch.profiler pass's summary (top ops, breakdown, "
        "overhead, FLOP cross-check) and the files it wrote, relative to the run folder "
        "(keys: profilers.torch_profile.profile_step and cross_checks); None when not profiled",
    )
    started_utc: str | None = None
    wall_s: float | None = Field(None, description="wall time spent on this case, all passes")

    @field_validator("params")
    @classmethod
    def _params_contract(cls, params: dict[str, Any], info) -> dict[str, Any]:
        """The keys of its workload's params that the reports read, of their JSON types (contract.PARAMS)."""
        adapter = contract.PARAMS.get(info.data.get("workload"))
        if adapter is not None:
            contract.check(adapter, params)
        return params

    @field_validator("profile")
    @classmethod
    def _profile_contract(cls, profile: dict[str, Any] | None) -> dict[str, Any] | None:
        """The containers the profile report walks, of their JSON types (contract.Profile)."""
        if profile is not None:
            contract.check(contract.PROFILE, profile)
        return profile


class Header(BaseModel):
    """First line of every results file."""

    model_config = ConfigDict(extra="allow")

    kind: Literal["header"] = "header"
    schema_version: int = SCHEMA_VERSION
    run_id: str = Field(description="names this run; every record it wrote repeats it")
    tool_version: str
    created_utc: str
    command: str
    argv: list[str] = Field(default_factory=list)
    xfbench: dict[str, Any] = Field(
        default_factory=dict, description="xfbench itself: version, source folder, its git commit and dirty flag"
    )
    workdir: dict[str, Any] = Field(
        default_factory=dict, description="the directory it ran in: path, and its git commit if it is a checkout"
    )
    environment: dict[str, Any] = Field(default_factory=dict)
    warning_hints: dict[str, str] = Field(
        default_factory=dict, description="warning code -> what to do, so reports need no lookup"
    )

    @field_validator("environment")
    @classmethod
    def _environment_contract(cls, env: dict[str, Any]) -> dict[str, Any]:
        """The keys the reports read, of their JSON types (contract.Environment)."""
        contract.check(contract.ENVIRONMENT, env)
        return env


class RunResult(BaseModel):
    """A whole results file: its header and its records, in file order.

    Each command that wrote into the file (a first run, a --resume, another command into the
    same folder) opened a segment with its own header; `header` is the first, `headers` all.
    """

    header: Header
    records: list[Record]
    headers: list[Header] = Field(default_factory=list, description="every segment's header, in file order")
    notes: list[str] = Field(default_factory=list, description="problems met while loading")

    def header_of(self, record: Record) -> Header:
        """The header of the run that measured `record` (its environment, calibration, provenance)."""
        for h in self.headers or [self.header]:
            if h.run_id == record.run_id:
                return h
        raise KeyError(f"record {record.case_id} names run {record.run_id!r}, which no header in this file has")


def case_id(workload: str, params: dict[str, Any], device: str) -> str:
    """Stable id of a Case: the same workload, parameters and device give the same id."""
    blob = json.dumps({"w": workload, "p": params, "d": device}, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


def new_run_id() -> str:
    """A run id that sorts by time and never repeats: UTC time, pid and random bits."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{os.getpid()}-{secrets.token_hex(3)}"


# --- migrations -----------------------------------------------------------------------
# MIGRATIONS[n] upgrades a raw line dict from version n-1 to version n. A loader walks the
# chain from a segment's version up to SCHEMA_VERSION (store.load_results). A line is any JSON
# object (parse_line): a migration checks the type of what it reads and leaves a value of the
# wrong type as it is, for the model's validation to name.


def migrate_to_2(line: dict[str, Any]) -> dict[str, Any]:
    """v1 -> v2: headers name their run (run_id) and split provenance into xfbench's own and the
    working directory's; v1's `git` was the working directory's. v1 records carry no run_id: the
    loader gives them their segment's. v1's `flops_counted_over_analytic` divided the counted
    FLOPs by the convention FLOPs (not the executed work), so it keeps that meaning under its
    honest name."""
    line = dict(line)
    if line.get("kind") == "header":
        git = line.pop("git", None)
        git = git if isinstance(git, dict) else {}  # a damaged one: the header's own check names what else is wrong
        blob = json.dumps([line.get("created_utc"), line.get("command"), line.get("argv")], default=str)
        line.setdefault("run_id", "v1-" + hashlib.sha1(blob.encode()).hexdigest()[:12])
        line.setdefault("xfbench", {"version": line.get("tool_version"), "commit": None, "dirty": None})
        line.setdefault("workdir", {"path": None, "commit": git.get("commit"), "dirty": git.get("dirty")})
        return line
    metrics = line.get("metrics")
    if isinstance(metrics, dict) and "flops_counted_over_analytic" in metrics:  # not a dict: Record's check says so
        metrics = dict(metrics)
        metrics["flops_counted_over_convention"] = metrics.pop("flops_counted_over_analytic")
        line["metrics"] = metrics
    return line


def migrate_to_3(line: dict[str, Any]) -> dict[str, Any]:
    """v2 -> v3: records may carry `ranks` (data-parallel cases, one entry per rank); a v2 record
    ran in one process and has none."""
    line = dict(line)
    if line.get("kind") != "header":
        line.setdefault("ranks", None)
    return line


def migrate_to_4(line: dict[str, Any]) -> dict[str, Any]:
    """v3 -> v4: records may carry `profile` (--profile, --memory-snapshot); a v3 record was never
    profiled and has none."""
    line = dict(line)
    if line.get("kind") != "header":
        line.setdefault("profile", None)
    return line


MIGRATIONS: dict[int, Any] = {2: migrate_to_2, 3: migrate_to_3, 4: migrate_to_4}


def migrate(line: dict[str, Any], version: int) -> dict[str, Any]:
    """Upgrade one raw header or record dict from `version` to SCHEMA_VERSION."""
    if version < 1:
        raise BadInput(f"results file has schema version {version}; versions start at 1")
    if version > SCHEMA_VERSION:
        raise BadInput(
            f"results file has schema version {version}, newer than this xfbench "
            f"understands ({SCHEMA_VERSION}); upgrade xfbench to read it"
        )
    for target in range(version + 1, SCHEMA_VERSION + 1):
        line = MIGRATIONS[target](line)
    return line
