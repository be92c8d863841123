"""Suite files: TOML listing cases of any workload, validated with pydantic, turned into a Plan.

A suite (see cli/suites/*.toml for the built-in ones, README "Suites" for the format):

    name = "quick"
    description = "..."
    [run]              # how every case runs (a case may override target_ci, max_time, memory, count_flops,
                       # profile, memory_snapshot)
    device = "cpu"
    max_time = 1.0
    [compare]          # what `xfbench compare` holds this suite's cases to
    threshold = "5%"   # relative ("5%", 0.05) or absolute time ("2ms")
    [output]
    html = true
    markdown = true    # summary.md in the run folder
    [[cases]]
    name = "attention"
    workload = "attention"
    seq_lens = [256, 512]   # the command's own options (`xfbench attention --help`), as TOML values
    impl = ["naive", "sdpa"]

Every error names the file, the key path and the problem in one line (BadInput, exit 2).
"""

from __future__ import annotations

import inspect
import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..reports.errors import BadInput
from .parse import MAX_DIM, MAX_LEN, MAX_SNAPSHOT_ENTRIES  # the bounds the commands' options have

BUILTIN_PACKAGE = "xfbench.cli"
BUILTIN_FOLDER = "suites"
MAX_REL_THRESHOLD = 1.0  # +100%: a gate wider than 2x the baseline catches nothing a user means

Pos = Annotated[int, Field(gt=0, le=MAX_LEN)]
Dim = Annotated[int, Field(gt=0, le=MAX_DIM)]
Ints = list[Pos] | str  # a list, or the command's own range syntax ('256:4096:x2')
Names = list[str] | str
_ABS = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[-+]?\d+)?)\s*(s|ms|us|µs|ns)\s*$", re.IGNORECASE)
_TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


class Threshold(BaseModel):
    """A regression threshold: relative (a fraction of the baseline) or absolute (seconds)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rel: float | None = None
    abs_s: float | None = None

    def text(self) -> str:
        return f"{self.rel:.1%}" if self.rel is not None else f"{self.abs_s * 1e3:g} ms"


MAX_ABS_THRESHOLD_S = 86400.0  # no case's time changes by more than a day: a larger threshold is a typo


def parse_threshold(value: Any) -> Threshold:
    """'5%' or 0.05 (relative, in (0, 100%]) or '2ms' (absolute time); ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError("a threshold is '5%', 0.05 or '2ms', not a boolean")
    if isinstance(value, int | float):
        rel = float(value)
    elif isinstance(value, str) and value.strip().endswith("%"):
        try:
            rel = float(value.strip()[:-1]) / 100
        except ValueError:
            raise ValueError(f"'{value}' is not a percentage") from None
    elif isinstance(value, str) and (m := _ABS.match(value)):
        seconds = float(m.group(1)) * _TIME_UNITS[m.group(2).lower()]
        if not seconds > 0:
            raise ValueError(f"'{value}': an absolute threshold must be above 0")
        if not seconds <= MAX_ABS_THRESHOLD_S:  # also inf: '1e400ms' would let every change pass the gate
            raise ValueError(f"'{value}': an absolute threshold is at most a day (86400 s)")
        return Threshold(abs_s=seconds)
    else:
        raise ValueError(f"'{value}' is not a threshold (give '5%', 0.05 or '2ms')")
    if not 0 < rel <= MAX_REL_THRESHOLD:
        raise ValueError(f"{rel:.0%} is outside (0%, {MAX_REL_THRESHOLD:.0%}]: a relative threshold is a fraction "
                         "of the baseline")
    return Threshold(rel=rel)


class RunSettings(BaseModel):
    """[run]: the shared sweep options (`xfbench attention --help`), for every case of the suite."""

    model_config = ConfigDict(extra="forbid")

    device: str = "auto"
    target_ci: float = Field(0.02, gt=0, le=1)
    max_time: float = Field(2.0, ge=0, le=86400)
    threads: int | None = Field(None, gt=0, le=4096)
    memory: bool = True
    count_flops: bool = False
    calibrate: bool = True
    telemetry: bool = True
    profile: bool = False
    profile_schedule: str = "1,1,3"
    profile_top: int = Field(10, ge=1, le=100)
    profile_stack: bool = False
    memory_snapshot: bool = False
    snapshot_entries: int = Field(100_000, ge=1000, le=MAX_SNAPSHOT_ENTRIES)
    isolate: bool = False  # each case in a fresh child (`xfbench attention --help`: --isolate)
    case_timeout: float | None = Field(None, ge=1, le=7 * 86400)  # seconds; turns isolate on

    @field_validator("profile_schedule")
    @classmethod
    def _schedule(cls, v: str) -> str:
        from .parse import parse_schedule

        try:
            parse_schedule(v, "profile_schedule")
        except BadInput as e:
            raise ValueError(str(e).removeprefix("profile_schedule: ")) from None
        return v


class CompareSettings(BaseModel):
    """[compare]: what `xfbench compare` holds the suite's cases to."""

    model_config = ConfigDict(extra="forbid")

    threshold: Threshold = Threshold(rel=0.05)
    metric: Literal["time", "tokens_per_s", "peak_mem"] = "time"

    @field_validator("threshold", mode="before")
    @classmethod
    def _threshold(cls, v: Any) -> Threshold:
        return v if isinstance(v, Threshold) else parse_threshold(v)


class OutputSettings(BaseModel):
    """[output]: what a suite run writes into its run folder besides results.jsonl."""

    model_config = ConfigDict(extra="forbid")

    html: bool = True
    markdown: bool = True
    csv: bool = False


class CaseBase(BaseModel):
    """What every suite case has besides its workload's options."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    threshold: Threshold | None = None
    target_ci: float | None = Field(None, gt=0, le=1)
    max_time: float | None = Field(None, ge=0, le=86400)
    memory: bool | None = None
    count_flops: bool | None = None
    profile: bool | None = None
    memory_snapshot: bool | None = None

    @field_validator("threshold", mode="before")
    @classmethod
    def _threshold(cls, v: Any) -> Threshold | None:
        return v if v is None or isinstance(v, Threshold) else parse_threshold(v)

    def options(self) -> dict[str, Any]:
        """The workload's options that the file gives (the command's defaults fill the rest)."""
        own = set(CaseBase.model_fields) | {"workload"}
        return {k: v for k, v in self.model_dump(exclude_unset=True).items() if k not in own}


class AttentionCase(CaseBase):
    workload: Literal["attention"]
    seq_lens: Ints | None = None
    impl: Names | None = None
    mode: Names | None = None
    batch: Pos | None = None
    heads: Dim | None = None
    head_dim: Dim | None = None
    dtype: str | None = None
    causal: bool | None = None


class ModelCase(CaseBase):
    workload: Literal["model"]
    presets: Names | None = None
    mode: Names | None = None
    batch: Pos | None = None
    seq_len: Pos | None = None
    prompt_len: Pos | None = None
    new_tokens: Pos | None = None
    dtype: str | None = None
    compile: bool | None = None
    cuda_graphs: bool | None = None
    layers: Dim | None = None
    d_model: Dim | None = None
    heads: Dim | None = None
    vocab: Pos | None = None
    flop_convention: Literal["full", "causal"] | None = None


class ParallelCase(CaseBase):
    workload: Literal["parallel"]
    presets: Names | None = None
    strategy: Names | None = None
    world_sizes: Ints | None = None
    scaling: Literal["weak", "strong"] | None = None
    batch: Pos | None = None
    seq_len: Pos | None = None
    dtype: str | None = None
    bucket_mb: Dim | None = None
    layers: Dim | None = None
    d_model: Dim | None = None
    heads: Dim | None = None
    vocab: Pos | None = None
    exposed_comm: bool | None = None
    collectives: Names | None = None
    message_sizes: Names | None = None
    pg_timeout: float | None = Field(None, ge=1, le=86400)


SuiteCase = Annotated[AttentionCase | ModelCase | ParallelCase, Field(discriminator="workload")]


class Suite(BaseModel):
    """A whole suite file.

    Args:
        name: the suite's name (defaults to the file's stem).
        cases: at least one case; names unique within the suite.
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    run: RunSettings = RunSettings()
    compare: CompareSettings = CompareSettings()
    output: OutputSettings = OutputSettings()
    cases: list[SuiteCase] = Field(min_length=1)
    source: str = Field("", exclude=True, description="where it was read from (a path, or builtin:NAME)")

    @model_validator(mode="after")
    def _unique_names(self) -> Suite:
        seen: set[str] = set()
        for i, c in enumerate(self.cases):
            if c.name in seen:
                raise ValueError(f"cases[{i}]: duplicate case name '{c.name}' (each case needs its own name)")
            seen.add(c.name)
        return self

    def threshold_of(self, case: CaseBase) -> Threshold:
        return case.threshold or self.compare.threshold


# --- loading --------------------------------------------------------------------------------


def builtin_suites() -> dict[str, str]:
    """Built-in suite name -> its TOML text (shipped in the package, cli/suites/)."""
    folder = resources.files(BUILTIN_PACKAGE) / BUILTIN_FOLDER
    return {p.name[:-5]: p.read_text(encoding="utf-8") for p in sorted(folder.iterdir(), key=lambda p: p.name)
            if p.name.endswith(".toml")}


_TYPE_PART = re.compile(r"^(str|int|float|bool|list|dict)\b|\[")  # a union member's name in a location


def _where(loc: tuple) -> str:
    """A pydantic error location as a key path: cases[0].seq_lens[1] (union tags and member names left out)."""
    out = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
        elif i == 2 and loc[0] == "cases" and part in ("attention", "model", "parallel"):
            continue  # the discriminated union's tag
        elif _TYPE_PART.search(str(part)) or str(part).startswith("function-"):
            continue
        else:
            out += ("." if out else "") + str(part)
    return out


def _first_error(e: ValidationError) -> str:
    errors = e.errors()
    err = errors[0]
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    elif err["type"] == "missing":
        msg = "missing key"
    elif err["type"] == "union_tag_invalid":
        tag = err["input"].get("workload") if isinstance(err.get("input"), dict) else "?"
        msg = f"unknown workload '{tag}' (choose from attention, model, parallel)"
    elif err["type"] == "union_tag_not_found":
        msg = "missing key 'workload' (attention, model or parallel)"
    where = _where(err["loc"])
    # a union's other member (a list, or the command's own text form) fails at the same key
    others = {w for w in (_where(x["loc"]) for x in errors[1:]) if not where.startswith(w)}
    more = f" (and {len(others)} more)" if others else ""
    return f"{where}: {msg}{more}" if where else f"{msg}{more}"


def parse_suite(text: str, source: str, default_name: str) -> Suite:
    """A suite from TOML text; BadInput naming `source`, the key path and the problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise BadInput(f"{source}: not valid TOML: {e}") from None
    if not data:
        raise BadInput(f"{source}: empty suite: it needs at least one [[cases]] table")
    if "case" in data and "cases" not in data:
        raise BadInput(f"{source}: case: unknown key (cases are [[cases]] tables)")
    data.setdefault("name", default_name)
    try:
        suite = Suite.model_validate(data)
    except ValidationError as e:
        raise BadInput(f"{source}: {_first_error(e)}") from None
    suite.source = source
    return suite


def load_suite(name_or_path: str) -> Suite:
    """A built-in suite by name, or a suite file by path; BadInput if neither or invalid."""
    path = Path(name_or_path)
    if name_or_path.endswith(".toml") or path.exists():
        if not path.is_file():
            raise BadInput(f"no suite file at {path}")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise BadInput(f"{path}: cannot read it ({e})") from None
        return parse_suite(text, str(path), path.stem)
    builtins = builtin_suites()
    if name_or_path not in builtins:
        raise BadInput(f"no built-in suite '{name_or_path}' and no such file (built-in: {', '.join(builtins)}; "
                       "or give a path ending in .toml)")
    return parse_suite(builtins[name_or_path], f"builtin:{name_or_path}", name_or_path)


# --- into a Plan ----------------------------------------------------------------------------


def _command_defaults(command) -> dict[str, Any]:
    """A command's own options and their CLI defaults, read from its signature (one definition)."""
    from .common import SharedOptions

    shared = {f for f in SharedOptions.__dataclass_fields__}
    out = {}
    for p in inspect.signature(command).parameters.values():
        if p.name in shared or p.name == "shared":
            continue
        default = p.default
        out[p.name] = getattr(default, "default", default)
    return out


def _as_option(value: Any) -> Any:
    """A TOML value as the command's option value: a list becomes its comma-separated text."""
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return value


def case_plan(suite: Suite, index: int, device: str) -> list:
    """The Cases that suite case `index` describes, through the same function its command uses;
    BadInput naming the file and the case."""
    from . import attention as attention_cli
    from . import model as model_cli
    from . import parallel as parallel_cli

    case = suite.cases[index]
    commands = {
        "attention": (attention_cli.attention, attention_cli.attention_plan),
        "model": (model_cli.model, model_cli.model_plan),
        "parallel": (parallel_cli.parallel, parallel_cli.parallel_plan),
    }
    command, plan = commands[case.workload]
    defaults = _command_defaults(command)
    given = {k: _as_option(v) for k, v in case.options().items()}
    kwargs = {**defaults, **given}
    wanted = set(inspect.signature(plan).parameters) - {"device", "job_env", "world_sizes_given"}
    try:
        cases = plan(device, **{k: v for k, v in kwargs.items() if k in wanted})
    except BadInput as e:
        raise BadInput(f"{suite.source}: cases[{index}] '{case.name}': {e}") from None
    if not cases:
        raise BadInput(f"{suite.source}: cases[{index}] '{case.name}': describes no case to run")
    return cases
