"""Printing never takes a command down and never lets data drive the terminal (issue 12, items 4-6).

Real processes: a bad COLUMNS, an ASCII stdout, rich markup and escape sequences in a results
file or an option, NO_COLOR on a terminal (a pty), a pipe closed after one line, stdout on
/dev/full, SIGINT / SIGTERM outside a sweep, and a results file that cannot grow (EFBIG, the
stand-in for a full disk that needs no root: RLIMIT_FSIZE with SIGXFSZ ignored).
"""

from __future__ import annotations

import errno
import io
import json
import os
import pty
import resource
import select
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import XFBENCH, run_cli

FIXTURE = Path("tests/fixtures/report_attention.jsonl")
TINY = ["attention", "--seq-lens", "64,128", "--impl", "naive", "--max-time", "0.05", "--device", "cpu",
        "--no-calibrate", "--no-history", "--no-html"]
ESC = "\x1b"


def _env(**extra) -> dict:
    return {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", **extra}


def _records(path: Path) -> list[dict]:
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [o for o in lines if o.get("kind") == "record"]


def hostile_copy(folder: Path, label_prefix: str = "", variant: str | None = None) -> Path:
    """The attention fixture with each record's label prefixed (and the naive variant renamed)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for line in FIXTURE.read_text().splitlines():
        obj = json.loads(line)
        if obj.get("kind") == "record":
            obj["label"] = label_prefix + obj["label"]
            if variant is not None and obj["variant"] == "naive":
                obj["variant"] = variant
        out.append(json.dumps(obj))
    (folder / "results.jsonl").write_text("\n".join(out) + "\n")
    return folder


def run_in_pty(args: list[str], env: dict, timeout: float = 120) -> tuple[int, bytes]:
    """Run xfbench with stdin/stdout/stderr on a pseudo-terminal (200x50); its exit code and every byte written."""
    import fcntl
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
    proc = subprocess.Popen([XFBENCH, *args], stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed its side
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(master)
    return proc.wait(timeout=30), out


# --- 1. COLUMNS --------------------------------------------------------------------------------------


@pytest.mark.parametrize("columns", ["abc", "", "0", "-5", "99999999999"])
def test_an_unusable_columns_is_ignored(tmp_path, columns):
    """Today `abc`/empty raise ValueError and `0`/`-5` print nothing at all: the width falls back."""
    run = hostile_copy(tmp_path / "run")
    res = run_cli("report", str(run), "--markdown", str(tmp_path / "r.md"), env={"COLUMNS": columns})
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    assert f"markdown: {tmp_path / 'r.md'} (" in res.stdout


def test_tables_print_at_the_default_width_when_columns_is_zero(tmp_path):
    run = hostile_copy(tmp_path / "run")
    res = run_cli("report", str(run), env={"COLUMNS": "0"})
    assert res.returncode == 0, res.stderr
    assert "median time/call ±95% CI" in res.stdout  # the results table is there
    assert max(len(line) for line in res.stdout.splitlines()) <= 160  # cli.console.PLAIN_WIDTH


# --- 2. a stdout that cannot encode the report's characters -----------------------------------------


def test_an_ascii_stdout_degrades_and_the_sweep_runs_to_the_end(tmp_path):
    """Today the sweep dies after its first case (UnicodeEncodeError on `·`)."""
    out = tmp_path / "run"
    res = run_cli(*TINY, "--out", str(out), env={"PYTHONIOENCODING": "ascii"})
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    assert "[1/2]" in res.stdout and "[2/2]" in res.stdout
    assert "attention fwd - float32 - full" in res.stdout  # `·` spelled in ASCII
    assert "+/-95% CI" in res.stdout  # `±` too
    assert f"results: {out / 'results.jsonl'}" in res.stdout
    assert len(_records(out / "results.jsonl")) == 2


# --- 3. rich markup in data ---------------------------------------------------------------------------


def test_markup_in_a_results_file_prints_as_literal_text(tmp_path):
    """Today `[/bold]` raises MarkupError and `[link=...]` becomes a hidden hyperlink."""
    run = hostile_copy(tmp_path / "run", label_prefix="[/bold]sdpa [bold]x ", variant="[link=https://x]v[/link]")
    res = run_cli("report", str(run))
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr and "MarkupError" not in res.stderr
    assert "[/bold]sdpa [bold]x attention fwd" in res.stdout
    assert "[link=https://x]v[/link]" in res.stdout


def test_the_live_progress_bar_prints_a_case_name_with_markup_literally():
    """The bar's description was rich markup (`[bold]{task.description}`): in a case name `[/bold]`
    vanished (or raised MarkupError), `[link=...]` became a hidden hyperlink, `\\x1b[2J` went out raw."""
    from types import SimpleNamespace

    from rich.console import Console

    from xfbench.cli.console import SweepProgress

    buf = io.StringIO()  # a plain rich Console: SweepProgress itself must print data as text
    console = Console(file=buf, width=120, force_terminal=True, force_interactive=True, color_system="standard")
    case = SimpleNamespace(name="[/bold]sdpa [link=https://x]v[/link] \x1b[2J")
    with SweepProgress(console) as progress:
        progress.start(case, 0, 1)
        progress._bar.refresh()
        progress.finish(SimpleNamespace(status="error", reason="[/red]boom\x1b]0;t\x07", time=None))
    out = buf.getvalue()
    assert "[/bold]sdpa [link=https://x]v[/link] \\x1b[2J" in out
    assert "]8;" not in out  # no hyperlink escape (OSC 8)
    assert "\x1b[2J" not in out and "\x1b]0;" not in out
    assert "error ([/red]boom\\x1b]0;t\\x07)" in out


# --- 4. control characters from data and options ------------------------------------------------------


def test_escape_sequences_in_a_results_file_never_reach_the_terminal(tmp_path):
    run = hostile_copy(tmp_path / "run", label_prefix="\x1b]0;evil\x07\x1b[2J", variant="v\x1b[31m\x9b1m")
    res = run_cli("report", str(run))
    assert res.returncode == 0, res.stderr
    assert ESC not in res.stdout and "\x07" not in res.stdout and "\x9b" not in res.stdout
    assert ESC not in res.stderr  # matplotlib's warnings about the label's glyphs too
    assert "\\x1b]0;evil\\x07\\x1b[2Jattention fwd" in res.stdout  # shown, escaped


def test_escape_sequences_never_reach_the_terminal_through_compare(tmp_path):
    """compare prints through the same console: nothing to remember in the command (the print boundary)."""
    run = hostile_copy(tmp_path / "run", label_prefix="\x1b]0;evil\x07\x1b[2J", variant="v\x1b[31m")
    res = run_cli("compare", str(run), str(run))
    assert res.returncode == 0, res.stderr
    assert ESC not in res.stdout + res.stderr
    assert "\\x1b]0;evil\\x07\\x1b[2Jattention fwd" in res.stdout


def test_an_escape_sequence_in_an_out_path_is_printed_escaped(tmp_path):
    out = tmp_path / "x\x1b[2J\x1b]0;evil\x07"
    one = [a if a != "64,128" else "64" for a in TINY]
    res = run_cli(*one, "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert ESC not in res.stdout + res.stderr
    assert "x\\x1b[2J\\x1b]0;evil\\x07/results.jsonl" in res.stdout
    assert len(_records(out / "results.jsonl")) == 1


def test_an_error_line_quoting_a_path_is_escaped(tmp_path):
    res = run_cli("report", str(tmp_path / "nope\x1b[2J"))
    assert res.returncode == 2
    assert ESC not in res.stderr and "nope\\x1b[2J" in res.stderr and "Traceback" not in res.stderr


# --- 5. NO_COLOR on a terminal ------------------------------------------------------------------------


def test_no_color_on_a_terminal_is_plain_text(tmp_path):
    """Today ~100 escape sequences (the live bar, cursor control, bold) go out despite NO_COLOR."""
    env = _env()
    env.pop("COLUMNS")
    rc, out = run_in_pty([*TINY, "--out", str(tmp_path / "run")], env)
    assert rc == 0, out.decode(errors="replace")
    assert b"\x1b" not in out
    assert b"[1/2] attention fwd" in out and b"[2/2] attention fwd" in out  # one plain line per case
    rc, out = run_in_pty(["report", str(tmp_path / "run")], env)
    assert rc == 0, out.decode(errors="replace")
    assert b"\x1b" not in out and b"median time/call" in out


def test_colour_on_a_terminal_without_no_color_is_kept(tmp_path):
    env = _env()
    env.pop("NO_COLOR")
    rc, out = run_in_pty(["report", str(hostile_copy(tmp_path / "run"))], env)
    assert rc == 0, out.decode(errors="replace")
    assert b"\x1b[1m" in out  # bold titles: colour is only off when asked


# --- 6. a stdout that goes away -----------------------------------------------------------------------


def test_a_pipe_closed_after_one_line_does_not_stop_the_sweep(tmp_path):
    """`| head -1`: today the sweep stops before its first case with no message."""
    out = tmp_path / "run"
    proc = subprocess.Popen([XFBENCH, *TINY, "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=_env())
    first = proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    rc = proc.wait(timeout=120)
    assert first.startswith(b"xfbench attention: 2 cases to run")
    assert rc == 0, err
    assert "Traceback" not in err and "Exception ignored" not in err and "BrokenPipe" not in err
    assert "xfbench: stdout stopped taking output (EPIPE" in err and "ran to the end (exit code 0)" in err
    assert len(err.strip().splitlines()) == 1, err
    assert len(_records(out / "results.jsonl")) == 2


def test_stdout_on_a_full_device_does_not_stop_the_sweep(tmp_path):
    if not Path("/dev/full").is_char_device():
        pytest.skip("no /dev/full")
    out = tmp_path / "run"
    with open("/dev/full", "w") as full:
        res = subprocess.run([XFBENCH, *TINY, "--out", str(out)], stdout=full, stderr=subprocess.PIPE, text=True,
                             env=_env(), timeout=120)
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr and "Exception ignored" not in res.stderr
    assert "stdout stopped taking output (ENOSPC" in res.stderr
    assert len(_records(out / "results.jsonl")) == 2


# --- 7. SIGINT and SIGTERM outside a sweep ------------------------------------------------------------


def _big_results(folder: Path, copies: int = 300) -> Path:
    folder.mkdir()
    lines = FIXTURE.read_text().splitlines()
    with open(folder / "results.jsonl", "w") as fh:
        fh.write(lines[0] + "\n")
        for _ in range(copies):
            fh.write("\n".join(lines[1:]) + "\n")
    return folder


@pytest.mark.parametrize("sig,code,words", [(signal.SIGINT, 130, "interrupted"),
                                            (signal.SIGTERM, 143, "terminated (SIGTERM)")])
def test_a_signal_during_report_is_one_line_naming_what_was_interrupted(tmp_path, sig, code, words):
    """Today Ctrl-C exits 130 with no message and SIGTERM kills without one."""
    run = _big_results(tmp_path / "run")
    proc = subprocess.Popen([XFBENCH, "report", str(run)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=_env())
    time.sleep(0.8)  # past start-up: loading the 25 MB file, rendering or drawing its figures
    assert proc.poll() is None, "the report ended before the signal: make the file bigger"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    err = err.decode()
    assert proc.returncode == code, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"xfbench: {words} while ") and "(xfbench report)" in lines[0], err
    assert "results already written are kept" in lines[0]



def _main_with(tmp_path: Path, setup: str, *argv: str) -> subprocess.CompletedProcess:
    """`xfbench ARGV` through the console script's main(), after the Python `setup` ran in that
    process: it plants a real signal where no timing can aim one (sent by the process to itself)."""
    code = (f"import functools, os, signal, sys, time\n{textwrap.dedent(setup)}\n"
            f"from xfbench.cli.main import main\nsys.argv = ['xfbench', *{list(argv)!r}]\nmain()\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=120,
                          cwd=tmp_path)


# Each plants a SIGTERM in the command `suites`: its function is wrapped (functools.wraps keeps the
# options typer reads from it) before main() loads it; BEFORE and AFTER run around the command.
WRAP_SUITES = """
import xfbench.cli.suites as cmd
inner = cmd.suites
@functools.wraps(inner)
def suites(*args, **kwargs):
    BEFORE
    status = inner(*args, **kwargs)
    AFTER
    return status
cmd.suites = suites
"""
# A __del__ that sends this process SIGTERM and sleeps: main's handler raises inside the sleep,
# inside the finalizer, where Python drops the exception.
BOMB = ("class Bomb:\n        def __del__(self):\n"
        "            os.kill(os.getpid(), signal.SIGTERM); time.sleep(5)\n"
        "    Bomb()  # freed at once: its __del__ runs as a finalizer")


def _wrapped(before: str = "pass", after: str = "pass") -> str:
    return WRAP_SUITES.replace("BEFORE", before).replace("AFTER", after)


def test_a_sigterm_while_the_command_line_is_parsed_is_one_line_not_a_silent_143(tmp_path):
    """typer turns a KeyboardInterrupt in the group's make_context (parsing the command line,
    loading the command's module) into a silent exit 130: main saw 143 and printed nothing."""
    setup = """
    from xfbench.cli.main import XfbenchGroup
    parse = XfbenchGroup.parse_args
    def parse_args(self, ctx, args):
        os.kill(os.getpid(), signal.SIGTERM); time.sleep(5)  # the handler raises inside the sleep
        return parse(self, ctx, args)
    XfbenchGroup.parse_args = parse_args
    """
    res = _main_with(tmp_path, setup, "suites")
    assert res.returncode == 143, res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("xfbench: terminated (SIGTERM)"), res.stderr
    assert "results already written are kept" in lines[0]


def test_a_signal_once_the_command_has_ended_is_no_traceback(tmp_path):
    """A SIGTERM during exit (atexit's stop of the figures drawer): the command's outcome stands;
    raised there, Python printed 'Exception ignored in atexit callback' and a traceback."""
    plant = "import atexit; atexit.register(lambda: (os.kill(os.getpid(), signal.SIGTERM), time.sleep(0.5)))"
    res = _main_with(tmp_path, _wrapped(before=plant), "suites")
    assert res.returncode == 0, res.stderr
    assert "quick" in res.stdout and res.stderr == "", res.stderr


def test_a_signal_inside_a_finalizer_still_stops_the_command(tmp_path):
    """A signal whose handler runs inside a finalizer (a __del__ or weakref callback, as an object is
    freed): Python dropped the exception, printed 'Exception ignored in ...' and a traceback, and
    the command went on. Now it is sent again and stops the command: exit 143, one line."""
    res = _main_with(tmp_path, _wrapped(before=BOMB + "\n    time.sleep(5)  # the command's own work"), "suites")
    assert res.returncode == 143, res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("xfbench: terminated (SIGTERM)"), res.stderr
    assert "quick" not in res.stdout  # it stopped before the command's listing


def test_a_signal_dropped_in_a_finalizer_as_the_command_ends_is_one_line(tmp_path):
    """The same as the command ends (the signal sent again is ignored here, as it would land past
    the end): exit 0, and one line says why nothing stopped."""
    res = _main_with(tmp_path, _wrapped(after=BOMB + "\n    signal.signal(signal.SIGTERM, signal.SIG_IGN)"),
                     "suites")
    assert res.returncode == 0, res.stderr
    assert "quick" in res.stdout, res.stdout
    assert res.stderr.splitlines() == [
        "xfbench: SIGTERM came while Python ran a finalizer, where it cannot stop anything, and as the command "
        "ended: it ran to its end, and what it wrote is complete"]


def _interruption(run) -> KeyboardInterrupt:
    try:
        run()
    except KeyboardInterrupt as e:
        return e
    raise AssertionError("no KeyboardInterrupt")


def test_an_interruption_inside_an_import_names_what_was_being_imported(tmp_path, monkeypatch):
    """The activity of the one line: the library being imported (the outermost, not what it imports
    in turn), and an xfbench module's own code at import is "importing xfbench", not what the
    module does later ("rendering the HTML report" was said for an interruption while
    reports.html was imported)."""
    import importlib
    import importlib.abc

    from xfbench.cli.main import activity

    (tmp_path / "xfb_probe_outer").mkdir()
    (tmp_path / "xfb_probe_outer" / "__init__.py").write_text("import xfb_probe_inner\n")
    (tmp_path / "xfb_probe_inner.py").write_text("raise KeyboardInterrupt\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert activity(_interruption(lambda: importlib.import_module("xfb_probe_outer"))) == "importing xfb_probe_outer"

    def html_module():  # module-level code of xfbench.reports.html, as at its import
        exec(compile("raise KeyboardInterrupt", "html.py", "exec"), {"__name__": "xfbench.reports.html"})
    assert activity(_interruption(html_module)) == "importing xfbench"

    class Finder(importlib.abc.MetaPathFinder):  # importlib still looking: no module code runs yet
        def find_spec(self, name, path, target=None):
            if name == "xfb_probe_missing":
                raise KeyboardInterrupt
            return None

    monkeypatch.setattr(sys, "meta_path", [Finder(), *sys.meta_path])

    def importer():
        import xfb_probe_missing  # noqa: F401
    assert activity(_interruption(importer)) == "importing xfb_probe_missing"
    assert activity(_interruption(lambda: (_ for _ in ()).throw(KeyboardInterrupt))) is None


def test_an_interruption_in_any_part_of_the_reports_names_that_part():
    """Building report.html's sections (reports.document) was in no row of ACTIVITIES: the line
    said only "interrupted (xfbench report)" (CI: a SIGTERM 0.8 s into `report`)."""
    from xfbench.cli.main import activity

    def in_module(name: str):
        code = compile("def build():\n    raise KeyboardInterrupt\nbuild()\n", "m.py", "exec")
        return lambda: exec(code, {"__name__": name})

    assert activity(_interruption(in_module("xfbench.reports.document"))) == "building the report's sections and tables"
    assert activity(_interruption(in_module("xfbench.reports.summary"))) == "making the report (reports.summary)"
    assert activity(_interruption(in_module("xfbench.reports.html"))) == "rendering the HTML report"

# --- 8. a results file that cannot be written ---------------------------------------------------------


def test_a_results_file_that_cannot_grow_is_one_line_and_exit_2(tmp_path):
    """EFBIG (RLIMIT_FSIZE): the same path as ENOSPC at write or close, which needs a full disk (root)."""

    def small_files():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (6000, 6000))

    out = tmp_path / "run"
    res = subprocess.run([XFBENCH, *TINY, "--out", str(out)], capture_output=True, text=True, env=_env(),
                         preexec_fn=small_files, timeout=120)
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    assert res.stderr.startswith("xfbench: error: File too large (EFBIG) while writing the results file "
                                 "(xfbench attention)"), res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("err,fragment", [
    (OSError(errno.ENOSPC, "No space left on device"), "No space left on device (ENOSPC)"),
    (OSError(errno.EDQUOT, "Disk quota exceeded"), "Disk quota exceeded (EDQUOT)"),
    (OSError(errno.EROFS, "Read-only file system", "/ro/results.jsonl"), "/ro/results.jsonl: Read-only file system"),
    (OSError(errno.ENAMETOOLONG, "File name too long", "/tmp/" + "a" * 300), "File name too long (ENAMETOOLONG)"),
])
def test_write_failures_map_to_one_line(err, fragment):
    from xfbench.cli.main import os_error_line

    line = os_error_line(err, "attention")
    assert fragment in line and "(xfbench attention)" in line and "\n" not in line


def test_other_os_errors_are_not_hidden():
    from xfbench.cli.main import os_error_line

    assert os_error_line(OSError(errno.EBADF, "Bad file descriptor")) is None


# --- the pieces ---------------------------------------------------------------------------------------


def test_printable_escapes_controls_and_keeps_text():
    from xfbench.reports.sanitize import printable

    assert printable("a\x1b]0;t\x07b\x1b[2J") == "a\\x1b]0;t\\x07b\\x1b[2J"
    assert printable("x\ry\x9b\u202eé·") == "x\\ry\\x9b\\u202eé·"
    assert printable("two\nlines\tok") == "two\nlines\tok"
    assert printable("two\nlines", lines=False) == "two\\nlines"
    assert printable(12) == "12"


def test_safe_console_prints_strings_plainly_whatever_the_caller_passes():
    from rich.text import Text

    from xfbench.reports.terminal import SafeConsole

    buf = io.StringIO()
    c = SafeConsole(file=buf, width=80, force_terminal=True, color_system="standard", highlight=False)
    c.print("[/bold]x [link=https://e]y[/link] :smile:", markup=True, emoji=True)
    c.print(Text("t\x1b[2J", style="bold"))
    out = buf.getvalue()
    assert "[/bold]x [link=https://e]y[/link] :smile:" in out
    assert "t\\x1b[2J" in out and "\x1b[2J" not in out
    assert "\x1b[1m" in out  # rich's own styling escapes are untouched


def test_encodable_spells_what_the_encoding_lacks():
    from xfbench.reports.sanitize import encodable

    assert encodable("1 ms ±2% · N=8 — ok ▁", "ascii") == "1 ms +/-2% - N=8 - ok \\u2581"
    assert encodable("1 ms ±2%", "utf-8") == "1 ms ±2%"


def test_report_is_unchanged_for_ordinary_data(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(FIXTURE, run / "results.jsonl")
    res = run_cli("report", str(run), "--markdown", "-")
    assert res.returncode == 0 and res.stdout.startswith("#")
