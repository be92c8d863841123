"""stdout and stderr that never take a command down: a closed pipe or a full disk drops output.

`xfbench attention ... | head -1` closes the pipe after one line (EPIPE); `> /dev/full` or a full
disk fails every write (ENOSPC). Neither is a reason to stop measuring: guard() (cli/main.py
calls it first) replaces sys.stdout and sys.stderr by text streams over the same file
descriptors whose lowest layer, on such an error, points the descriptor at /dev/null and goes
on. Every writer above it (rich, click's echo, print, a library writing to sys.stdout.buffer,
torch's C++ writing to fd 1 after that) then writes into nothing, the command runs to its end
with its own exit code, and lost_output_line() is the one line main prints on stderr about it.
Python's flush at exit goes through the same layer, so it prints no "Exception ignored ...
BrokenPipeError" either.

The streams also encode with errors="xfbench-ascii": on a stdout that cannot encode `·`, `—` or
`±` (PYTHONIOENCODING=ascii, a C locale) they print as `-`, `-`, `+/-` (reports.sanitize.ASCII_FALLBACK), any other
character as a backslash escape (`\\u2581`), instead of raising UnicodeEncodeError.

Stdlib only: it runs before any command is imported.
"""

from __future__ import annotations

import codecs
import errno
import io
import os
import sys
from pathlib import Path

ERRORS = "xfbench-ascii"


def _encode_fallback(err: UnicodeError):
    if not isinstance(err, UnicodeEncodeError):
        raise err
    from ..reports.sanitize import ascii_fallback

    return ascii_fallback(err.object[err.start:err.end]), err.end


codecs.register_error(ERRORS, _encode_fallback)

# Errors that mean "this output goes nowhere any more", not a bug: the reader went away, or the
# device the output is redirected to cannot take more.
LOST = {
    errno.EPIPE: "the reader closed the pipe",
    errno.ECONNRESET: "the reader closed the connection",
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large",
    errno.EIO: "input/output error: the terminal went away",
}

_lost: dict[str, int] = {}  # "stdout"/"stderr" -> errno of the first failed write
_results: list[str] = []  # where a command keeps what it measured (results_at), for the line
_originals: list = []  # the streams replaced: kept alive, never closed


class _GuardedFile(io.FileIO):
    """The raw file under a guarded stream: a write that fails with one of LOST points the fd
    at /dev/null, records why, and reports the bytes as written."""

    def __init__(self, fd: int, stream: str):
        super().__init__(fd, "w", closefd=False)
        self._stream = stream

    def write(self, b) -> int:
        try:
            return super().write(b)
        except OSError as e:
            if e.errno not in LOST:
                raise
            _drop(self.fileno(), self._stream, e.errno)
            return memoryview(b).nbytes


def _drop(fd: int, stream: str, err: int) -> None:
    _lost.setdefault(stream, err)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def guarded_stream(old, name: str):
    """A text stream writing to `old`'s file descriptor through _GuardedFile (same encoding and
    buffering, errors=ERRORS), or `old` itself when it has no descriptor."""
    try:
        fd = old.fileno()
        old.flush()
    except (AttributeError, OSError, ValueError):
        return old
    return io.TextIOWrapper(
        io.BufferedWriter(_GuardedFile(fd, name)),
        encoding=getattr(old, "encoding", None) or "utf-8",
        errors=ERRORS,
        line_buffering=bool(getattr(old, "line_buffering", False)),
        write_through=bool(getattr(old, "write_through", False)),
    )


def guard() -> None:
    """Replace sys.stdout and sys.stderr by guarded streams (idempotent)."""
    for name in ("stdout", "stderr"):
        old = getattr(sys, name)
        if old is None or isinstance(getattr(old, "buffer", None), io.BufferedWriter) and isinstance(
            getattr(old.buffer, "raw", None), _GuardedFile
        ):
            continue
        new = guarded_stream(old, name)
        if new is not old:
            _originals.append(old)
            setattr(sys, name, new)


def flush() -> None:
    """Flush both streams; what cannot be written is dropped (never raises for LOST errors)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass


def lost(stream: str = "stdout") -> str | None:
    """'EPIPE' (say) when writes to `stream` failed and its output has been dropped since; else None."""
    err = _lost.get(stream)
    return None if err is None else errno.errorcode.get(err, str(err))


def results_at(path: str | Path) -> None:
    """Say where this command keeps what it measures (a run folder or results file): named in the
    line about a lost stdout, which the user never saw the `results:` line on."""
    text = str(path)
    if text not in _results:
        _results.append(text)


def lost_output_line(exit_code: int | None) -> str | None:
    """The one line for stderr when stdout's output was dropped; None when nothing was lost."""
    err = _lost.get("stdout")
    if err is None:
        return None
    from ..reports.sanitize import printable

    name = errno.errorcode.get(err, str(err))
    where = f": results in {', '.join(printable(p, lines=False) for p in _results)}" if _results else ""
    code = "" if exit_code is None else f" (exit code {exit_code})"
    return (f"xfbench: stdout stopped taking output ({name}: {LOST[err]}); the rest was dropped and "
            f"the command ran to the end{code}{where}")
