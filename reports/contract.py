"""The typed contract of a record's open dicts: the keys the reports read, and their JSON types.

`Record.params`, `Record.profile` and `Header.environment` are dicts (each workload has its own
keys, and a later version may add more), but the reports sort by their values, do arithmetic
with them and walk their lists. So the keys they read are declared here with the JSON type each
must have, and schema.Record / schema.Header check them whenever one is built: by the writer (a
record that breaks the contract is a bug there) and by the loader (a hand-edited or damaged file
is one line naming file:line and the field, exit 2, instead of a renderer's traceback). Keys
not declared here pass as they are; a declared key is never coerced. A declared key may be
absent (records of earlier versions, and tests, carry fewer): a report that needs one checks
for it, except where a key is required (CudaDevice: the environment table shows all of them).
"""

from __future__ import annotations

from typing import Any, NotRequired

from pydantic import ConfigDict, StrictBool, StrictFloat, StrictInt, StrictStr, TypeAdapter, ValidationError
from typing_extensions import TypedDict  # pydantic reads TypedDicts from here on Python < 3.12

Int = StrictInt  # JSON's true/false are not counts, and 64.0 is not a shape
Number = StrictInt | StrictFloat
Str = StrictStr
Bool = StrictBool

_OPEN = ConfigDict(extra="allow")


class AttentionParams(TypedDict, total=False):
    __pydantic_config__ = _OPEN  # type: ignore[misc]
    batch: Int
    heads: Int
    seq_len: Int
    head_dim: Int
    impl: Str
    mode: Str
    dtype: Str
    causal: Bool


class GPTParams(TypedDict, total=False):
    """The GPT shape and batch a model or data-parallel case ran (workloads.model, workloads.parallel)."""

    __pydantic_config__ = _OPEN  # type: ignore[misc]
    preset: Str
    dtype: Str
    batch: Int
    seq_len: Int
    n_layer: Int
    n_embd: Int
    n_head: Int
    vocab_size: Int
    block_size: Int


class ModelParams(GPTParams, total=False):
    __pydantic_config__ = _OPEN  # type: ignore[misc]
    mode: Str
    new_tokens: Int | None


class ParallelParams(GPTParams, total=False):
    __pydantic_config__ = _OPEN  # type: ignore[misc]
    strategy: Str
    backend: Str
    scaling: Str
    world_size: Int
    global_batch: Int
    bucket_mb: Number | None


class CollectiveParams(TypedDict, total=False):
    __pydantic_config__ = _OPEN  # type: ignore[misc]
    op: Str
    backend: Str
    dtype: Str
    world_size: Int
    message_bytes: Int


PARAMS: dict[str, TypeAdapter] = {
    "attention": TypeAdapter(AttentionParams),
    "model": TypeAdapter(ModelParams),
    "parallel": TypeAdapter(ParallelParams),
    "collective": TypeAdapter(CollectiveParams),
}


class CudaDevice(TypedDict):
    """One entry of environment.cuda_devices (profilers.env.cuda_devices): the environment table
    shows each of these keys, so an entry has them all."""

    __pydantic_config__ = _OPEN  # type: ignore[misc]
    index: Int
    name: Str
    total_memory_bytes: Int
    compute_capability: Str
    multiprocessors: Int
    l2_cache_bytes: NotRequired[Int | None]
    uuid: NotRequired[Str | None]


class Calibration(TypedDict, total=False):
    """The calibration summary a header's environment carries (profilers.calibrate)."""

    __pydantic_config__ = _OPEN  # type: ignore[misc]
    source: Str | None
    level: Str | None
    device_name: Str | None
    threads: Int | None
    spec: Str | None
    path: Str | None
    measured_flop_per_s: dict[str, Number | None] | None
    measured_copy_bytes_per_s: Number | None
    measured_read_bytes_per_s: Number | None
    spec_flop_per_s: Number | None
    spec_mem_bytes_per_s: Number | None
    peak_flops_override: Number | None


class Environment(TypedDict, total=False):
    """profilers.env.collect_environment's keys the reports read (all optional: a v1 header may
    lack some, and a run's own header always has them)."""

    __pydantic_config__ = _OPEN  # type: ignore[misc]
    hostname: Str | None
    os: Str | None
    python: Str | None
    torch: Str | None
    cuda: Str | None
    cudnn: Int | Str | None
    nccl: Str | None
    cpu_model: Str | None
    cpu_cores_physical: Int | None
    cpu_cores_logical: Int | None
    cpu_affinity: Int | None
    cpu_governor: Str | None
    torch_threads: Int | None
    torch_interop_threads: Int | None
    ram_bytes: Int | None
    load_avg: list[Number] | None
    cuda_devices: list[CudaDevice] | None
    device_uuids: list[Str | None] | None
    nvml: dict[str, Any] | None
    calibration: Calibration | None
    xfbench: dict[str, Any] | None
    workdir: dict[str, Any] | None


ENVIRONMENT = TypeAdapter(Environment)


class Profile(TypedDict, total=False):
    """Record.profile's containers (profilers.torch_profile.profile_step): the reports walk them.
    The figures inside are read through checks of their own (a number that is not one shows '-')."""

    __pydantic_config__ = _OPEN  # type: ignore[misc]
    ops: list[dict[str, Any]] | None
    other_ops: dict[str, Any] | None
    breakdown: dict[str, Number | None] | None
    schedule: dict[str, Any] | None
    traces: list[Any] | None
    activities: list[Any] | None
    trace: Str | None
    memory_snapshot: Str | None
    summary_of_rank: Int | None


PROFILE = TypeAdapter(Profile)


def check(adapter: TypeAdapter, value: Any) -> None:
    """ValueError naming the first key of `value` that breaks `adapter`'s contract ('seq_len:
    missing', 'load_avg.0: a number, not a string'); `value` itself is never changed."""
    try:
        adapter.validate_python(value, strict=True)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ValueError(f"{where}: {err['msg']}" if where else err["msg"]) from None


def check_loaded(record: Any) -> None:
    """ValueError for what a results file's record must hold beyond its fields' types (the
    loader's check; the writer only ever writes records that hold it): an ok record carries the
    time it measured."""
    if record.status == "ok" and record.time is None:
        raise ValueError("status 'ok' but no 'time' (an ok record carries what it measured)")
