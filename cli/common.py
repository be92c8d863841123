"""Options every sweep command shares (one definition each), and how they become RunOptions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

Device = Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:N or auto.")]
Dtype = Annotated[
    str, typer.Option("--dtype", help="auto (float32 on CPU, bfloat16 on CUDA), float32, bfloat16, float16.")
]
Out = Annotated[
    Path | None, typer.Option("--out", help="Run folder for results.jsonl [default: runs/<UTC time>-<command>].")
]
Resume = Annotated[bool, typer.Option("--resume", help="Skip cases already finished in --out's results file.")]
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
        "counted/analytic.",
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
FakeClock = Annotated[bool, typer.Option("--fake-clock", hidden=True)]


def run_options(
    *, target_ci: float, max_time: float, threads: int | None, memory: bool, mem_limit: str | None,
    count_flops: bool, peak_tflops: float | None, telemetry: bool, idle_baseline: bool, fake_clock: bool,
    calibrate: bool = True, recalibrate: bool = False,
):
    """The shared options as RunOptions (imports torch: call it inside a command body)."""
    from ..profilers.timer import TimerPolicy
    from ..workloads.runner import RunOptions
    from .parse import parse_bytes, parse_peak_tflops

    return RunOptions(
        policy=TimerPolicy(target_ci_rel=target_ci, max_time_s=max_time),
        threads=threads, measure_memory=memory, count_flops=count_flops,
        mem_limit_bytes=parse_bytes(mem_limit, "--mem-limit") if mem_limit else None,
        peak_flops_override=parse_peak_tflops(peak_tflops), telemetry=telemetry, idle_baseline=idle_baseline,
        fake_clock=fake_clock, calibrate=calibrate or recalibrate, recalibrate=recalibrate,
    )


def check_dtype(dtype: str, device) -> None:
    """BadInput for a dtype the workloads do not know."""
    from ..profilers.device import resolve_dtype
    from ..reports.errors import BadInput

    try:
        resolve_dtype(dtype, device)
    except ValueError as e:
        raise BadInput(f"--dtype: {e}") from None
