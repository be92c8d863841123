"""torch.profiler and CUDA memory snapshots in passes of their own (measure()'s PASS kind).

TorchProfile runs the step under torch.profiler.profile after the timed phase, on a schedule
of wait/warmup/active steps (CPU activity always, CUDA where the device is one; shapes,
memory, FLOPs and modules recorded; stacks on request). It writes the Chrome/Perfetto trace
(trace.json.gz, one per rank) into the run folder and keeps a summary in the record:

- the top operators by self time per step: self device time on CUDA (the kernels an op
  launched), self CPU time on CPU; each with its share of the profiled step, calls, input
  shapes and the FLOPs torch.profiler counts (it counts mm, addmm, bmm, baddbmm, conv only);
- where the step's time went: compute, communication, memory copies and, on a GPU, idle;
- cross-checks: the profiled step time against the timed median (the profiler's overhead),
  and the counted FLOPs against the analytic work the implementation dispatches.

Shares are of the profiled steps' wall time (torch.profiler's ProfilerStep spans): on CPU an
op's self time is time on the thread that ran the step, so the shares add up to at most
100% there; on a GPU, kernels on concurrent streams (communication beside compute) overlap,
and the device shares are each a fraction of the step, so they may add up to more.

MemorySnapshot (CUDA) records the caching allocator's history around one step
(torch.cuda.memory._record_memory_history, bounded by max_entries) and dumps it to
memory_snapshot.pickle, for pytorch.org/memory_viz. Anywhere else it records why it was
skipped. snapshot_on_oom() dumps one for a case that ran out of memory.

Paths in the summary are relative to the run folder.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import re
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from ..reports.schema import TimeStats
from .device import synchronize
from .measure import PASS, Context, Contribution, MeasureOptions
from .memory import is_oom

TRACE_NAME = "trace.json.gz"
SNAPSHOT_NAME = "memory_snapshot.pickle"
# torch.profiler's step annotations: their spans are the profiled steps' wall time
STEP_PREFIX = "ProfilerStep"
HOW_TO_OPEN_TRACE = "open in ui.perfetto.dev or chrome://tracing (either reads the .json.gz as it is)"
HOW_TO_OPEN_SNAPSHOT = "drag onto pytorch.org/memory_viz"
# What torch.profiler's with_flops counts (torch/csrc/profiler/util.cpp, computeFlops): the GEMMs
# and convolutions below, and one FLOP per element of aten::mul and aten::add. The analytic work a
# step dispatches (Step.work_flops) counts GEMMs, so like is compared with like: these ops only.
GEMM_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::conv2d")
FLOP_COUNTED_OPS = ", ".join(GEMM_OPS)

# Operator (and kernel) names by what they spend time on. Collectives: c10d's ops and the
# backends' own names (gloo on CPU, NCCL kernels on a GPU); memory: copies, casts and fills.
COMM_PATTERN = re.compile(
    r"nccl|gloo|c10d::|all_?reduce|allgather|all_gather|reduce_scatter|broadcast|record_param_comms|alltoall",
    re.IGNORECASE,
)
MEMORY_OPS = frozenset({
    "aten::copy_", "aten::_to_copy", "aten::clone", "aten::contiguous", "aten::fill_", "aten::zero_",
    "aten::zeros", "aten::zeros_like", "aten::empty_like", "aten::ones_like", "aten::cat", "aten::stack",
})


@dataclass(frozen=True)
class ProfileOptions:
    """What the profiling passes do and where their files go.

    Args:
        trace: run the torch.profiler pass (--profile).
        memory_snapshot: dump a CUDA memory snapshot of one step (--memory-snapshot).
        wait, warmup, active: torch.profiler.schedule's steps: run but not recorded, recorded
            and discarded (the profiler's own start-up), recorded.
        with_stack: record Python stacks (larger traces, more overhead).
        top_k: operators kept in the record's summary (the rest are summed as "other ops").
        snapshot_entries: max_entries of the allocator history (bounds its memory).
        run_dir: the run folder; every path in a summary is relative to it.
        folder: this case's folder under run_dir (the runner sets it per case: profiles/<run>/<case>).
        rank, world_size: the data-parallel rank writing (one trace per rank).
    """

    trace: bool = True
    memory_snapshot: bool = False
    wait: int = 1
    warmup: int = 1
    active: int = 3
    with_stack: bool = False
    top_k: int = 10
    snapshot_entries: int = 100_000
    run_dir: Path | None = None
    folder: str = "profiles"
    rank: int | None = None
    world_size: int = 1

    def for_case(self, run_id: str | None, case_id: str) -> ProfileOptions:
        return replace(self, folder="/".join(["profiles", *([run_id] if run_id else []), case_id]))

    def for_rank(self, rank: int, world_size: int) -> ProfileOptions:
        return replace(self, rank=rank, world_size=world_size)

    def path(self, name: str) -> tuple[Path, str]:
        """(absolute path, path relative to the run folder) of a file of this case (of this rank)."""
        if self.world_size > 1 and self.rank is not None:
            stem, _, ext = name.partition(".")
            name = f"{stem}.rank{self.rank}.{ext}"
        rel = f"{self.folder}/{name}"
        base = self.run_dir if self.run_dir is not None else Path.cwd()
        return base / rel, rel


# --- the trace pass -----------------------------------------------------------------------------


def _activities(device: torch.device) -> list:
    from torch.profiler import ProfilerActivity

    acts = [ProfilerActivity.CPU]
    if device.type == "cuda":
        acts.append(ProfilerActivity.CUDA)
    return acts


def _self_device_s(e: Any) -> float:
    """Self device time of a key-averaged op, in seconds (torch >= 2.4 names it self_device_time_total)."""
    us = getattr(e, "self_device_time_total", None)
    if us is None:
        us = getattr(e, "self_cuda_time_total", 0.0)
    return (us or 0.0) / 1e6


def _shapes(e: Any) -> str:
    shapes = [s for s in (e.input_shapes or []) if s]
    return ", ".join("×".join(map(str, s)) for s in shapes) if shapes else ""


def category(name: str, on_device: bool = False) -> str:
    """'communication', 'memory' or 'compute' for an operator's (or a kernel's) name."""
    if COMM_PATTERN.search(name):
        return "communication"
    if name in MEMORY_OPS or (on_device and re.match(r"Memcpy|Memset|memcpy|memset", name)):
        return "memory"
    return "compute"


def _union_s(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def device_breakdown(trace_events: list[dict], steps: list[tuple[float, float]]) -> dict[str, float] | None:
    """From a Chrome trace's GPU events inside the profiled steps' spans: the seconds of kernels
    (by name: communication or compute), memory copies and sets, and idle (the span covered by
    no device event). None when the trace has no device events."""
    cats = {"kernel", "gpu_memcpy", "gpu_memset"}
    busy: dict[str, float] = {"compute": 0.0, "communication": 0.0, "memory": 0.0}
    spans: list[tuple[float, float]] = []
    for ev in trace_events:
        if ev.get("cat") not in cats or "dur" not in ev:
            continue
        a, b = float(ev["ts"]), float(ev["ts"]) + float(ev["dur"])
        for lo, hi in steps:
            a2, b2 = max(a, lo), min(b, hi)
            if b2 > a2:
                kind = "memory" if ev["cat"] != "kernel" else category(ev.get("name", ""), on_device=True)
                busy[kind] += (b2 - a2) / 1e6
                spans.append((a2, b2))
    if not spans:
        return None
    total = sum(hi - lo for lo, hi in steps) / 1e6
    return {**busy, "idle": max(0.0, total - _union_s(spans) / 1e6)}


def _step_spans(trace_events: list[dict]) -> list[tuple[float, float]]:
    return [
        (float(ev["ts"]), float(ev["ts"]) + float(ev["dur"]))
        for ev in trace_events
        if ev.get("name", "").startswith(STEP_PREFIX + "#") and ev.get("ph") == "X" and "dur" in ev
        and ev.get("cat") in ("user_annotation", "cpu_op", None)
    ]


def summarize(key_averages: Any, steps: int, step_s: float, on_device: bool, top_k: int) -> dict[str, Any]:
    """The record's operator summary from key_averages(group_by_input_shape=True).

    Per op: self time per step (device on CUDA, CPU otherwise), its share of the profiled step
    (`step_s`, wall time per step), calls per step, input shapes and counted FLOPs per step.
    The time on the step's thread inside no operator (ProfilerStep's own self time: Python,
    the framework) is `outside_ops`.
    """
    self_s = _self_device_s if on_device else (lambda e: e.self_cpu_time_total / 1e6)
    ops, outside = [], 0.0
    for e in key_averages:
        if e.key.startswith(STEP_PREFIX):
            outside += e.self_cpu_time_total / 1e6
            continue
        s = self_s(e)
        if s <= 0 and not e.flops:
            continue
        ops.append({
            "name": e.key, "shapes": _shapes(e), "calls": e.count / steps, "self_s": s / steps,
            "flops": (e.flops or 0) / steps or None, "category": category(e.key, on_device),
        })
    ops.sort(key=lambda o: -o["self_s"])
    total = step_s if step_s > 0 else None
    for o in ops:
        o["share"] = o["self_s"] / total if total else None
    top, rest = ops[:top_k], ops[top_k:]
    shares: dict[str, float] = {"compute": 0.0, "communication": 0.0, "memory": 0.0}
    for o in ops:
        shares[o["category"]] += o["self_s"]
    counted = sum(o["flops"] or 0 for o in ops if o["name"] in GEMM_OPS)
    return {
        "ops": top,
        "other_ops": {"count": len(rest), "self_s": sum(o["self_s"] for o in rest),
                      "share": sum(o["self_s"] for o in rest) / total if total else None},
        "seconds": {**shares, **({} if on_device else {"outside_ops": outside / steps})},
        "counted_flops": counted or None,
    }


def _shares(seconds: dict[str, float], step_s: float) -> dict[str, float | None]:
    return {k: (v / step_s if step_s > 0 else None) for k, v in seconds.items()}


def _write_trace(prof: Any, path: Path) -> None:
    """The Chrome trace, gzipped (torch's export writes plain JSON; viewers read either), renamed
    into place once whole: a crash never leaves half a trace under the record's path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    plain = path.with_name(path.name.removesuffix(".gz") + ".tmp")
    packed = path.with_name(path.name + ".part")
    try:
        prof.export_chrome_trace(str(plain))
        with open(plain, "rb") as src, gzip.open(packed, "wb", compresslevel=6) as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
        os.replace(packed, path)
    finally:
        plain.unlink(missing_ok=True)
        packed.unlink(missing_ok=True)


def read_trace(path: Path) -> dict[str, Any]:
    """A trace.json.gz as the viewers read it (plain JSON inside gzip)."""
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return json.load(f)


KINETO_LINE = re.compile(r"^[A-Z]+:\d{4}-\d\d-\d\d [\d:]+ \d+:\d+ \w+\.cpp:\d+\] ")


@contextlib.contextmanager
def _quiet_kineto() -> Iterator[None]:
    """Kineto writes a line at each profiler start and stop to fd 2 (its C++ logging, which no
    setting turns off); a sweep's output should not carry them. fd 2 goes to a file meanwhile,
    and every other line written there is passed on to stderr afterwards."""
    import os
    import sys
    import tempfile

    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            rest = [ln for ln in held.read().decode(errors="replace").splitlines(True) if not KINETO_LINE.match(ln)]
            if rest:
                sys.stderr.write("".join(rest))
                sys.stderr.flush()


def profile_step(run: Callable[[], object], device: torch.device, po: ProfileOptions) -> dict[str, Any]:
    """Run `run` under torch.profiler on po's schedule; write the trace; return the summary."""
    from torch.profiler import profile, schedule

    total = po.wait + po.warmup + po.active
    walls: list[float] = []
    # repeat=1: one cycle. With repeat=0 the schedule starts a next cycle right after the active
    # steps, and with wait=0 that cycle's warm-up clears what was recorded.
    with warnings.catch_warnings():  # warmup=0 is the user's choice (--profile-schedule), recorded
        warnings.filterwarnings("ignore", message=r"Profiler won't be using warmup")
        sched = schedule(wait=po.wait, warmup=po.warmup, active=po.active, repeat=1)
    with _quiet_kineto(), profile(
        activities=_activities(device), schedule=sched,
        record_shapes=True, profile_memory=True, with_flops=True, with_modules=True, with_stack=po.with_stack,
    ) as prof:
        for i in range(total):
            synchronize(device)
            t0 = time.perf_counter()
            run()
            synchronize(device)
            if i >= po.wait + po.warmup:
                walls.append(time.perf_counter() - t0)
            prof.step()
    path, rel = po.path(TRACE_NAME)
    _write_trace(prof, path)
    events = read_trace(path).get("traceEvents", [])
    spans = _step_spans(events)
    steps = len(spans) or po.active
    step_s = sum(b - a for a, b in spans) / 1e6 / steps if spans else sorted(walls)[len(walls) // 2]
    averages = prof.key_averages(group_by_input_shape=True)
    on_device = device.type == "cuda"
    note = None
    if on_device and not any(_self_device_s(e) > 0 for e in averages):
        # CUDA asked for but no kernel recorded (no CUPTI in this install, or another profiler holds it)
        on_device = False
        note = "no device activity was recorded (is CUPTI available?): ops sorted by self CPU time"
    summary = summarize(averages, steps, step_s, on_device, po.top_k)
    seconds = summary.pop("seconds")
    if on_device:
        dev = device_breakdown(events, spans)
        seconds = dev if dev is not None else seconds
    walls.sort()
    if note:
        summary["note"] = note
    return {
        "trace": rel, "trace_bytes": path.stat().st_size, "how_to_open": HOW_TO_OPEN_TRACE,
        "activities": [a.name for a in _activities(device)],
        "schedule": {"wait": po.wait, "warmup": po.warmup, "active": po.active},
        "with_stack": po.with_stack,
        "sort_by": "self device time" if on_device else "self CPU time",
        "step_s": step_s, "step_source": "ProfilerStep spans in the trace (wall, synchronized at each step's end)",
        "profiled_median_s": walls[len(walls) // 2],
        **summary,
        "breakdown": _shares(seconds, step_s),
        "breakdown_source": (
            "device events in the trace within the step spans: kernels (NCCL kernels are communication), "
            "memory copies/sets, idle = span covered by no device event"
            if on_device and "idle" in seconds else
            "self CPU time of the step's operators by name (collectives: communication; copies, casts, fills: "
            "memory; other ops: compute); outside_ops = time on the step's thread inside no operator (Python, "
            "the framework, freeing tensors)"
        ),
    }


def cross_checks(summary: dict[str, Any], timing: TimeStats, step: Any) -> dict[str, Any]:
    """Profiled step time against the timed median, counted FLOPs against the analytic work."""
    out: dict[str, Any] = {"timed_median_s": timing.median_s}
    if timing.clock == "fake":
        out["overhead_rel"] = None
        out["overhead_note"] = "the timed phase ran on a fake clock: nothing to compare the profiled step with"
    else:
        out["overhead_rel"] = summary["profiled_median_s"] / timing.median_s - 1 if timing.median_s > 0 else None
        out["overhead_note"] = (
            "median wall time of the profiled steps (synchronized each step) / the timed median - 1: what "
            "recording every op cost this step"
        )
    work = step.work_flops if getattr(step, "work_flops", None) is not None else step.flops
    counted = summary.get("counted_flops")
    if "compile" in getattr(step, "info", {}):
        out["flops_over_work"] = None
        out["flops_note"] = "not compared: a torch.compile'd step runs generated kernels, whose FLOPs go uncounted"
    elif counted and work:
        out["flops_over_work"] = counted / work
        # the fused ops whose GEMMs the profiler cannot see (SDPA's kernels, say), largest first
        uncounted = list(dict.fromkeys(
            o["name"] for o in summary["ops"] if o["category"] == "compute" and not o["flops"]
            and (o["share"] or 0) >= 0.01 and re.search(r"attention|conv|matmul|linear|gemm", o["name"], re.I)
        ))[:3]
        out["flops_note"] = (
            f"FLOPs torch.profiler counted per step / the analytic work the implementation dispatches "
            f"(info['work_flop_convention']); it counts only {FLOP_COUNTED_OPS}"
            + (f"; not counted here: {', '.join(uncounted)}" if uncounted else "")
        )
    else:
        out["flops_over_work"] = None
        out["flops_note"] = (
            f"torch.profiler counted no FLOPs in this step: it counts only {FLOP_COUNTED_OPS}, and this step's "
            "work runs in other ops" if work else "no analytic FLOPs for this step"
        )
    return out


class TorchProfile:
    """The step under torch.profiler, after timing: a trace file and the top-ops summary."""

    kind = PASS

    def __init__(self, ctx: Context):
        self.ctx = ctx

    @classmethod
    def enabled(cls, opts: MeasureOptions) -> bool:
        return opts.profile is not None and opts.profile.trace

    def result(self, timing: TimeStats) -> Contribution:
        po = self.ctx.opts.profile
        try:
            summary = profile_step(self.ctx.step.run, self.ctx.device, po)
        except (RuntimeError, OSError) as e:  # the profiler or the disk failed: the timed figures stand
            if is_oom(e):
                raise
            return Contribution(profile={"error": f"{type(e).__name__}: {str(e).strip()[:300]}"})
        summary.update(cross_checks(summary, timing, self.ctx.step))
        return Contribution(profile=summary)


# --- CUDA memory snapshots --------------------------------------------------------------------


def snapshot_support(device: torch.device) -> str | None:
    """Why a memory snapshot cannot be taken here (None: it can)."""
    if device.type != "cuda":
        return (f"memory snapshots record the CUDA caching allocator's history; this case ran on {device.type} "
                "(CUDA only)")
    mem = getattr(torch.cuda, "memory", None)
    if mem is None or not hasattr(mem, "_record_memory_history") or not hasattr(mem, "_dump_snapshot"):
        return f"torch {torch.__version__} has no torch.cuda.memory._record_memory_history/_dump_snapshot"
    return None


@contextlib.contextmanager
def memory_history(max_entries: int) -> Iterator[None]:
    """The caching allocator records every alloc/free (with Python stacks) while inside."""
    torch.cuda.memory._record_memory_history(max_entries=max_entries)
    try:
        yield
    finally:
        torch.cuda.memory._record_memory_history(enabled=None)


def dump_snapshot(po: ProfileOptions, name: str = SNAPSHOT_NAME) -> dict[str, Any]:
    path, rel = po.path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.cuda.memory._dump_snapshot(str(path))
    return {"memory_snapshot": rel, "memory_snapshot_bytes": path.stat().st_size,
            "memory_snapshot_how_to_open": HOW_TO_OPEN_SNAPSHOT}


class MemorySnapshot:
    """One step with the CUDA allocator's history on, dumped to memory_snapshot.pickle."""

    kind = PASS

    def __init__(self, ctx: Context):
        self.ctx = ctx

    @classmethod
    def enabled(cls, opts: MeasureOptions) -> bool:
        return opts.profile is not None and opts.profile.memory_snapshot

    def result(self, timing: TimeStats) -> Contribution:
        po, device = self.ctx.opts.profile, self.ctx.device
        why = snapshot_support(device)
        if why is not None:
            return Contribution(profile={"memory_snapshot": None, "memory_snapshot_skipped": why})
        synchronize(device)
        with memory_history(po.snapshot_entries):
            self.ctx.step.run()
            synchronize(device)
            out = dump_snapshot(po)
        out["memory_snapshot_entries"] = po.snapshot_entries
        return Contribution(profile=out)


def snapshot_on_oom(attempt: Callable[[], object], device: torch.device, po: ProfileOptions) -> dict[str, Any]:
    """A case ran out of memory: run `attempt` (prepare the case and call its step once) again with
    the allocator's history on and dump the snapshot at the failure (what a user most wants to see).
    Returns the record's profile fields (the snapshot, or why none was taken)."""
    why = snapshot_support(device)
    if why is not None:
        return {"memory_snapshot": None, "memory_snapshot_skipped": why}
    with memory_history(po.snapshot_entries):
        try:
            attempt()
        except Exception as e:  # noqa: BLE001 - the OOM is what we came for; anything else is said
            if not is_oom(e):
                return {"memory_snapshot": None,
                        "memory_snapshot_skipped": f"the second attempt failed otherwise: {type(e).__name__}"}
            out = dump_snapshot(po, "memory_snapshot.oom.pickle")
            out["memory_snapshot_note"] = "dumped at the out-of-memory error of a second attempt at the case"
            return out
    return {"memory_snapshot": None,
            "memory_snapshot_skipped": "a second attempt at the case did not run out of memory"}
