"""`xfbench env`: the software and hardware a measurement would run on, and its measured peaks."""

import typer

from .status import ExitStatus


def env(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    calibrate: bool = typer.Option(
        False, "--calibrate",
        help="Show measured matmul peaks per dtype, read and copy bandwidth: the full calibration (cached per "
        "machine; it also serves every later sweep).",
    ),
    recalibrate: bool = typer.Option(False, "--recalibrate", help="Measure the peaks again instead of the cache."),
    device: str = typer.Option("auto", "--device", help="Device to calibrate: cpu, cuda, cuda:N or auto."),
    threads: int | None = typer.Option(
        None, "--threads", min=1, help="torch intra-op threads to calibrate at [default: torch's]."
    ),
    peak_tflops: float | None = typer.Option(None, "--peak-tflops", help="Your peak in TFLOP/s, shown beside."),
) -> ExitStatus:
    """Show torch/CUDA/cuDNN versions, devices, CPU, threads, RAM, NVML; with --calibrate, measured peaks."""
    from .parse import interrupt_says, parse_peak_tflops

    peak = parse_peak_tflops(peak_tflops)
    report = None
    # A calibration's own interrupt says what it was measuring (profilers.calibrate.load_or_calibrate).
    with interrupt_says("env interrupted: it writes nothing but the calibration cache, so nothing was lost"):
        from ..profilers.device import resolve_device
        from ..profilers.env import collect_environment, provenance

        dev = resolve_device(device)  # a --device that cannot be used is exit 2, with or without --calibrate
        if calibrate or recalibrate:
            from ..profilers.calibrate import calibration_report, load_or_calibrate

            res = load_or_calibrate(dev, threads=threads, recalibrate=recalibrate, level="full")
            report = calibration_report(res, peak)
        info = collect_environment(calibration=report)
        info.update(provenance())
    from ..reports.environment import environment_table
    from ..reports.terminal import print_table
    from .console import make_console

    if as_json:
        import json  # here, not at start-up: --help stays fast

        typer.echo(json.dumps(info, indent=2, default=str))
        return ExitStatus.OK
    console = make_console()
    print_table(environment_table(info), console)
    if report is not None:
        from ..reports.calibration import calibration_table

        print_table(calibration_table(report), console)
    return ExitStatus.OK
