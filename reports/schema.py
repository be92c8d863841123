"""The versioned results schema: a header line, then one Record per Case (JSON Lines)."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .errors import BadInput

# NOTE: bump SCHEMA_VERSION for any change that is not purely additive, and add a
# `migrate_to_N` function to MIGRATIONS plus a fixture in tests/fixtures/. Additive
# fields only need a default here.
SCHEMA_VERSION = 1

Status = Literal["ok", "oom", "error", "skipped"]


class TimeStats(BaseModel):
    """Per-call wall time of the measured windows, in seconds; raw samples are kept."""

    model_config = ConfigDict(extra="allow")

    statistic: str = Field("median", description="statistic shown as 'the' time")
    n: int = Field(description="number of timed windows (samples)")
    calls_per_sample: int = Field(description="calls inside one timed window (one sync per window)")
    warmup_calls: int = Field(description="calls run and discarded before timing")
    median_s: float
    mean_s: float
    min_s: float
    max_s: float
    p10_s: float
    p90_s: float
    iqr_s: float
    iqr_over_median: float
    ci_level: float = Field(0.95, description="coverage of the CI: 0.95, or less with fewer than 6 samples")
    ci_low_s: float = Field(description="lower bound of the CI of the median (order statistics)")
    ci_high_s: float
    ci_rel: float = Field(description="largest distance of a CI bound from the median, / median")
    target_ci_rel: float
    converged: bool = Field(description="ci_rel reached target_ci_rel before the time cap")
    total_s: float = Field(description="wall time spent in timed windows")
    clock: str = Field(description="perf_counter | cuda_event | fake")
    samples_s: list[float] = Field(description="per-call time of each window, in order")


class MemoryStats(BaseModel):
    """Peak memory of one step measured in its own pass, above the baseline before it."""

    model_config = ConfigDict(extra="allow")

    method: str = Field(description="how the peak was read, e.g. 'cuda_allocator', 'vmhwm'")
    peak_bytes: int | None = Field(description="peak above baseline during one step")
    baseline_bytes: int | None = None
    peak_reserved_bytes: int | None = Field(None, description="CUDA caching allocator reserved")
    note: str | None = None


class Record(BaseModel):
    """One measured (or failed, or skipped) Case. Metrics are SI, unit in the field name."""

    model_config = ConfigDict(extra="allow")

    kind: Literal["record"] = "record"
    case_id: str
    workload: str
    label: str = Field(description="groups records into one table (e.g. workload + mode)")
    variant: str = Field(description="one series in the table (e.g. the implementation)")
    size: int | float = Field(description="the swept value (e.g. seq_len)")
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
    started_utc: str | None = None
    wall_s: float | None = Field(None, description="wall time spent on this case, all passes")


class Header(BaseModel):
    """First line of every results file."""

    model_config = ConfigDict(extra="allow")

    kind: Literal["header"] = "header"
    schema_version: int = SCHEMA_VERSION
    tool_version: str
    created_utc: str
    command: str
    argv: list[str] = Field(default_factory=list)
    git: dict[str, Any] = Field(default_factory=dict)
    environment: dict[str, Any] = Field(default_factory=dict)
    warning_hints: dict[str, str] = Field(
        default_factory=dict, description="warning code -> what to do, so reports need no lookup"
    )


class RunResult(BaseModel):
    """A whole results file: its header and its records, in file order.

    Each command that wrote into the file (a first run, a --resume, another command into the
    same folder) opened a segment with its own header; `header` is the first, `headers` all.
    """

    header: Header
    records: list[Record]
    headers: list[Header] = Field(default_factory=list, description="every segment's header, in file order")
    notes: list[str] = Field(default_factory=list, description="problems met while loading")


def case_id(workload: str, params: dict[str, Any], device: str) -> str:
    """Stable id of a Case: the same workload, parameters and device give the same id."""
    blob = json.dumps({"w": workload, "p": params, "d": device}, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


# --- migrations -----------------------------------------------------------------------
# MIGRATIONS[n] upgrades a raw line dict from version n-1 to version n. None yet: version
# 1 is the first. A loader walks the chain from a file's version up to SCHEMA_VERSION.
MIGRATIONS: dict[int, Any] = {}


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
