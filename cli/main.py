"""The Typer app: wires commands together and maps every outcome to one exit code.

Only typer/click (and the stdlib) are imported here. A command's module is imported (and its
options built) only when that command runs or shows its help, and each command imports torch
lazily inside its body, so `xfbench --help` and `--version` start fast.

Every way a command can end is one line at most on stderr and one exit code:
- bad input (BadInput, a usage error): `xfbench: error: ...`, exit 2;
- a file that cannot be written or named (OSError ENOSPC, EDQUOT, EFBIG, EROFS, ENAMETOOLONG,
  EACCES reaching the top): `xfbench: error: ...` naming the file or what was being done, exit 2;
  what was written before stays (the results store syncs each line);
- Ctrl-C (SIGINT) or SIGTERM outside a sweep's own handling: `xfbench: interrupted ...` naming
  what was interrupted when known (the message a command gave its KeyboardInterrupt, else what
  the traceback shows: calibration, loading FILE, ...), exit 130 / 143 (main() turns the first
  SIGTERM into a KeyboardInterrupt, Terminated, that the same path handles; a second one kills);
- a stdout that goes away (`| head -1`, `> /dev/full`): nothing stops; cli/output drops the rest
  of the output and main says so in one line on stderr at the end, with the command's own code.
"""

from __future__ import annotations

import errno
import importlib
import linecache
import re
import signal
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


def _say(line: str) -> None:
    """One line on stderr, its control characters made visible (it may quote data or options)."""
    from ..reports.sanitize import printable

    typer.echo(printable(line, lines=False), err=True)


def _fail(message: str, status: ExitStatus) -> None:
    _say(f"xfbench: error: {message}")
    sys.exit(int(status))


class Terminated(KeyboardInterrupt):
    """The first SIGTERM (a CI runner's cancel, `kill`), raised where the main thread is: whatever
    keeps what was measured on Ctrl-C keeps it on SIGTERM too; the exit code is 143."""

    signum = signal.SIGTERM
    exit_code = int(ExitStatus.TERMINATED)


_signals_seen: list[int] = []  # the signals main's own handler turned into an exception


def _on_sigterm(signum, frame) -> None:
    _signals_seen.append(signum)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
    raise Terminated()


_swallowed: list[BaseException] = []  # interruptions Python dropped: raised inside a finalizer


def _quiet_unraisable(hook):
    """sys.unraisablehook: an interruption raised inside a finalizer (a __del__ or a weakref
    callback, run as an object was freed when the signal came) is dropped by Python, which prints
    'Exception ignored in ...' and a traceback, and nothing stops. Here it is sent again 10 ms
    later, from a thread, so that it lands in the command's own code and stops it as it would
    have; one that lands only after the command ended is said in one line at the end (main)."""

    def unraisable(u) -> None:
        if not isinstance(u.exc_value, KeyboardInterrupt):
            hook(u)
            return
        import os
        import threading

        _swallowed.append(u.exc_value)
        signum = signal.SIGTERM if isinstance(u.exc_value, Terminated) else signal.SIGINT
        if signum == signal.SIGTERM and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _on_sigterm)  # the first SIGTERM did not land: the resent one is it
        # not a daemon: the interpreter waits for it at exit, while main's handlers still take the signal
        threading.Timer(0.01, os.kill, (os.getpid(), signum)).start()

    return unraisable


def _on_signal_at_exit(signum, frame) -> None:
    """SIGINT or SIGTERM once the command has ended: its outcome is decided and written, and the
    exit left (flushing output, atexit's stop of the figures drawer: under a second) goes on. An
    exception raised there would print 'Exception ignored in atexit callback' and a traceback.
    A second one ends the process at once (an exit stuck writing to a pipe nobody reads)."""
    _signals_seen.append(signum)
    signal.signal(signum, signal.SIG_DFL)


class _Stopped(Exception):
    """Carries a KeyboardInterrupt past typer, which would turn it into a silent exit 130."""

    def __init__(self, interrupt: BaseException):
        super().__init__(str(interrupt))
        self.interrupt = interrupt


# What was being done when an interruption or an error surfaced, from its traceback: the first row
# a frame matches (module, function or None for any; {path} is that frame's local `path`).
ACTIVITIES = (
    ("xfbench.profilers.calibrate", None, "calibrating the device (measuring its peak FLOP/s and bandwidth)"),
    ("xfbench.profilers.calibration_cache", None, "reading or writing the calibration cache"),
    ("xfbench.profilers.doctor", None, "the doctor's measurements"),
    ("xfbench.reports.store", "load_results", "loading {path}"),
    ("xfbench.reports.store", "load_index", "loading {path}"),
    ("xfbench.reports.store", "_write", "writing the results file"),
    ("xfbench.reports.store", "append", "writing the results file"),
    ("xfbench.reports.store", "close", "writing the results file"),
    ("xfbench.reports.store", None, "reading or writing the results file"),
    ("xfbench.reports.history", None, "reading or writing the history database"),
    ("xfbench.reports.figures", None, "drawing the figures"),
    ("xfbench.reports.html", None, "rendering the HTML report"),
    ("xfbench.reports.writer", None, "writing a report"),
    ("xfbench.reports.document", None, "building the report's sections and tables"),
    ("xfbench.reports.terminal", None, "printing the tables"),
    ("xfbench.reports.planner", None, "computing the plan"),
    ("xfbench.workloads.runner", "run_one", "measuring a case"),
)


def activity(exc: BaseException) -> str | None:
    """What the program was doing when `exc` was raised, as far as its traceback tells; None if unknown.

    A module's own code at import (a `<module>` frame) is not what it names: an interruption while
    reports.html is imported is "importing xfbench", not "rendering the HTML report"."""
    frames = []
    tb = exc.__traceback__
    while tb is not None:
        frames.append((tb.tb_frame, tb.tb_lineno))
        tb = tb.tb_next
    running = [f for f, _ in frames if f.f_code.co_name != "<module>"]
    for mod, fn, what in ACTIVITIES:  # in ACTIVITIES' order: the first that any frame matches
        for frame in reversed(running):
            if frame.f_globals.get("__name__", "") != mod or fn not in (None, frame.f_code.co_name):
                continue
            if "{path}" not in what:
                return what
            path = frame.f_locals.get("path")
            if path is not None:
                return what.format(path=path)
    for frame in reversed(running):  # any other part of the reports: named by its module
        name = frame.f_globals.get("__name__", "")
        if name.startswith("xfbench.reports."):
            return f"making the report ({name.removeprefix('xfbench.')})"
    return _importing(frames)


_IMPORT = re.compile(r"(?:from\s+([.\w]+)\s+import\b|import\s+([.\w]+))")


def _importing(frames: list) -> str | None:
    """'importing PKG' when the traceback ends inside an import: PKG the outermost library whose
    module code runs (pydantic, not the typing_extensions it imports in turn; torch; else xfbench
    itself); where none runs yet (importlib finding or reading a file, or its frames removed), the
    import statement of the frame that started it names it (a relative one: xfbench's)."""
    frames = [(f, n) for f, n in frames if f.f_code is not _on_sigterm.__code__]  # the handler raised it
    modules = [f.f_globals.get("__name__", "") for f, _ in frames if f.f_code.co_name == "<module>"]
    tops = [m.split(".")[0] for m in modules if m and m != "__main__"]  # __main__: the console script
    if tops:
        return f"importing {next((t for t in tops if t != 'xfbench'), 'xfbench')}"
    first = next((i for i, (f, _) in enumerate(frames) if f.f_code.co_filename.startswith("<frozen importlib")),
                 len(frames))
    if first == 0:
        return None
    frame, lineno = frames[first - 1]  # the importer: the last frame before importlib's (or the innermost)
    found = _IMPORT.match(linecache.getline(frame.f_code.co_filename, lineno).strip())
    if found is None:
        return None
    name = found.group(1) or found.group(2)
    if name.startswith("."):
        name = frame.f_globals.get("__package__") or frame.f_globals.get("__name__", "")
    return f"importing {name.split('.')[0]}" if name else None


def _command(args) -> str | None:
    for a in (sys.argv[1:] if args is None else list(args)):
        if a in COMMANDS:
            return a
    return None


def interrupt_line(interrupt: BaseException, command: str | None) -> tuple[str, int]:
    """The one line and the exit code for an interruption that reached the top."""
    signum = getattr(interrupt, "signum", None)
    if signum is None and _signals_seen:
        signum = _signals_seen[0]
    code = getattr(interrupt, "exit_code", None) or (128 + signum if signum else int(ExitStatus.INTERRUPTED))
    message = str(interrupt)
    if message and not message.startswith("interrupted (") and not message.startswith("signal "):
        return f"xfbench: {message}", int(code)  # the command said what was interrupted and what it lost
    verb = "terminated (SIGTERM)" if signum == signal.SIGTERM else "interrupted"
    what = activity(interrupt)
    cause = interrupt.__cause__ or interrupt.__context__
    if what is None and cause is not None:
        what = activity(cause)
    where = f" while {what}" if what else ""
    cmd = f" (xfbench {command})" if command else ""
    return f"xfbench: {verb}{where}{cmd}; results already written are kept", int(code)


# OSErrors that say the machine cannot take a file (full, read-only, quota) or its name: one line,
# exit 2, instead of a traceback.
WRITE_ERRNOS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large",
    errno.EROFS: "read-only file system",
    errno.ENAMETOOLONG: "file name too long",
    errno.EACCES: "permission denied",
}


def os_error_line(e: OSError, command: str | None = None) -> str | None:
    """The one line for an OSError of WRITE_ERRNOS that reached the top; None for any other."""
    if e.errno not in WRITE_ERRNOS:
        return None
    reason = f"{e.strerror or WRITE_ERRNOS[e.errno]} ({errno.errorcode[e.errno]})"
    if e.filename is not None:
        subject = f"{e.filename}: {reason}"
    else:
        what = activity(e)
        subject = f"{reason} while {what}" if what else reason
    cmd = f" (xfbench {command})" if command else ""
    return f"{subject}{cmd}; anything written before it stays (the results file is synced line by line)"


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

    def make_context(self, *args, **kwargs):  # typer turns an interruption here into a silent Exit(130)
        try:
            return super().make_context(*args, **kwargs)
        except KeyboardInterrupt as e:
            raise _Stopped(e) from e

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as e:
            raise _Stopped(e) from e

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
        except _Stopped as e:
            line, code = interrupt_line(e.interrupt, _command(args))
            _say(line)
            sys.exit(code)
        except (Abort, KeyboardInterrupt) as e:
            interrupt = e.__context__ if isinstance(e, Abort) and e.__context__ is not None else e
            line, code = interrupt_line(interrupt, _command(args))
            _say(line)
            sys.exit(code)
        except Exit as e:
            sys.exit(e.exit_code)
        except OSError as e:
            line = os_error_line(e, _command(args))
            if line is None:
                raise
            _fail(line, ExitStatus.BAD_INPUT)
        code = int(rv or 0)
        if code == ExitStatus.INTERRUPTED and _signals_seen:  # a sweep that stopped on main's SIGTERM
            code = int(ExitStatus.TERMINATED)
        sys.exit(code)


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


def _printable_warnings() -> None:
    """Python's warnings (a library's UserWarning quoting a label) print with their control characters
    made visible, like everything else xfbench prints."""
    import warnings

    from ..reports.sanitize import printable

    fmt = warnings.formatwarning
    if getattr(fmt, "_xfbench_printable", False):
        return

    def formatwarning(*args, **kwargs) -> str:
        return printable(fmt(*args, **kwargs))

    formatwarning._xfbench_printable = True
    warnings.formatwarning = formatwarning


def main() -> None:
    """The console script: guarded output streams (cli/output), SIGTERM as an interruption, the app."""
    from . import output

    output.guard()
    _printable_warnings()
    sys.unraisablehook = _quiet_unraisable(sys.unraisablehook)
    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _on_sigterm)
    code: object = None
    try:
        app()
    except SystemExit as e:
        code = e.code
        raise
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, _on_signal_at_exit)
        if _swallowed and code not in (int(ExitStatus.INTERRUPTED), int(ExitStatus.TERMINATED)):
            name = "SIGTERM" if isinstance(_swallowed[0], Terminated) else "SIGINT"
            _say(f"xfbench: {name} came while Python ran a finalizer, where it cannot stop anything, and as the "
                 "command ended: it ran to its end, and what it wrote is complete")
        output.flush()
        line = output.lost_output_line(code if isinstance(code, int) else (0 if code is None else None))
        if line is not None:
            _say(line)
            output.flush()
