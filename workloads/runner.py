"""The runner loop: Case -> prepare -> measure time and memory -> Record -> sink.

Failures are data: an out-of-memory or an error becomes that case's Record, larger
sizes of an out-of-memory series are skipped with the reason, and the sweep goes on.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import torch

from .. import __version__
from ..profilers.cpu import fix_malloc_policy
from ..profilers.device import cache_policy, resolve_device
from ..profilers.env import collect_environment, git_info
from ..profilers.memory import is_oom, measure_peak, memory_cap
from ..profilers.timer import TimerPolicy, make_clock, measure_time
from ..profilers.warnings import time_warnings
from ..reports.schema import Header, Record
from ..reports.store import ResultsWriter, load_results
from . import get_workload
from .base import Case, SkipCase, Step


class Progress(Protocol):
    def start(self, case: Case, index: int, total: int) -> None: ...

    def finish(self, record: Record) -> None: ...


class NullProgress:
    def start(self, case: Case, index: int, total: int) -> None:
        pass

    def finish(self, record: Record) -> None:
        pass


@dataclass(frozen=True)
class RunOptions:
    """How to run a plan.

    Args:
        policy: timer stopping rules.
        threads: torch intra-op threads, set before the first case and recorded.
        measure_memory: run the separate peak-memory pass.
        mem_limit_bytes: optional cap on memory beyond what is in use at the start.
        fake_clock: deterministic FakeClock instead of the real one (tests, --fake-clock).
    """

    policy: TimerPolicy = TimerPolicy()
    threads: int | None = None
    measure_memory: bool = True
    mem_limit_bytes: int | None = None
    fake_clock: bool = False


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _record(case: Case, status: str, reason: str | None = None, **kw) -> Record:
    return Record(
        case_id=case.id, workload=case.workload, label=case.label, variant=case.variant,
        size=case.size, size_name=case.size_name, params=case.p, device=case.device,
        status=status, reason=reason, **kw,
    )


def _measure(case: Case, step: Step, device: torch.device, opts: RunOptions) -> Record:
    policy = cache_policy(device, step.working_set_bytes)
    if policy.input_sets > 1:
        step.rotate(policy.input_sets)
    timing = measure_time(step, opts.policy, make_clock(device, opts.fake_clock))
    memory = measure_peak(step.run, device) if opts.measure_memory else None
    t = timing.median_s
    metrics = {
        "flops_per_call": step.flops,
        "flop_per_s": step.flops / t if t > 0 else None,
        "tokens_per_call": step.tokens,
        "tokens_per_s": step.tokens / t if t > 0 else None,
        "peak_mem_bytes": memory.peak_bytes if memory else None,
    }
    info = {**step.info, "cache_policy": policy.description, "threads": torch.get_num_threads()}
    return _record(
        case, "ok", time=timing, memory=memory, metrics=metrics, info=info,
        warnings=[w.value for w in time_warnings(timing)],
    )


def _run_one(case: Case, opts: RunOptions) -> tuple[Record, bool]:
    """Run one case; returns its record and whether it ran out of memory."""
    device = resolve_device(case.device)
    step = None
    try:
        step = get_workload(case.workload).prepare(case, device)
        return _measure(case, step, device, opts), False
    except SkipCase as e:
        return _record(case, "skipped", str(e)), False
    except Exception as e:  # failures are data: the sweep goes on
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        reason = f"{type(e).__name__}: {first}"[:500]
        return _record(case, "oom" if is_oom(e) else "error", reason), is_oom(e)
    finally:
        if step is not None:
            step.close()
        del step
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()


def run_cases(
    cases: Iterable[Case],
    sink: Callable[[Record], None],
    opts: RunOptions = RunOptions(),
    progress: Progress | None = None,
) -> list[Record]:
    """Measure every case in order, handing each Record to `sink` as soon as it exists."""
    cases = list(cases)
    progress = progress or NullProgress()
    if opts.threads:
        torch.set_num_threads(opts.threads)
    oom_at: dict[tuple, int] = {}  # series -> smallest size that ran out of memory
    records = []
    device = resolve_device(cases[0].device) if cases else torch.device("cpu")
    malloc = fix_malloc_policy() if device.type == "cpu" else None
    with memory_cap(device, opts.mem_limit_bytes) as cap:
        for i, case in enumerate(cases):
            progress.start(case, i, len(cases))
            t0, started = time.perf_counter(), _now()
            if case.series in oom_at and case.size > oom_at[case.series]:
                rec = _record(
                    case, "skipped",
                    f"{case.variant} ran out of memory at {case.size_name}={oom_at[case.series]}",
                )
            else:
                rec, oom = _run_one(case, opts)
                if oom:
                    oom_at[case.series] = min(case.size, oom_at.get(case.series, case.size))
            if rec.status == "ok":
                rec.info.update(cpu_malloc=malloc, mem_limit=cap)
            rec.started_utc, rec.wall_s = started, time.perf_counter() - t0
            sink(rec)
            records.append(rec)
            progress.finish(rec)
    return records


# Statuses that need no re-run on --resume (an error may be transient, so it is re-run).
DONE_STATUSES = ("ok", "oom", "skipped")


def pending_cases(cases: Iterable[Case], results_path: Path) -> list[Case]:
    """The cases without a finished record in `results_path` (all of them if it is absent)."""
    cases = list(cases)
    if not results_path.exists():
        return cases
    done = {r.case_id for r in load_results(results_path).records if r.status in DONE_STATUSES}
    return [c for c in cases if c.id not in done]


def run_plan(
    cases: Iterable[Case],
    results_path: Path,
    *,
    command: str,
    argv: list[str] | None = None,
    opts: RunOptions = RunOptions(),
    progress: Progress | None = None,
) -> list[Record]:
    """Run a plan into a results file (header first, then one line per case as it ends).

    Returns the records measured by this call.
    """
    if opts.threads:
        torch.set_num_threads(opts.threads)
    header = Header(
        tool_version=__version__, created_utc=_now(), command=command, argv=list(argv or []),
        git=git_info(), environment=collect_environment(),
    )
    with ResultsWriter(results_path, header) as writer:
        return run_cases(cases, writer.append, opts, progress)
