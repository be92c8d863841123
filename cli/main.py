"""The Typer app: wires commands together and maps every outcome to one exit code.

Only typer/click are imported here. A command's module is imported (and its options built)
only when that command runs or shows its help, and each command imports torch lazily inside
its body, so `xfbench --help` and `--version` start fast.
"""

from __future__ import annotations

import importlib
import sys

import typer
from typer.core import TyperGroup

try:  # recent typer vendors click
    from typer.exceptions import Abort, Exit
    from typer.exceptions import TyperException as UsageFailure
except ImportError:  # older typer depends on click (e.g. GPU images that pin an older typer)
    from click.exceptions import Abort, Exit
    from click.exceptions import ClickException as UsageFailure

from .. import __version__
from ..reports.errors import BadInput
from .status import ExitStatus

# Registry: command name -> (its module, holding a function of that name; the one-line help
# `xfbench --help` lists, the function docstring's first line: tests/test_cli.py checks).
# Adding a command is one module plus one line here.
COMMANDS = {
    "attention": (
        "xfbench.cli.attention", "Time and memory of attention across sequence lengths: parallel, yet quadratic."
    ),
    "doctor": (
        "xfbench.cli.doctor",
        "Timer overhead, run-to-run noise, peaks, NVML, governor, load, threads: verdict OK / NOISY / UNFIT.",
    ),
    "env": (
        "xfbench.cli.env",
        "Show torch/CUDA/cuDNN versions, devices, CPU, threads, RAM, NVML; with --calibrate, measured peaks.",
    ),
    "model": ("xfbench.cli.model", "Tokens/s, MFU and memory (measured vs analytic) of a GPT across parameter counts."),
    "parallel": (
        "xfbench.cli.parallel",
        "Data-parallel (DDP, FSDP) versus one device: tokens/s, scaling efficiency, comm, memory per rank.",
    ),
    "plan": ("xfbench.cli.plan", "Compute-optimal training estimate: D = 20·N tokens, 6·N·D FLOPs, device-hours, kWh."),
    "ab": ("xfbench.cli.ab", "Run a suite alternately under two Python environments (A B A B ...) and compare."),
    "compare": (
        "xfbench.cli.compare",
        "Compare two runs case by case: change with CI, Mann-Whitney p, verdict; exit 1 on a regression.",
    ),
    "history": (
        "xfbench.cli.history", "Per-case trends from the history database: runs, noise band, sparkline, change points."
    ),
    "run": ("xfbench.cli.run", "Run a suite (built-in or a TOML file) into one run folder, with one report."),
    "suites": ("xfbench.cli.suites", "List the built-in suites (`xfbench run NAME`); with a name, print its TOML."),
    "report": (
        "xfbench.cli.report",
        "Render a results file as HTML, figures, LaTeX, CSV or Markdown (default: tables + report.html).",
    ),
}


def command_function(name: str):
    """The function behind command `name` (imports its module)."""
    return getattr(importlib.import_module(COMMANDS[name][0]), name)


def _fail(message: str, status: ExitStatus) -> None:
    typer.echo(f"xfbench: error: {message}", err=True)
    sys.exit(int(status))


class XfbenchGroup(TyperGroup):
    """Runs commands non-standalone so a command's return value is the exit code, and every
    bad input is one line on stderr with exit code 2 instead of a usage box or traceback.

    Commands load lazily (click's lazy-group pattern): the group lists COMMANDS' names and
    one-line helps, and builds a command only when it is asked for.
    """

    def list_commands(self, ctx) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx, cmd_name: str):
        if cmd_name not in COMMANDS:
            return None
        if cmd_name not in self.commands:
            one = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)
            one.command(cmd_name)(command_function(cmd_name))
            self.commands[cmd_name] = typer.main.get_command(one)
        return self.commands[cmd_name]

    def format_commands(self, ctx, formatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, short) for name, (_, short) in COMMANDS.items()])

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except UsageFailure as e:  # click's usage errors
            if type(e).__name__ == "NoArgsIsHelpError":
                e.show()
                sys.exit(int(ExitStatus.BAD_INPUT))
            ctx = getattr(e, "ctx", None)
            hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            _fail(f"{e.format_message()}{hint}", ExitStatus.BAD_INPUT)
        except BadInput as e:
            _fail(str(e), ExitStatus.BAD_INPUT)
        except (Abort, KeyboardInterrupt):
            _fail("interrupted", ExitStatus.INTERRUPTED)
        except Exit as e:
            sys.exit(e.exit_code)
        sys.exit(int(rv or 0))


app = typer.Typer(
    cls=XfbenchGroup,
    name="xfbench",
    help="Benchmark and profile transformer workloads: attention, model scale, data parallelism.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"xfbench {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Benchmark and profile transformer workloads: attention, model scale, data parallelism."""


def main() -> None:
    app()
