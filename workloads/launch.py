"""Ranks of a data-parallel job: launched here through torch.distributed's elastic launcher,
or started by an outside torchrun/srun; either way each rank runs the same case code.

Launch (what torchrun does, as a library call): `elastic_launch(LaunchConfig(...), rank_main)`,
with its traps defused: a c10d rendezvous on localhost:0 (the kernel picks a free port;
fixed ports collide), max_restarts=0 (the default 3 silently re-runs a crashing
benchmark), a fresh run_id, bounded rendezvous and shutdown timeouts, workers' output
kept in a log folder instead of the terminal. Each rank sets its torch threads to the
usable cores over the ranks on its host (the launcher, unlike torchrun, sets no
OMP_NUM_THREADS) and records it; gloo binds loopback on one host.

Data comes back as data: every rank's Measurement is gathered on rank 0
(gather_object), rank 0 combines them, and the elastic launcher returns rank 0's value
to the parent, which alone builds Records and writes files.

Failures: a rank that raises or is killed ends the launch (the agent stops the others);
a rank that hangs makes the others' collectives time out after the process-group
timeout, and the rank that timed out names where each rank stopped (progress marks in
the job's store). The parent turns any of these into one line naming the rank. With a case
timeout (--case-timeout, --isolate) a launch still running after it (times its cases) is
ended like a failure: the agent stops its ranks.

Signals: while the agent runs, its own handlers catch SIGINT and SIGTERM and stop every rank
at once (the first signal, not the second as between cases); the sweep then stops with the
records so far (isolate.Interrupted).
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import multiprocessing.spawn
import os
import re
import shlex
import shutil
import signal
import socket
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from ..profilers.collective import RankGroup, lagging_ranks
from ..profilers.contention import usable_cores
from ..profilers.cpu import fix_malloc_policy
from ..profilers.measure import MeasureOptions, measure
from ..profilers.memory import is_oom
from ..profilers.timer import TimerPolicy
from ..profilers.torch_profile import ProfileOptions
from ..reports.schema import Measurement, MemoryStats, Record
from . import get_workload
from .base import Case, SkipCase
from .isolate import Interrupted

# How long a rank waits at the rendezvous for the others (seconds).
RENDEZVOUS_TIMEOUT_S = 60
# After one rank fails, how long the agent waits for the others to exit on SIGTERM before SIGKILL.
SHUTDOWN_TIMEOUT_S = 5
# Default process-group timeout on CPU: a hung rank ends the case after this long.
PG_TIMEOUT_S = 60.0
FAULT_KINDS = ("raise", "kill", "hang", "oom")


@dataclass(frozen=True)
class Fault:
    """A failure injected on purpose (tests, --fault): `kind` on `rank` at its `after`-th step call."""

    rank: int
    kind: str
    after: int = 3


@dataclass
class Job:
    """What every rank of one launch runs.

    Args:
        cases: the cases, in order (all at one world size).
        policy, fake_clock, memory, count_flops: how each is measured (as MeasureOptions).
        pg_timeout_s: process-group timeout: a collective waiting longer fails.
        threads: torch threads per rank (None: usable cores / ranks on this host).
        fault: an injected failure, or None.
        profile: the profiler passes (profilers.torch_profile.ProfileOptions, the run folder
            set), each rank writing its own files; run_id names the run they belong to.
    """

    cases: list[Case]
    policy: TimerPolicy = TimerPolicy()
    fake_clock: bool = False
    memory: bool = True
    count_flops: bool = False
    pg_timeout_s: float = PG_TIMEOUT_S
    threads: int | None = None
    fault: Fault | None = None
    profile: ProfileOptions | None = None
    run_id: str | None = None


class LaunchFailed(Exception):
    """A launched job failed; the message names the rank and its error."""


class RankOutOfMemory(Exception):
    """Raised by a rank whose allocator ran out of memory (profilers.memory.is_oom), so the parent,
    which sees only the rank's message, records the case as `oom` and skips the series' larger sizes."""


def threads_per_rank(local_ranks: int) -> int:
    """Usable cores shared out over the ranks on this host, at least one each."""
    return max(1, usable_cores() // max(1, local_ranks))


def outside_job() -> dict[str, int] | None:
    """RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE when an outside launcher (torchrun, or
    srun exporting them) started this process as one rank; None otherwise."""
    env = os.environ
    if "RANK" not in env or "WORLD_SIZE" not in env:
        return None
    try:
        out = {k.lower(): int(env[k]) for k in ("RANK", "WORLD_SIZE")}
        out["local_rank"] = int(env.get("LOCAL_RANK", out["rank"]))
        out["local_world_size"] = int(env.get("LOCAL_WORLD_SIZE", out["world_size"]))
    except ValueError as e:
        from ..reports.errors import BadInput

        raise BadInput(f"the launcher's environment is not numeric: {e}") from None
    return out


# --- inside a rank ---------------------------------------------------------------------


def rank_device(case_device: str, local_rank: int) -> torch.device:
    """A rank's device: on CUDA one GPU per rank, counted from the requested one (--device cuda:1
    puts local rank 0 on GPU 1, rank 1 on GPU 2, ...)."""
    dev = torch.device(case_device)
    if dev.type == "cuda":
        return torch.device("cuda", (dev.index or 0) + local_rank)
    return torch.device("cpu")


def init_group(backend: str, pg_timeout_s: float, device: torch.device) -> None:
    """The default process group from the launcher's environment (MASTER_ADDR/PORT, RANK, ...)."""
    timeout = timedelta(seconds=pg_timeout_s)
    if backend == "nccl":
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", timeout=timeout, device_id=device)
    else:
        dist.init_process_group("gloo", timeout=timeout)


def _inject(step, fault: Fault | None, rank: int) -> None:
    if fault is None or fault.rank != rank:
        return
    fn, calls = step.fn, [0]

    def faulty(*args):
        calls[0] += 1
        if calls[0] == fault.after:
            if fault.kind == "raise":
                raise RuntimeError(f"injected failure (--fault {fault.rank}:raise)")
            if fault.kind == "oom":
                raise MemoryError(f"injected out-of-memory (--fault {fault.rank}:oom)")
            if fault.kind == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            if fault.kind == "hang":
                time.sleep(3600)
        return fn(*args)

    step.fn = faulty


def _measure_rank(case: Case, job: Job, group: RankGroup, device: torch.device, index: int) -> dict[str, Any]:
    """One case on this rank: its Measurement(s) and what describes the rank."""
    module = get_workload(case.workload)
    where = f"case {index + 1} ({case.variant}, {case.size_name}={case.size})"
    group.mark(f"{where}: preparing")
    built = module.prepare_rank(case, device, group.rank)
    step, nosync, model = (built.step, built.nosync, built.model) if hasattr(built, "step") else (built, None, None)
    _inject(step, job.fault, group.rank)
    profile = None
    if job.profile is not None:
        profile = job.profile.for_case(job.run_id, case.id).for_rank(group.rank, group.size)
    mopts = MeasureOptions(policy=job.policy, fake_clock=job.fake_clock, memory=job.memory,
                           count_flops=job.count_flops, group=group, profile=profile)
    try:
        group.mark(f"{where}: timing")
        m = measure(step, device, mopts)
        extra: dict[str, Any] = {}
        if model is not None and hasattr(module, "ddp_logging"):
            extra = module.ddp_logging(model)
        state = module.state_bytes(model) if model is not None and hasattr(module, "state_bytes") else None
        m_nosync = None
        if nosync is not None:
            group.mark(f"{where}: timing under no_sync")
            m_nosync = measure(nosync, device, MeasureOptions(policy=job.policy, fake_clock=job.fake_clock,
                                                              memory=False, group=group))
    finally:
        step.close()
        if nosync is not None:
            nosync.close()
    return {
        "rank": group.rank, "host": socket.gethostname(), "local_rank": int(os.environ.get("LOCAL_RANK", 0)),
        "device": str(device), "threads": torch.get_num_threads(),
        "measurement": m.model_dump(), "nosync": m_nosync.model_dump() if m_nosync else None, "extra": extra,
        "state_bytes": state,
    }


def run_case_as_rank(case: Case, job: Job, group: RankGroup, device: torch.device, index: int = 0) -> dict | None:
    """Measure `case` on this rank; rank 0 returns the combined payload, the others None."""
    try:
        mine = _measure_rank(case, job, group, device, index)
    except SkipCase as e:  # every rank skips alike (the reason depends on the case, not the rank)
        return {"status": "skipped", "reason": str(e)} if group.rank == 0 else None
    except Exception as e:
        if is_oom(e):
            raise RankOutOfMemory(f"{type(e).__name__}: {_first_line(e)}") from e
        if not isinstance(e, RuntimeError):
            raise
        if "timed out" in str(e).lower() or "timeout" in str(e).lower():
            raise RuntimeError(f"a collective timed out after {job.pg_timeout_s:g} s "
                               f"({_clean(_first_line(e))}); {_progress_text(group.rank)}") from e
        raise
    every = group.gather_object(mine)
    if group.rank != 0:
        return None
    return combine(case, every)


def _clean(text: str) -> str:
    """gloo's messages open with its source path ('[/__w/.../unbound_buffer.cc:78] ...')."""
    return re.sub(r"^\[[^\]]*\]\s*", "", text)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def _progress_text(me: int) -> str:
    marks = lagging_ranks()
    if not marks:
        return "the ranks' progress is not known"
    least = min(c for c, _ in marks.values())
    behind = [r for r, (c, _) in sorted(marks.items()) if c == least]
    head = f"rank {', '.join(map(str, behind))} fell behind; " if len(behind) < len(marks) else ""
    where = "; ".join(f"rank {r}{' (this one)' if r == me else ''}: {t}" for r, (_, t) in sorted(marks.items()))
    return f"{head}last progress: {where}"


def rank_main(job: Job) -> list[dict] | None:
    """The elastic launcher's entrypoint: every rank runs every case of the job in order."""
    from torch.distributed.elastic.multiprocessing.errors import record

    return record(_rank_main)(job)


def _rank_main(job: Job) -> list[dict] | None:
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN and os.environ.get("TORCHELASTIC_RUN_ID", "").startswith(
            "xfbench-"):  # started by launch(): quiet on the SIGINT its agent forwards (torchrun's ranks keep theirs)
        signal.signal(signal.SIGINT, _exit_on_sigint)
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    local_ranks = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    torch.set_num_threads(job.threads or threads_per_rank(local_ranks))
    device = rank_device(job.cases[0].device, local_rank)
    if device.type == "cpu":
        fix_malloc_policy()  # each rank is a fresh process: pin glibc's thresholds as a one-process sweep does
    backend = job.cases[0].params["backend"]
    if backend == "gloo":  # elastic_launch here starts every rank on this host: never a routed interface
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    init_group(backend, job.pg_timeout_s, device)
    try:
        group = RankGroup()
        out = [run_case_as_rank(c, job, group, device, i) for i, c in enumerate(job.cases)]
        group.barrier()
    finally:
        dist.destroy_process_group()
    return out if group.rank == 0 else None


# --- combining the ranks' data ---------------------------------------------------------


def combine(case: Case, every: list[dict]) -> dict:
    """Rank 0's payload for the parent: the case's Measurement (time: max over ranks per window;
    memory: the rank with the highest peak, never a sum) and one entry per rank."""
    first = Measurement.model_validate(every[0]["measurement"])
    ranks = []
    for r in every:
        m = Measurement.model_validate(r["measurement"])
        own = m.info.pop("rank_samples_s", [])
        ranks.append({
            "rank": r["rank"], "host": r["host"], "local_rank": r["local_rank"], "device": r["device"],
            "threads": r["threads"], "median_s": _median(own), "samples_s": own,
            "peak_mem_bytes": m.memory.peak_bytes if m.memory else None,
            "memory_method": m.memory.method if m.memory else None, "state_bytes": r.get("state_bytes"),
        })
    first.info.pop("rank_samples_s", None)
    profiles = [Measurement.model_validate(r["measurement"]).profile for r in every]
    if first.profile is not None:  # rank 0's summary; every rank's own files
        first.profile["traces"] = [p.get("trace") for p in profiles if p and p.get("trace")]
        first.profile["summary_of_rank"] = every[0]["rank"]
    peaks = [(x["peak_mem_bytes"], i) for i, x in enumerate(ranks) if x["peak_mem_bytes"] is not None]
    if peaks:
        top = max(peaks)[1]
        mem = Measurement.model_validate(every[top]["measurement"]).memory
        first.memory = MemoryStats(**{**mem.model_dump(), "note": f"rank {ranks[top]['rank']}: the highest peak "
                                      f"of {len(ranks)} ranks (per rank, never summed)"})
        first.metrics["peak_mem_bytes"] = mem.peak_bytes
    states = [x["state_bytes"] for x in ranks if x["state_bytes"] is not None]
    if states:
        first.metrics["state_bytes_per_rank"] = max(states)
        if all(x["peak_mem_bytes"] is not None for x in ranks):
            first.metrics["mem_per_rank_bytes"] = max(x["state_bytes"] + x["peak_mem_bytes"] for x in ranks)
    medians = [x["median_s"] for x in ranks if x["median_s"]]
    n = len(every)
    first.metrics["world_size"] = n
    if medians:
        first.metrics["rank_spread_rel"] = (max(medians) - min(medians)) / min(medians)
        first.metrics["slowest_rank"] = ranks[max(range(len(ranks)), key=lambda i: ranks[i]["median_s"] or 0)]["rank"]
    first.info["threads_per_rank"] = sorted({x["threads"] for x in ranks})
    first.info["hosts"] = sorted({x["host"] for x in ranks})
    nosync = every[0].get("nosync")
    extras = {"nosync": Measurement.model_validate(nosync) if nosync else None, "ddp": every[0].get("extra") or {}}
    module = get_workload(case.workload)
    if hasattr(module, "finish"):
        module.finish(case, first, extras)
    return {"status": "ok", "measurement": first.model_dump(), "ranks": ranks}


def _median(xs: list[float]) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    k = len(s) // 2
    return s[k] if len(s) % 2 else (s[k - 1] + s[k]) / 2


# --- in the parent ---------------------------------------------------------------------


def quiet_elastic_logs() -> None:
    """The agent logs each worker's failure with its traceback to stderr; the parent says it
    in one line instead (the full text stays in the workers' log folder while it runs)."""
    prefixes = ("torch.distributed.elastic", "torch.distributed.launcher", "torch.multiprocessing")
    # elastic's modules give their loggers levels of their own: set each one, not only the parents
    for name in [*prefixes, *logging.root.manager.loggerDict]:
        if name.startswith(prefixes):
            logging.getLogger(name).setLevel(logging.CRITICAL)


class _LaunchTimedOut(Exception):
    """Raised by the SIGALRM handler of a launch with a timeout (the agent then stops its ranks)."""


def _alarm(signum, frame) -> None:
    raise _LaunchTimedOut()


def launch(job: Job, nproc: int, timeout_s: float | None = None) -> list[dict]:
    """Run `job` on `nproc` ranks on this host; rank 0's payloads, or LaunchFailed naming the rank.

    `timeout_s`: a launch still running after this long fails (a SIGALRM raises inside the agent,
    whose exit path stops the workers as it does on its own signals); main thread only."""
    from torch.distributed.elastic.multiprocessing.api import DefaultLogsSpecs, SignalException, Std
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    quiet_elastic_logs()
    logs = tempfile.mkdtemp(prefix="xfbench-ranks-")
    config = LaunchConfig(
        min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=f"xfbench-{uuid.uuid4().hex[:12]}",
        rdzv_backend="c10d", rdzv_endpoint="localhost:0", rdzv_configs={"timeout": RENDEZVOUS_TIMEOUT_S},
        rdzv_timeout=RENDEZVOUS_TIMEOUT_S, max_restarts=0, monitor_interval=0.1, start_method="spawn",
        logs_specs=DefaultLogsSpecs(log_dir=logs, redirects=Std.ALL), shutdown_timeout=SHUTDOWN_TIMEOUT_S,
    )
    # Ranks start with SIGINT ignored (a Ctrl-C reaches the whole terminal group, and the agent
    # forwards the signal it got): one still importing torch would print a KeyboardInterrupt
    # traceback past the redirect of its output. Once running, _rank_main exits on it quietly;
    # one that cannot is killed after SHUTDOWN_TIMEOUT_S.
    spawn_python = multiprocessing.spawn.get_executable()  # str, or bytes (os.fsencode'd) as Python keeps it
    multiprocessing.set_executable(_sigint_ignoring_python(logs, os.fsdecode(spawn_python)))
    t0 = time.perf_counter()
    # The agent turns SIGINT/SIGTERM/SIGHUP/SIGQUIT into its SignalException (after stopping the
    # workers) and leaves its handlers installed: restore ours after, and read a signal as an
    # interruption, which the sweep reports with the results kept so far.
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)}
    timed = timeout_s is not None and threading.current_thread() is threading.main_thread()
    if timed:
        handlers[signal.SIGALRM] = signal.signal(signal.SIGALRM, _alarm)
        signal.setitimer(signal.ITIMER_REAL, timeout_s)
    try:
        out = elastic_launch(config, rank_main)(job)
    except ChildFailedError as e:
        raise LaunchFailed(failure_text(e, time.perf_counter() - t0, nproc)) from None
    except _LaunchTimedOut:
        raise LaunchFailed(
            f"no result after {timeout_s:g} s (--case-timeout); its {nproc} ranks were stopped") from None
    except SignalException as e:
        raise Interrupted(int(e.sigval), at_once=True) from None
    finally:
        if timed:
            signal.setitimer(signal.ITIMER_REAL, 0)
        for s, h in handlers.items():
            signal.signal(s, h)
        multiprocessing.set_executable(spawn_python)
        shutil.rmtree(logs, ignore_errors=True)
    return out[0]


def _sigint_ignoring_python(folder: str, python: str) -> str:
    """A launcher script in `folder` that starts `python` with SIGINT ignored (an ignored signal
    stays ignored across exec, and Python then installs no KeyboardInterrupt handler)."""
    path = os.path.join(folder, "python-sigint-ignored")
    with open(path, "w") as fh:
        fh.write(f"#!/bin/sh\ntrap '' INT\nexec {shlex.quote(python)} \"$@\"\n")
    os.chmod(path, 0o755)
    return path


def _exit_on_sigint(signum, frame) -> None:
    os._exit(128 + signum)  # the agent is stopping every rank: no traceback, nothing to keep


def failure_text(e, elapsed_s: float, nproc: int) -> str:
    """One line: the first rank to fail, what it died of; when every failure is a timeout, the
    ranks that did not time out are the ones that stopped answering (hung)."""
    failures = sorted(e.failures.items(), key=lambda kv: (kv[1].timestamp, kv[0]))
    reasons = {rank: _failure_reason(f) for rank, f in failures}
    timed_out = [r for r, text in reasons.items() if "timed out" in text or "watchdog" in text]
    head = ""
    if len(timed_out) == len(reasons):
        silent = [r for r in range(nproc) if r not in reasons]
        if silent:
            head = f"rank {', '.join(map(str, silent))} stopped answering (hung); "
    parts = [f"rank {rank}: {reasons[rank]}" for rank, _ in failures[:2]]
    more = f" (and {len(failures) - 2} more)" if len(failures) > 2 else ""
    # ProcessFailure.timestamp is whole seconds: 'within 1 s' is as precise as it gets
    after = max(0.0, time.time() - failures[0][1].timestamp)
    when = "within 1 s" if after < 1.5 else f"{after:.0f} s"
    return (f"{head}{'; '.join(parts)}{more}; the job ended {when} after the first failure "
            f"({elapsed_s:.1f} s after the launch)")


def _failure_reason(f) -> str:
    if f.exitcode < 0:
        try:
            name = signal.Signals(-f.exitcode).name
        except ValueError:
            name = f"signal {-f.exitcode}"
        hints = {
            "SIGKILL": " (killed from outside: the OOM killer, or kill -9)",
            "SIGABRT": " (aborted: on NCCL, its watchdog ends a rank whose collective timed out)",
        }
        hint = hints.get(name, "")
        return f"killed by {name}{hint}"
    msg = f.message
    if isinstance(msg, dict):
        msg = msg.get("message", "")
    text = str(msg).strip().splitlines()
    return text[0].removeprefix("RuntimeError: ")[:600] if text else f"exited with code {f.exitcode}"


@dataclass
class RankedExecutor:
    """The runner's executor for cases that run as ranks: turns rank 0's payload into the case's
    Record and adds the scaling efficiency against the table's `single` baseline.

    Args:
        plan: every case of the sweep.
        job: the measurement settings every case shares (its `cases` are filled in per launch).
        prior: earlier records of this results file (the baselines of --resume).
    """

    plan: list[Case]
    job: Job
    prior: list[Record] = field(default_factory=list)
    _ready: dict[str, dict] = field(default_factory=dict)
    _baselines: dict[tuple, Record] = field(default_factory=dict)
    _timeout_s: float | None = None  # per case, from the sweep (--case-timeout; --isolate's default)
    launcher = "torch.distributed.launcher.api.elastic_launch (c10d rendezvous on localhost:0, max_restarts=0)"

    def __post_init__(self):
        from .runner import DONE_STATUSES

        self._done = {r.case_id for r in self.prior if r.status in DONE_STATUSES}  # --resume will not run them
        for r in self.prior:
            self.keep_baseline(r)

    def keep_baseline(self, r: Record) -> None:
        if r.workload == "parallel" and r.variant == "single" and r.status == "ok":
            self._baselines[(r.label, r.device)] = r

    def _group(self, case: Case) -> list[Case]:
        module = get_workload(case.workload)
        key = getattr(module, "launch_group", None)
        if key is None:
            return [case]
        k = key(case)
        return [c for c in self.plan if c.workload == case.workload and key(c) == k and c.id not in self._ready
                and (c.id not in self._done or c.id == case.id)]

    def __call__(self, case: Case, sweep) -> tuple[Record, bool]:
        from .runner import case_record

        self._profile_run(sweep)
        self._timeout_s = getattr(sweep, "case_timeout_s", None)
        payload = self._payload(case)
        if payload["status"] != "ok":
            oom = payload["status"] == "error" and f"{RankOutOfMemory.__name__}: " in (payload["reason"] or "")
            return case_record(case, "oom" if oom else payload["status"], payload["reason"]), oom
        rec = case_record(case, "ok", m=Measurement.model_validate(payload["measurement"]), ranks=payload["ranks"])
        rec.info["launcher"] = self.launcher
        self.keep_baseline(rec)
        if rec.workload == "parallel" and rec.variant != "single":
            base = self._baselines.get((rec.label, rec.device))
            rec.metrics.update(efficiency(rec, base))
            if base is not None and rec.time is not None and base.time is not None:
                rec.metrics["time_over_single"] = rec.time.median_s / base.time.median_s
                rec.info["scaling_efficiency"] = EFFICIENCY_TEXT
            elif base is None:
                rec.info["scaling_efficiency"] = "no `single` baseline of this table in the results file"
        return rec, False

    def _profile_run(self, sweep) -> None:
        """Where the ranks' profiler files go: the sweep's run folder, under its run."""
        self.job = replace(self.job, profile=sweep.measure.profile, run_id=sweep.run_id)

    def _payload(self, case: Case) -> dict:
        raise NotImplementedError


class LaunchExecutor(RankedExecutor):
    """Runs a case (with the cases launched together with it: workload.launch_group) as a job of
    `world_size` ranks started here by the elastic launcher."""

    def _payload(self, case: Case) -> dict:
        if case.id not in self._ready:
            group = self._group(case)
            if case not in group:
                group = [case]
            job = Job(**{**self.job.__dict__, "cases": group})
            timeout = self._timeout_s * len(group) if self._timeout_s is not None else None
            try:
                payloads = launch(job, case.params["world_size"], timeout_s=timeout)
                self._ready.update({c.id: p for c, p in zip(group, payloads, strict=True)})
            except LaunchFailed as e:
                which = f" (this launch ran {len(group)} cases)" if len(group) > 1 else ""
                self._ready.update({c.id: {"status": "error", "reason": f"{e}{which}"} for c in group})
        return self._ready.pop(case.id)


EFFICIENCY_TEXT = (
    "throughput_N / (N · throughput of `single`, the plain model on one device, same table); "
    "95% CI: the two medians' relative CIs in quadrature"
)


def efficiency(record: Record, baseline: Record | None) -> dict[str, Any]:
    """Scaling efficiency = throughput_N / (N · throughput of `single`), with its CI.

    The CI combines the two medians' relative 95% CIs in quadrature (delta method on the log
    of a ratio of independent estimates)."""
    if baseline is None or baseline.time is None or record.time is None:
        return {}
    n = record.metrics.get("world_size") or 1
    tok_n, tok_1 = record.metrics.get("tokens_per_s"), baseline.metrics.get("tokens_per_s")
    if not tok_n or not tok_1:
        return {}
    eff = tok_n / (n * tok_1)
    ci = math.hypot(record.time.ci_rel, baseline.time.ci_rel)
    return {"scaling_efficiency": eff, "scaling_efficiency_ci_rel": ci, "baseline_case_id": baseline.case_id}


class InJobExecutor(RankedExecutor):
    """This process is one rank of an outside job (torchrun, srun): cases at the job's world size
    run on every rank; `single` (world size 1) runs on rank 0 alone, with the threads of all
    the ranks on its host, while the others wait; other strategies at world size 1 need a
    job of their own and are skipped."""

    launcher = "outside launcher (torchrun/srun set RANK, WORLD_SIZE, LOCAL_RANK); rank 0 wrote the results"

    def __init__(self, plan: list[Case], job: Job, env: dict[str, int]):
        super().__init__(plan, job)
        self.env = env
        backend = plan[0].params["backend"] if plan else "gloo"
        local_ranks = env["local_world_size"]
        torch.set_num_threads(job.threads or threads_per_rank(local_ranks))
        if backend == "gloo" and env["world_size"] == local_ranks:
            os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
        self.device = rank_device(plan[0].device if plan else "cpu", env["local_rank"])
        init_group(backend, job.pg_timeout_s, self.device)
        self.group = RankGroup()
        self.solo = dist.new_group([0])  # every rank must create it; only rank 0 is in it
        self._index = 0
        if self.device.type == "cpu":
            fix_malloc_policy()

    def _profile_run(self, sweep) -> None:
        """Every rank writes its profiler files where rank 0's sweep writes (its run folder and run)."""
        mine = [(sweep.measure.profile, sweep.run_id)]
        dist.broadcast_object_list(mine, src=0)
        profile, run_id = mine[0]
        self.job = replace(self.job, profile=profile, run_id=run_id)

    def agree_plan(self, todo: list[Case] | None) -> list[Case]:
        """Rank 0's list of cases to run (its --resume reads the results file), for every rank."""
        ids = [[c.id for c in todo] if todo is not None else None]
        dist.broadcast_object_list(ids, src=0)
        keep = set(ids[0])
        return [c for c in self.plan if c.id in keep]

    def _payload(self, case: Case) -> dict:
        index, self._index = self._index, self._index + 1
        n = case.params["world_size"]
        if n == self.env["world_size"]:
            out = run_case_as_rank(case, self.job, self.group, self.device, index)
            return out if out is not None else {"status": "skipped", "reason": "not rank 0"}
        if case.variant != "single":
            return {"status": "skipped", "reason": f"{case.variant} at {n} rank(s) needs a job of its own: this "
                    f"job has {self.env['world_size']} (run it outside torchrun, or with that many ranks)"}
        store = dist.distributed_c10d._get_default_store()
        key = f"xfbench/solo-done/{index}"
        if self.group.rank != 0:
            store.wait([key], timedelta(days=1))
            return {"status": "skipped", "reason": "not rank 0"}
        threads = torch.get_num_threads()
        torch.set_num_threads(self.job.threads or threads_per_rank(1))
        try:
            return run_case_as_rank(case, self.job, RankGroup(self.solo), self.device, index)
        finally:
            torch.set_num_threads(threads)
            store.set(key, "done")

    def close(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()


def check_backend(device: torch.device, ranks: int, job_env: dict | None) -> None:
    """BadInput, before anything is launched, for a backend this torch lacks or more GPU ranks than GPUs."""
    from ..reports.errors import BadInput

    if not dist.is_available():
        raise BadInput(f"torch {torch.__version__} was built without torch.distributed")
    if device.type == "cuda":
        if not dist.is_nccl_available():
            raise BadInput(f"--device {device}: this torch has no NCCL backend (one GPU per rank needs it)")
        local = job_env["local_world_size"] if job_env else ranks
        first = device.index or 0
        if first + local > torch.cuda.device_count():
            raise BadInput(f"--world-sizes {ranks}: {local} ranks on this host need one GPU each from cuda:{first} "
                           f"on, and it has {torch.cuda.device_count()}")
    elif not dist.is_gloo_available():
        raise BadInput(f"torch {torch.__version__} has no gloo backend (CPU ranks need it)")
