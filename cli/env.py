"""`xfbench env`: the software and hardware a measurement would run on."""

from __future__ import annotations

import json

import typer

from .status import ExitStatus


def env(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> ExitStatus:
    """Show torch/CUDA/cuDNN versions, devices, CPU, threads, RAM and whether NVML is usable."""
    from ..profilers.env import collect_environment, git_info
    from ..reports.environment import environment_table
    from ..reports.terminal import print_table
    from .console import make_console

    info = collect_environment()
    info["git"] = git_info()
    if as_json:
        typer.echo(json.dumps(info, indent=2, default=str))
    else:
        print_table(environment_table(info), make_console())
    return ExitStatus.OK
