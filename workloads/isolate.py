"""Per-case isolation (--isolate) and the signals that stop a sweep.

With --isolate each case, and the sweep's calibration, runs in a fresh child process:
`python -P -m xfbench.workloads.isolate REQUEST REPLY READY_FD PARENT_PID`. The child sets its
own threads, allocator policy and memory cap, opens its own NVML telemetry, prepares and
measures the case, and writes the serializable Measurement (JSON) to REPLY; the parent,
which alone builds Records and writes files, never holds a CUDA context. A child that dies
by a signal (segfault, abort, a kill from outside), exits without a reply or runs past the
case timeout becomes that case's `error` record (a SIGKILL with its memory near the cap or
what was available, or with the cgroup's OOM-kill count risen, is `oom`), and the sweep goes on.

Why a subprocess and not multiprocessing's spawn context: the child gets a process group
of its own (a terminal's Ctrl-C reaches only the parent, which decides: finish the case or
kill the group, grandchildren included), its stdout and stderr go to a file whose last lines
name what killed it, and the parent waits on it with a pidfd and wait4, which gives the
exit status without a race and the child's peak RSS (getrusage) for the OOM rule. Both
start a fresh interpreter and import torch, which is the cost of isolation (~2 s per case
on a 2-core CPU machine); interpreter start-up is not counted against the case timeout.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHILD_MODULE = "xfbench.workloads.isolate"
# --case-timeout when --isolate is on and no timeout is given: far beyond any case the timer's
# caps allow (--max-time bounds the timed phase, default 5 s; warm-up, the memory pass and a
# profile add seconds to minutes on a large model), yet a hang costs a sweep at most 30 minutes.
DEFAULT_CASE_TIMEOUT_S = 1800.0
# A child that has not started its case this long after it was spawned (interpreter start-up and
# `import torch`, ~2 s here; not counted against the case timeout) is killed as hung.
STARTUP_TIMEOUT_S = 300.0
# A SIGKILLed child is out of memory when its RSS grew beyond its start to this fraction of
# --mem-limit, or its peak RSS reached this fraction of the memory available when it started.
OOM_NEAR = 0.8
# How much of a dead child's stderr its record keeps.
STDERR_TAIL_LINES = 3
STDERR_TAIL_CHARS = 400

SIGNAL_HINTS = {
    "SIGSEGV": "a segmentation fault in native code",
    "SIGBUS": "a bus error in native code",
    "SIGILL": "an illegal instruction",
    "SIGFPE": "a floating-point exception in native code",
    "SIGABRT": "aborted: abort() or a failed assertion in native code",
    "SIGKILL": "killed from outside: kill -9, a supervisor, or the OOM killer",
    "SIGTERM": "terminated from outside",
}


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


# --- stopping a sweep: SIGINT and SIGTERM ------------------------------------------------------


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped a sweep (a KeyboardInterrupt: whatever lets Ctrl-C through lets it
    through). `at_once`: it stopped mid-way (a second signal, or one outside a case)."""

    def __init__(self, signum: int, at_once: bool = False):
        super().__init__(f"interrupted ({signal_name(signum)})")
        self.signum = signum
        self.at_once = at_once

    @property
    def signame(self) -> str:
        return signal_name(self.signum)

    @property
    def exit_code(self) -> int:
        """128 + the signal, as a shell reports a process the signal ended: 130 SIGINT, 143 SIGTERM."""
        return 128 + self.signum


class StopSignals:
    """SIGINT and SIGTERM while a sweep runs (a context manager; only the main thread can catch signals).

    While a case runs (inside `case()`), the first signal asks the sweep to stop after it: the case
    ends, its record is written, and the runner raises Interrupted before the next one (`check`).
    At any other moment (calibration, between cases), and on a second signal, Interrupted is raised
    at once, where the main thread is: an isolated case's child is then killed with its process
    group, and an in-process case stops at its next Python bytecode (as Ctrl-C always did).

    Args:
        on_request: called with the signal when it asks to stop after the current case (to say so).
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, on_request: Callable[[int], None] | None = None):
        self.on_request = on_request
        self.signum: int | None = None  # the first signal received
        self._busy = False
        self._old: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            self._old = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)
        self._old = {}

    def _handle(self, signum: int, frame) -> None:
        first = self.signum is None
        if first:
            self.signum = signum
        if first and self._busy:
            if self.on_request is not None:
                self.on_request(signum)
            return
        raise Interrupted(signum, at_once=True)

    @contextlib.contextmanager
    def case(self) -> Iterator[None]:
        """Around one case and the writing of its record: a first signal waits for both."""
        self._busy = True
        try:
            yield
        finally:
            self._busy = False

    def check(self) -> None:
        """Interrupted if a signal asked the sweep to stop (the runner calls it between cases)."""
        if self.signum is not None:
            raise Interrupted(self.signum)


class NoStop:
    """StopSignals' interface when nothing catches signals (a library caller's run_cases)."""

    signum = None

    @contextlib.contextmanager
    def case(self) -> Iterator[None]:
        yield

    def check(self) -> None:
        pass


# --- the parent side --------------------------------------------------------------------------


@dataclass
class ChildExit:
    """How one child ended.

    Args:
        reply: what it returned (None: it died, or ran past its timeout, first).
        reason: why there is no reply: the signal or exit code and its stderr's last lines.
        oom: it was SIGKILLed out of memory (see killed_out_of_memory).
        peak_rss_bytes: its peak resident set (getrusage of the reaped child).
        seconds: from spawn to exit.
        startup_s: from spawn to its ready line (interpreter and imports), None if it never got there.
    """

    reply: dict | None
    reason: str | None = None
    oom: bool = False
    peak_rss_bytes: int | None = None
    seconds: float = 0.0
    startup_s: float | None = None


def run_child(
    request: dict, *, name: str, timeout_s: float | None, startup_timeout_s: float = STARTUP_TIMEOUT_S,
    limit_bytes: int | None = None,
) -> ChildExit:
    """Run `request` (pickled) in a fresh `python -m xfbench.workloads.isolate` and wait for it.

    The timeout counts from the child's ready line (its imports done, its case about to start);
    before that, startup_timeout_s bounds it. Whatever ends the wait (a reply, a death, the timeout,
    an Interrupted raised by a signal handler), the child's whole process group is killed and reaped
    before this returns or re-raises: no child survives its case.
    """
    work = Path(tempfile.mkdtemp(prefix=f"xfbench-{_slug(name)}-"))
    req_path, reply_path, err_path = work / "request.pkl", work / "reply.json", work / "stderr.txt"
    try:
        req_path.write_bytes(pickle.dumps(request))
        ready_r, ready_w = os.pipe()
        cmd = [sys.executable, "-P", "-m", CHILD_MODULE, str(req_path), str(reply_path), str(ready_w), str(os.getpid())]
        available, kills = _available_bytes(), cgroup_oom_kills()
        t0 = time.monotonic()
        try:
            with open(err_path, "wb") as err:
                proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=err, stderr=err, pass_fds=(ready_w,),
                                        process_group=0)
        finally:
            os.close(ready_w)
        ready, timed_out = None, False
        try:
            ready, timed_out, ready_at = _wait(proc.pid, ready_r, t0, timeout_s, startup_timeout_s)
        finally:
            os.close(ready_r)
            rusage = _end(proc)
        seconds = time.monotonic() - t0
        peak = rusage.ru_maxrss * 1024 if rusage is not None else None  # Linux: KiB
        startup = ready_at - t0 if ready_at is not None else None
        reply = _read_reply(reply_path)
        if reply is not None:
            return ChildExit(reply, peak_rss_bytes=peak, seconds=seconds, startup_s=startup)
        tail = stderr_tail(err_path.read_text(encoding="utf-8", errors="replace"))
        said = f"; stderr: {tail}" if tail else ""
        if timed_out:
            what = f"{timeout_s:g} s (--case-timeout)" if ready is not None else (
                f"{startup_timeout_s:g} s of start-up (the interpreter and imports never finished)")
            return ChildExit(None, f"no result after {what}; its process group was killed{said}", peak_rss_bytes=peak,
                             seconds=seconds, startup_s=startup)
        rc = proc.returncode
        if rc is not None and rc < 0:
            sig = signal_name(-rc)
            oom = None
            if sig == "SIGKILL":
                baseline = ready.get("rss_bytes") if ready else None
                oom = killed_out_of_memory(peak, baseline, limit_bytes, available, _delta(kills, cgroup_oom_kills()))
            if oom is not None:
                return ChildExit(None, f"killed by SIGKILL: out of memory ({oom}){said}", oom=True,
                                 peak_rss_bytes=peak, seconds=seconds, startup_s=startup)
            hint = f" ({SIGNAL_HINTS[sig]})" if sig in SIGNAL_HINTS else ""
            if sig == "SIGKILL" and peak is not None:
                hint = f" ({SIGNAL_HINTS[sig]}; {_memory_said(peak, available)}: not out of memory)"
            return ChildExit(None, f"child killed by {sig}{hint}{said}", peak_rss_bytes=peak, seconds=seconds,
                             startup_s=startup)
        return ChildExit(None, f"child exited with code {rc} without a result{said}", peak_rss_bytes=peak,
                         seconds=seconds, startup_s=startup)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=]+", "-", name).strip("-")[:60] or "case"


def _wait(pid: int, ready_r: int, t0: float, timeout_s: float | None,
          startup_timeout_s: float) -> tuple[dict | None, bool, float | None]:
    """Wait for the child to exit (not reaping it) or time out; returns (its ready line, timed out,
    when it was ready). A signal handler that raises (a second Ctrl-C) ends the wait at once."""
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):  # no pidfd (old kernel): poll
        pidfd = None
    ready, ready_at, buf, reading = None, None, b"", True
    try:
        while not _exited(pid):
            now = time.monotonic()
            if ready_at is None:
                deadline = t0 + startup_timeout_s
            else:
                deadline = ready_at + timeout_s if timeout_s is not None else None
            if deadline is not None and now >= deadline:
                return ready, True, ready_at
            wait = 1.0 if deadline is None else min(1.0, deadline - now)
            fds = [fd for fd, on in ((pidfd, pidfd is not None), (ready_r, reading)) if on]
            if pidfd is None:  # nothing says when it exits: look again soon
                wait = min(wait, 0.05)
            if not fds:
                time.sleep(wait)
                continue
            readable, _, _ = select.select(fds, [], [], wait)
            if reading and ready_r in readable:
                chunk = os.read(ready_r, 4096)
                reading = bool(chunk)
                buf += chunk
                if ready is None and b"\n" in buf:
                    ready_at = time.monotonic()
                    line = buf.split(b"\n", 1)[0]
                    try:
                        ready = json.loads(line)
                    except ValueError:
                        ready = {}
        return ready, False, ready_at
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _exited(pid: int) -> bool:
    """Has the child exited? (WNOWAIT: it stays a zombie, so its process group cannot be reused
    before _end kills what is left of it.)"""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _end(proc: subprocess.Popen):
    """Kill the child's process group (the child, if it still runs, and anything it started), reap the
    child; its rusage (None if it was reaped elsewhere)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    while True:
        try:
            _, status, rusage = os.wait4(proc.pid, 0)
        except ChildProcessError:
            return None
        except InterruptedError:
            continue
        proc.returncode = os.waitstatus_to_exitcode(status)
        return rusage


def _read_reply(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def stderr_tail(text: str, lines: int = STDERR_TAIL_LINES, chars: int = STDERR_TAIL_CHARS) -> str:
    """Pure: what a dead child's stderr says, on one line. A faulthandler dump ('Fatal Python error:
    Segmentation fault', then the stack, innermost frame first) gives its first line and two innermost
    frames; anything else, its last `lines` non-blank lines."""
    rows = [r.strip() for r in text.splitlines() if r.strip()]
    fatal = next((i for i, r in enumerate(rows) if r.startswith("Fatal Python error")), None)
    if fatal is not None:
        frames = [r for r in rows[fatal + 1:] if r.startswith("File ")]
        rows = [rows[fatal], *frames[:2]]
    else:
        rows = rows[-lines:]
    out = " | ".join(rows)
    return out if len(out) <= chars else "..." + out[-chars:]


def killed_out_of_memory(
    peak_rss: int | None, baseline_rss: int | None, limit_bytes: int | None, available_bytes: int | None,
    oom_kills: int | None,
) -> str | None:
    """Pure: why a SIGKILLed child counts as out of memory, or None when nothing says it was.

    Args:
        peak_rss: the child's peak resident set (getrusage, bytes).
        baseline_rss: its resident set when its memory cap was set (its ready line), or None.
        limit_bytes: --mem-limit, or None.
        available_bytes: the memory available (MemAvailable) when it was spawned.
        oom_kills: by how much the cgroup's OOM-kill count rose while it ran (None: not readable).
    """
    from ..reports.units import fmt_bytes

    if oom_kills:
        return "the kernel's OOM killer: the memory cgroup's oom_kill count rose while it ran"
    if peak_rss is None:
        return None
    if limit_bytes and baseline_rss is not None and peak_rss - baseline_rss >= OOM_NEAR * limit_bytes:
        return (f"its RSS grew {fmt_bytes(peak_rss - baseline_rss)} beyond its start (getrusage peak), "
                f"{(peak_rss - baseline_rss) / limit_bytes:.0%} of --mem-limit {fmt_bytes(limit_bytes)}")
    if available_bytes and peak_rss >= OOM_NEAR * available_bytes:
        return (f"its peak RSS {fmt_bytes(peak_rss)} (getrusage) reached {peak_rss / available_bytes:.0%} of the "
                f"{fmt_bytes(available_bytes)} available when it started (MemAvailable)")
    return None


def _memory_said(peak: int, available: int | None) -> str:
    from ..reports.units import fmt_bytes

    of = f", {peak / available:.0%} of the {fmt_bytes(available)} available at its start" if available else ""
    return f"peak RSS {fmt_bytes(peak)} (getrusage){of}"


def _available_bytes() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def cgroup_oom_kills() -> int | None:
    """The kernel's OOM-kill count of this process's memory cgroup (v2 memory.events, v1 memory.oom_control;
    a container sees its own at the mount's root); None where none is readable."""
    root = Path("/sys/fs/cgroup")
    candidates = []
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            hier, ctrls, path = line.split(":", 2)
            if hier == "0" and not ctrls:
                candidates += [root / path.lstrip("/") / "memory.events", root / "memory.events"]
            elif "memory" in ctrls.split(","):
                v1 = root / "memory"
                candidates += [v1 / path.lstrip("/") / "memory.oom_control", v1 / "memory.oom_control"]
    except (OSError, ValueError):
        return None
    for c in candidates:
        try:
            for line in c.read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except (OSError, ValueError):
            continue
    return None


def _delta(before: int | None, after: int | None) -> int | None:
    return after - before if before is not None and after is not None else None


# --- the child side ---------------------------------------------------------------------------


def _die_with_parent(parent: int) -> None:
    """Ask Linux to SIGKILL this child when its parent dies (prctl PR_SET_PDEATHSIG): a parent killed
    with SIGKILL cannot kill its children itself, and they run in a process group of their own."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it died before the prctl
        os._exit(1)


def _start_thread_pool() -> None:
    """Start torch's intra-op (OpenMP) threads before a memory cap: RLIMIT_AS counts their stacks, and
    a pool started under a small cap fails to create them (libgomp: Thread creation failed)."""
    import torch

    torch.ones(1 << 17).add_(1.0)  # above at::internal::GRAIN_SIZE: a parallel region
    a = torch.ones(64, 64)
    a @ a


def _case_child(request: dict, ready: Callable[[dict], None]) -> dict:
    """One case: threads, allocator, telemetry and memory cap set here, then runner.measure_here."""
    from dataclasses import replace

    import torch

    from ..profilers.cpu import fix_malloc_policy
    from ..profilers.device import resolve_device, use_device
    from ..profilers.memory import memory_cap
    from ..profilers.telemetry import open_telemetry
    from .runner import measure_here

    case = request["case"]
    torch.set_num_threads(request["threads"])
    device = resolve_device(case.device)
    use_device(device)
    allocator = fix_malloc_policy() if device.type == "cpu" else None
    if device.type == "cpu" and request["mem_limit_bytes"]:  # only then: a started pool changes small cases' times
        _start_thread_pool()
    telemetry = open_telemetry(device, request["telemetry"])
    try:
        mopts = replace(request["mopts"], telemetry=telemetry)
        with memory_cap(device, request["mem_limit_bytes"]) as cap:
            ready({"rss_bytes": _rss_bytes()})
            out = measure_here(case, device, mopts)
    finally:
        telemetry.close()
    m = out.measurement
    return {
        "status": out.status, "reason": out.reason, "oom": out.oom, "profile": out.profile,
        "measurement": m.model_dump(mode="json") if m is not None else None,
        "info": {"cpu_malloc": allocator, "mem_limit": cap},
    }


def _setup_child(request: dict, ready: Callable[[dict], None]) -> dict:
    """What a sweep sets up once and needs the device for: the idle baseline, the peaks, the environment."""
    from dataclasses import asdict

    import torch

    from ..profilers.cpu import fix_malloc_policy
    from ..profilers.device import resolve_device, use_device
    from ..profilers.env import collect_environment
    from ..profilers.telemetry import open_telemetry
    from .runner import _calibrate

    opts = request["opts"]
    torch.set_num_threads(request["threads"])
    device = resolve_device(request["device"])
    use_device(device)
    if device.type == "cpu":
        fix_malloc_policy()
    ready({})
    notes: list[str] = []
    out: dict[str, Any] = {"idle_power_w": None, "idle_method": None, "peaks": None}
    telemetry = open_telemetry(device, opts.telemetry and not opts.fake_clock)
    try:
        if request["idle_baseline"]:  # before calibrating: its GEMMs heat the device
            out["idle_power_w"], out["idle_method"] = telemetry.idle_power()
        out["mig"] = telemetry.mig
    finally:
        telemetry.close()
    if request["calibrate"]:
        peaks = _calibrate(device, request["cases"], opts, _Notes(notes))
        out["peaks"] = asdict(peaks)
    out["notes"] = notes
    out["environment"] = collect_environment()
    return out


class _Notes:
    """A runner Progress that keeps the notes (the parent prints them)."""

    def __init__(self, notes: list[str]):
        self.notes = notes

    def note(self, text: str) -> None:
        self.notes.append(text)


def peaks_from(d: dict):
    """roofline.Peaks from the setup child's JSON (dataclasses.asdict of it)."""
    from ..profilers.roofline import Peaks
    from ..profilers.specs import SpecPeaks

    return Peaks(**{**d, "spec": SpecPeaks(**d["spec"]) if d.get("spec") else None})


def _rss_bytes() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


CHILD_KINDS = {"case": _case_child, "setup": _setup_child}


def main(argv: list[str] | None = None) -> None:
    """The child: read the request, run it, write the reply (JSON) atomically, exit."""
    import faulthandler

    req_path, reply_path, ready_fd, parent = (argv if argv is not None else sys.argv[1:])[:4]
    _die_with_parent(int(parent))
    faulthandler.enable()  # a segfault or abort names its Python frame on stderr, which the parent keeps
    fd = int(ready_fd)

    def ready(info: dict) -> None:
        os.write(fd, (json.dumps(info) + "\n").encode())

    request = pickle.loads(Path(req_path).read_bytes())
    reply = CHILD_KINDS[request["kind"]](request, ready)
    tmp = Path(reply_path).with_suffix(".tmp")
    tmp.write_text(json.dumps(reply, allow_nan=True), encoding="utf-8")
    os.replace(tmp, reply_path)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # skip interpreter teardown: the reply is written, and teardown can hang in a driver


if __name__ == "__main__":
    main()
