"""Options every sweep command shares, defined once, and how they become RunOptions.

A sweep command declares only its own options and takes `shared: SharedOptions`;
@sweep_command appends the shared ones (SharedOptions' fields, their one definition) to
the command's CLI signature and hands them over as one SharedOptions.
"""

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from .parse import MAX_SNAPSHOT_ENTRIES, folder_path

Device = Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:N or auto.")]
Dtype = Annotated[
    str, typer.Option("--dtype", help="auto (float32 on CPU, bfloat16 on CUDA), float32, bfloat16, float16.")
]
Out = Annotated[
    Path | None,
    typer.Option(
        "--out", parser=folder_path, help="Run folder for results.jsonl [default: runs/<UTC time>-<command>]."
    ),
]
Resume = Annotated[bool, typer.Option("--resume", help="Skip cases already finished in --out's results file.")]
Force = Annotated[
    bool,
    typer.Option(
        "--force", help="Start a new run in an --out that already holds one (its files are kept as *.bak; without "
        "--force or --resume such an --out is refused).",
    ),
]
TargetCi = Annotated[
    float,
    typer.Option(
        "--target-ci", min=0.0001, max=1.0, help="Stop when the 95% CI of the median is within this fraction."
    ),
]
MaxTime = Annotated[float, typer.Option("--max-time", min=0.0, help="Cap in seconds on the timed phase of one case.")]
Threads = Annotated[
    int | None, typer.Option("--threads", min=1, help="torch intra-op threads [default: torch's].")
]
MemLimit = Annotated[
    str | None,
    typer.Option("--mem-limit", help="Cap memory beyond the start, e.g. 2GiB: cases past it become OOM records."),
]
Memory = Annotated[bool, typer.Option("--memory/--no-memory", help="Run the separate peak-memory pass.")]
CountFlops = Annotated[
    bool,
    typer.Option(
        "--count-flops", help="Count FLOPs once per case with torch's FlopCounterMode (outside timing) and report "
        "counted over the work the implementation dispatches.",
    ),
]
Calibrate = Annotated[
    bool,
    typer.Option(
        "--calibrate/--no-calibrate",
        help="Measure MFU and roofline against this machine's calibrated peaks (cached per machine).",
    ),
]
Recalibrate = Annotated[bool, typer.Option("--recalibrate", help="Measure the peaks again instead of the cache.")]
PeakTflops = Annotated[
    float | None,
    typer.Option(
        "--peak-tflops", help="Your peak in TFLOP/s for mfu_spec (replaces the spec sheet; e.g. unknown GPUs)."
    ),
]
Telemetry = Annotated[
    bool,
    typer.Option("--telemetry/--no-telemetry", help="Sample NVML (energy, power, clocks) around each timed window."),
]
IdleBaseline = Annotated[
    bool, typer.Option("--idle-baseline", help="Measure idle GPU power once and subtract it from energy.")
]
Html = Annotated[
    bool, typer.Option("--html/--no-html", help="Write report.html into the run folder when the sweep ends.")
]
History = Annotated[
    bool, typer.Option("--history/--no-history", help="Record the run into the history database (xfbench history).")
]
Db = Annotated[
    Path | None,
    typer.Option("--db", help="History database (SQLite) [default: $XFBENCH_HISTORY_DB, else the user data folder]."),
]
Profile = Annotated[
    bool,
    typer.Option(
        "--profile", help="Profile each case with torch.profiler in a pass of its own, after timing: a trace "
        "(trace.json.gz, for ui.perfetto.dev) in the run folder and its top operators in the report.",
    ),
]
ProfileSchedule = Annotated[
    str,
    typer.Option(
        "--profile-schedule", help="torch.profiler's steps as WAIT,WARMUP,ACTIVE (only ACTIVE steps are recorded).",
    ),
]
ProfileTop = Annotated[
    int, typer.Option("--profile-top", min=1, max=100, help="Operators per profiled case in the tables (top k).")
]
ProfileStack = Annotated[
    bool, typer.Option("--profile-stack", help="Record Python stacks in the trace (larger, slower to profile).")
]
MemorySnapshot = Annotated[
    bool,
    typer.Option(
        "--memory-snapshot", help="CUDA: dump the allocator's history of one step (memory_snapshot.pickle, for "
        "pytorch.org/memory_viz), and at an out-of-memory error; elsewhere the record says why not.",
    ),
]
SnapshotEntries = Annotated[
    int,
    typer.Option(
        "--snapshot-entries", min=1000, max=MAX_SNAPSHOT_ENTRIES,
        help="Allocator events a memory snapshot keeps (max_entries; each holds its stack trace in host memory).",
    ),
]
Isolate = Annotated[
    bool,
    typer.Option(
        "--isolate/--no-isolate",
        help="Run each case in a fresh child process: a crash, abort, kill or hang becomes that case's error record "
        "and the sweep goes on [default: off; on with --case-timeout].",
    ),
]
CaseTimeout = Annotated[
    float | None,
    typer.Option(
        "--case-timeout", min=1.0, max=7 * 86400.0,
        help="End a case still running after this many seconds as an error record (needs a child: turns on "
        "--isolate) [default with --isolate: 1800].",
    ),
]
FakeClock = Annotated[bool, typer.Option("--fake-clock", hidden=True)]


def check_force_resume(force: bool, resume: bool) -> None:
    """BadInput for --force with --resume (a sweep's and `xfbench run`'s: one rule, one message)."""
    if force and resume:
        from ..reports.errors import BadInput

        raise BadInput("--force contradicts --resume: give one (--resume adds to the run in --out, --force "
                       "starts a new one there)")


@dataclass(frozen=True)
class SharedOptions:
    """The options every sweep command shares, defined here once: each field's annotation
    carries its CLI flag and help, its default is the CLI default, and sweep_command puts the
    fields on a command's signature."""

    device: Device = "auto"
    out: Out = None
    resume: Resume = False
    force: Force = False
    target_ci: TargetCi = 0.02
    max_time: MaxTime = 5.0
    threads: Threads = None
    mem_limit: MemLimit = None
    memory: Memory = True
    count_flops: CountFlops = False
    calibrate: Calibrate = True
    recalibrate: Recalibrate = False
    peak_tflops: PeakTflops = None
    telemetry: Telemetry = True
    idle_baseline: IdleBaseline = False
    html: Html = True
    history: History = True
    db: Db = None
    profile: Profile = False
    profile_schedule: ProfileSchedule = "1,1,3"
    profile_top: ProfileTop = 10
    profile_stack: ProfileStack = False
    memory_snapshot: MemorySnapshot = False
    snapshot_entries: SnapshotEntries = 100_000
    isolate: Isolate = False
    case_timeout: CaseTimeout = None
    fake_clock: FakeClock = False

    def run_options(self):
        """As RunOptions (imports torch: call it inside a command body); check_shared first, so a
        bad shared option is exit 2 before anything is calibrated or measured."""
        self.check_shared()
        from ..profilers.timer import TimerPolicy
        from ..workloads.runner import RunOptions
        from .parse import parse_bytes, parse_peak_tflops

        return RunOptions(
            policy=TimerPolicy(target_ci_rel=self.target_ci, max_time_s=self.max_time),
            threads=self.threads, measure_memory=self.memory, count_flops=self.count_flops,
            mem_limit_bytes=parse_bytes(self.mem_limit, "--mem-limit") if self.mem_limit is not None else None,
            peak_flops_override=parse_peak_tflops(self.peak_tflops), telemetry=self.telemetry,
            idle_baseline=self.idle_baseline, fake_clock=self.fake_clock,
            calibrate=self.calibrate, recalibrate=self.recalibrate,  # check_shared: --recalibrate implies it
            profile=self.profile_options(), isolate=self.isolate, case_timeout_s=self.case_timeout,
        )

    def check_shared(self) -> None:
        """BadInput (one line, exit 2) for shared options that contradict each other or cannot work:
        --no-calibrate with --recalibrate, an empty or unusable --out (parse.check_out: a file, a
        results.jsonl that is a folder, a name too long, a parent that is a file), an empty or
        bad --mem-limit (an empty --out never gets here: parse.folder_path refuses it). Reads
        nothing but the file system."""
        from ..reports.errors import BadInput
        from .parse import check_out, parse_bytes

        if self.recalibrate and not self.calibrate:
            raise BadInput(
                "--recalibrate contradicts --no-calibrate: give one (--recalibrate measures the peaks again, "
                "--no-calibrate measures against none)"
            )
        check_force_resume(self.force, self.resume)
        check_out(self.out, "--out")
        if self.mem_limit is not None:  # '' is not "no limit": it is a mistake
            parse_bytes(self.mem_limit, "--mem-limit")

    def profile_options(self):
        """As profilers.torch_profile.ProfileOptions, or None without --profile and --memory-snapshot."""
        if not (self.profile or self.memory_snapshot):
            return None
        from ..profilers.torch_profile import ProfileOptions
        from .parse import parse_schedule

        wait, warmup, active = parse_schedule(self.profile_schedule, "--profile-schedule")
        return ProfileOptions(
            trace=self.profile, memory_snapshot=self.memory_snapshot, wait=wait, warmup=warmup, active=active,
            with_stack=self.profile_stack, top_k=self.profile_top, snapshot_entries=self.snapshot_entries,
        )


@functools.cache
def _shared_parameters() -> list[inspect.Parameter]:
    """SharedOptions' fields as keyword-only CLI parameters (computed once per process)."""
    hints = typing.get_type_hints(SharedOptions, include_extras=True)
    return [
        inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=hints[f.name])
        for f in dataclasses.fields(SharedOptions)
    ]


def sweep_command(fn: Callable[..., typing.Any]) -> Callable[..., typing.Any]:
    """Give a command `fn(own options..., shared: SharedOptions)` the shared options on its CLI.

    Typer reads the returned function's signature: fn's own parameters, then SharedOptions' fields.
    """
    hints = typing.get_type_hints(fn, include_extras=True)
    own = [p.replace(annotation=hints[p.name]) for p in inspect.signature(fn).parameters.values() if p.name != "shared"]
    shared = _shared_parameters()
    clash = {p.name for p in own} & {p.name for p in shared}
    if clash:
        raise TypeError(f"{fn.__name__} redefines shared options: {', '.join(sorted(clash))}")
    own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own]

    @functools.wraps(fn)
    def command(**kwargs):
        values = SharedOptions(**{p.name: kwargs.pop(p.name) for p in shared})
        return fn(**kwargs, shared=values)

    del command.__wrapped__  # Typer must see the combined signature, not fn's
    params = own + shared
    command.__signature__ = inspect.Signature(params, return_annotation=hints.get("return"))
    command.__annotations__ = {p.name: p.annotation for p in params}
    return command


def check_dtype(dtype: str, device) -> None:
    """BadInput for a dtype the workloads do not know."""
    from ..profilers.device import resolve_dtype
    from ..reports.errors import BadInput

    try:
        resolve_dtype(dtype, device)
    except ValueError as e:
        raise BadInput(f"--dtype: {e}") from None
