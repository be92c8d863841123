"""`xfbench attention`: sweep sequence lengths over attention implementations."""

from __future__ import annotations

from pathlib import Path

import typer

from .status import ExitStatus

IMPL_CHOICES = ("naive", "sdpa", "flash", "efficient", "cudnn", "math", "lstm")
MODE_CHOICES = ("fwd", "fwdbwd")


def attention(
    seq_lens: str = typer.Option(
        "256:4096:x2", "--seq-lens",
        help="Sequence lengths: list '512,1024', or range '256:8192:x2' / '128:1024:+128'.",
    ),
    impl: str = typer.Option(
        "naive,sdpa,lstm", "--impl", help=f"Implementations, comma-separated: {', '.join(IMPL_CHOICES)}."
    ),
    mode: str = typer.Option("fwd", "--mode", help="fwd, fwdbwd, or both: 'fwd,fwdbwd'."),
    batch: int = typer.Option(1, "--batch", min=1, help="Batch size B."),
    heads: int = typer.Option(8, "--heads", min=1, help="Attention heads H."),
    head_dim: int = typer.Option(64, "--head-dim", min=1, help="Head dimension d (LSTM width is H*d)."),
    dtype: str = typer.Option(
        "auto", "--dtype", help="auto (float32 on CPU, bfloat16 on CUDA), float32, bfloat16, float16."
    ),
    causal: bool = typer.Option(False, "--causal/--full", help="Causal mask (FLOPs halved) or full attention."),
    device: str = typer.Option("auto", "--device", help="cpu, cuda, cuda:N or auto."),
    out: Path | None = typer.Option(
        None, "--out", help="Run folder for results.jsonl [default: runs/<UTC time>-attention]."
    ),
    resume: bool = typer.Option(False, "--resume", help="Skip cases already finished in --out's results file."),
    target_ci: float = typer.Option(
        0.02, "--target-ci", min=0.0001, max=1.0, help="Stop when the 95% CI of the median is within this fraction."
    ),
    max_time: float = typer.Option(5.0, "--max-time", min=0.0, help="Cap in seconds on the timed phase of one case."),
    threads: int | None = typer.Option(None, "--threads", min=1, help="torch intra-op threads [default: torch's]."),
    mem_limit: str | None = typer.Option(
        None, "--mem-limit", help="Cap memory beyond the start, e.g. 2GiB: cases past it become OOM records."
    ),
    memory: bool = typer.Option(True, "--memory/--no-memory", help="Run the separate peak-memory pass."),
    calibrate: bool = typer.Option(
        True, "--calibrate/--no-calibrate",
        help="Measure MFU and roofline against this machine's calibrated peaks (cached per machine).",
    ),
    recalibrate: bool = typer.Option(False, "--recalibrate", help="Measure the peaks again instead of the cache."),
    peak_tflops: float | None = typer.Option(
        None, "--peak-tflops", help="Your peak in TFLOP/s for mfu_spec (replaces the spec sheet; e.g. unknown GPUs)."
    ),
    telemetry: bool = typer.Option(
        True, "--telemetry/--no-telemetry", help="Sample NVML (energy, power, clocks) around each timed window."
    ),
    idle_baseline: bool = typer.Option(
        False, "--idle-baseline", help="Measure idle GPU power once and subtract it from energy."
    ),
    fake_clock: bool = typer.Option(False, "--fake-clock", hidden=True),
) -> ExitStatus:
    """Time and memory of attention across sequence lengths: parallel, yet quadratic."""
    from .parse import parse_bytes, parse_choices, parse_int_sweep, parse_peak_tflops

    lens = parse_int_sweep(seq_lens, "--seq-lens")
    impls = parse_choices(impl, IMPL_CHOICES, "--impl")
    modes = parse_choices(mode, MODE_CHOICES, "--mode")
    cap = parse_bytes(mem_limit, "--mem-limit") if mem_limit else None
    peak = parse_peak_tflops(peak_tflops)

    from ..profilers.device import resolve_device
    from ..profilers.timer import TimerPolicy
    from ..workloads.attention import AttentionConfig, cases, resolve_dtype
    from ..workloads.runner import RunOptions
    from .sweep import run_sweep

    dev = resolve_device(device)
    try:
        resolve_dtype(dtype, dev)
    except ValueError as e:
        from ..reports.errors import BadInput

        raise BadInput(f"--dtype: {e}") from None
    cfg = AttentionConfig(
        seq_lens=lens, impls=impls, modes=modes, batch=batch, heads=heads, head_dim=head_dim,
        dtype=dtype, causal=causal,
    )
    opts = RunOptions(
        policy=TimerPolicy(target_ci_rel=target_ci, max_time_s=max_time),
        threads=threads, measure_memory=memory, mem_limit_bytes=cap, fake_clock=fake_clock,
        peak_flops_override=peak, telemetry=telemetry, idle_baseline=idle_baseline,
    )
    return run_sweep(
        "attention", cases(cfg, dev), out, opts, resume, calibrate=calibrate, recalibrate=recalibrate
    )
