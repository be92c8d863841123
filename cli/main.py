"""The Typer app: wires commands together and maps every outcome to one exit code.

Only typer/click are imported here; each command imports torch lazily inside its body,
so `xfbench --help` and `--version` start fast.
"""

from __future__ import annotations

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
from . import attention, doctor, env, model, plan
from .status import ExitStatus

# Registry: command name -> function. Adding a command is one module plus one line here.
COMMANDS = {
    "attention": attention.attention,
    "doctor": doctor.doctor,
    "env": env.env,
    "model": model.model,
    "plan": plan.plan,
}


def _fail(message: str, status: ExitStatus) -> None:
    typer.echo(f"xfbench: error: {message}", err=True)
    sys.exit(int(status))


class XfbenchGroup(TyperGroup):
    """Runs commands non-standalone so a command's return value is the exit code, and every
    bad input is one line on stderr with exit code 2 instead of a usage box or traceback."""

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


for _name, _fn in COMMANDS.items():
    app.command(_name)(_fn)


def main() -> None:
    app()
