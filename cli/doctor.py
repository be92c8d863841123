"""`xfbench doctor`: is this machine fit to benchmark, and what is its measurement floor?"""

import typer

from .status import ExitStatus


def doctor(
    device: str = typer.Option("auto", "--device", help="cpu, cuda, cuda:N or auto."),
    threads: int | None = typer.Option(None, "--threads", min=1, help="torch intra-op threads [default: torch's]."),
    seconds: float = typer.Option(
        3.0, "--seconds", min=0.5, max=600.0, help="Length of the run-to-run noise measurement."
    ),
    calibrate: bool = typer.Option(
        True, "--calibrate/--no-calibrate",
        help="Show calibrated peaks: the cached ones, plus float32 on CPU / bfloat16 on CUDA measured if missing.",
    ),
    recalibrate: bool = typer.Option(False, "--recalibrate", help="Measure the peaks again instead of the cache."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> ExitStatus:
    """Timer overhead, run-to-run noise, peaks, NVML, governor, load, threads: verdict OK / NOISY / UNFIT."""
    from ..profilers.device import resolve_device
    from ..profilers.doctor import examine
    from ..profilers.verdict import report
    from .parse import interrupt_says

    if recalibrate and not calibrate:
        from ..reports.errors import BadInput

        raise BadInput("--recalibrate contradicts --no-calibrate: give one")
    with interrupt_says(
        "doctor interrupted while examining the machine: it writes nothing but the calibration cache, so nothing "
        "was lost"
    ):
        facts = examine(
            resolve_device(device), noise_seconds=seconds, threads=threads, calibrate=calibrate,
            recalibrate=recalibrate,
        )
    rep = report(facts)
    if as_json:
        import json  # here, not at start-up: --help stays fast

        typer.echo(json.dumps(rep, indent=2, default=str))
        return ExitStatus.OK
    from ..reports.doctor import doctor_table, verdict_lines
    from ..reports.terminal import print_table
    from .console import make_console

    console = make_console()
    print_table(doctor_table(rep), console)
    for line in verdict_lines(rep):
        console.print(line, markup=False, highlight=False)
    return ExitStatus.OK
