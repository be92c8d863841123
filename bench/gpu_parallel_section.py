"""GPU check, parallel section: `single` against `ddp` at world size 1 (NCCL on CUDA) and the all-reduce table.

What `xfbench parallel --presets 124M --strategy single,ddp --world-sizes 1 --batch 16 --seq-len 1024
--dtype bfloat16` runs (cli/parallel.py): the plan of workloads.parallel and workloads.collectives,
run by workloads.runner.run_cases with workloads.launch.LaunchExecutor, which starts each case as
a job of one rank (torch.distributed's elastic launcher, spawned; on CUDA the rank runs on
cuda:LOCAL_RANK with NCCL, on a CPU with gloo). Printed beside ../shared/GPU-REFERENCE.md (one
H200, plain PyTorch): the plain step of the nanoGPT shape (124M, B=16, T=1024, bf16 autocast)
47.6 ms with a 16.1 GiB peak, and DDP at world size 1 (NCCL) / plain step = 1.03. Then the
all-reduce at world size 1, 1 KiB ... 256 MiB, in the nccl-tests convention.

bench/gpu_check.py calls `parallel_section(ctx.device, ctx.opts.threads, ctx.quick)`; standalone:
`python bench/gpu_parallel_section.py` (estimate ~50 s on CUDA, bound by the timer caps and three
one-rank launches; not yet run on a GPU), or
`--device cpu --quick` as a smoke test (the 1M preset, T=64, gloo).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass, replace

import torch

from xfbench.profilers.device import resolve_device
from xfbench.profilers.timer import TimerPolicy
from xfbench.reports.schema import Record
from xfbench.reports.units import fmt_bytes, fmt_rate, fmt_time
from xfbench.workloads import launch as ln
from xfbench.workloads.collectives import CollectiveConfig
from xfbench.workloads.collectives import cases as collective_cases
from xfbench.workloads.parallel import ParallelConfig, backend_for
from xfbench.workloads.parallel import cases as parallel_cases
from xfbench.workloads.runner import RunOptions, run_cases

# Short caps, as the model section's: a throughput figure against a reference, not a paper-grade one.
POLICY = TimerPolicy(target_ci_rel=0.02, max_time_s=1.0, warmup_max_s=1.0)
# A collective cell: tens of microseconds to a few milliseconds per call, so its CI closes fast.
COMM_POLICY = TimerPolicy(target_ci_rel=0.02, max_time_s=0.5, warmup_max_s=0.3)

# Estimate. Each launch spawns a rank (a fresh interpreter importing torch, then CUDA and NCCL
# init); the timer caps bound the cells: warm-up cap + timed cap + CELL_EXTRA_S.
LAUNCH_S = 10.0
CELL_EXTRA_S = 0.5  # set-up (model build, DDP's construction), the memory pass, teardown

KIB, MIB = 1024, 1024**2


@dataclass(frozen=True)
class Shapes:
    """The section's train step (preset, B per rank, T, dtype) and its all-reduce message sizes."""

    preset: str
    batch: int
    seq_len: int
    dtype: str
    message_sizes: list[int]


# The reference's shape on CUDA (1 KiB ... 256 MiB in steps of 4x); tiny ones for the CPU smoke test.
GPU_SHAPES = Shapes("124M", 16, 1024, "bfloat16", [KIB * 4**i for i in range(10)])
GPU_QUICK = replace(GPU_SHAPES, message_sizes=[KIB, MIB, 256 * MIB])
CPU_SHAPES = Shapes("1M", 4, 128, "float32", [KIB * 16**i for i in range(4)])
CPU_QUICK = Shapes("1M", 2, 64, "float32", [KIB, 64 * KIB, MIB])

# ../shared/GPU-REFERENCE.md, at GPU_SHAPES: the plain (eager) train step and its peak memory,
# and the DDP step at world size 1 (NCCL) over the plain one.
REF_SINGLE_MS = 47.6
REF_SINGLE_PEAK_GIB = 16.1
REF_DDP_OVER_SINGLE = 1.03


def shapes_for(device: torch.device, quick: bool) -> Shapes:
    if device.type == "cuda":
        return GPU_QUICK if quick else GPU_SHAPES
    return CPU_QUICK if quick else CPU_SHAPES


def section_cases(device: torch.device, quick: bool) -> tuple[list, list]:
    """(train cases: single and ddp at world size 1; all-reduce cases at world size 1)."""
    s = shapes_for(device, quick)
    cfg = ParallelConfig(presets=[s.preset], strategies=["single", "ddp"], world_sizes=[1], batch=s.batch,
                         seq_len=s.seq_len, dtype=s.dtype)
    comm = CollectiveConfig(ops=["all_reduce"], sizes=s.message_sizes, world_sizes=[1])
    return parallel_cases(cfg, device), collective_cases(comm, device)


def _cell_s(policy: TimerPolicy) -> float:
    return policy.warmup_max_s + policy.max_time_s + CELL_EXTRA_S


def estimate_s(device: torch.device, quick: bool) -> float:
    """Three launches (single, ddp, the all-reduce sizes together); ddp times its step twice (no_sync too)."""
    train, comm = section_cases(device, quick)
    timed = sum(2 if c.params.get("exposed_comm") else 1 for c in train)
    return 3 * LAUNCH_S + timed * _cell_s(POLICY) + len(comm) * _cell_s(COMM_POLICY)


def at_reference(rec: Record) -> bool:
    """A CUDA bf16 record at the reference's shape (124M, B=16 per rank, T=1024)."""
    p, s = rec.params, GPU_SHAPES
    return rec.device.startswith("cuda") and (p["preset"], p["batch"], p["seq_len"], p["dtype"]) == (
        s.preset, s.batch, s.seq_len, s.dtype)


def _ref(value: float | None) -> str:
    return "-" if value is None else format(value, "g")


def _num(value: float | None, fmt: str, scale: float = 1.0) -> str:
    return "-" if value is None else format(value * scale, fmt)


TRAIN_HEADER = (f"{'strategy':8} {'ranks':>5}  {'ms/step [ref]':17} {'95% CI':>7} {'n':>4} {'ktok/s':>8} "
                f"{'peak GiB [ref]':16} {'rank 0 on':10} {'backend':7} notes")


def _notes(rec: Record) -> list[str]:
    """The record's warnings, with '!conv' first when the timer stopped at its cap and no warning says so."""
    notes = list(rec.warnings)
    if not rec.time.converged and "not_converged" not in notes:
        notes.insert(0, "!conv")
    return notes


def train_row(rec: Record) -> str:
    head = f"{rec.variant:8} {rec.size:>5}"
    if rec.status != "ok":
        return f"{head}  {rec.status:7} {(rec.reason or '')[:110]}"
    ref = at_reference(rec)
    single = rec.variant == "single"
    m, t = rec.metrics, rec.time
    ms = f"{t.median_s * 1e3:9.2f} [{_ref(REF_SINGLE_MS if ref and single else None)}]".ljust(17)
    peak = m.get("peak_mem_bytes")
    mem = f"{_num(peak, '.2f', 2**-30):>7} [{_ref(REF_SINGLE_PEAK_GIB if ref and single else None)}]".ljust(16)
    where = rec.ranks[0].device if rec.ranks else "-"
    notes = _notes(rec)
    return (f"{head}  {ms} {f'±{100 * t.ci_rel:.1f}%':>7} {t.n:>4} {_num(m.get('tokens_per_s'), '.1f', 1e-3):>8} "
            f"{mem} {where:10} {rec.info.get('backend', '-'):7} {' '.join(notes)}")


def ratio_lines(records: list[Record]) -> list[str]:
    """ddp / single (the runner's time_over_single) beside the reference, and the exposed comm."""
    by = {r.variant: r for r in records if r.status == "ok"}
    single, ddp = by.get("single"), by.get("ddp")
    if single is None or ddp is None:
        missing = ", ".join(s for s in ("single", "ddp") if s not in by)
        return [f"ddp / single: - ({missing} has no ok record) [ref {REF_DDP_OVER_SINGLE:g}]"]
    ratio = ddp.metrics.get("time_over_single", ddp.time.median_s / single.time.median_s)
    ci = math.hypot(ddp.time.ci_rel, single.time.ci_rel)
    ref = f"[ref {REF_DDP_OVER_SINGLE:g}, one H200, NCCL]" if at_reference(ddp) else "[ref: none at this shape]"
    lines = [f"ddp / single step time = {ratio:.3f} ±{100 * ci:.1f}% {ref}  (ratio of the two medians, each the "
             "max over ranks; CI: the relative 95% CIs in quadrature)"]
    m = ddp.metrics
    if m.get("exposed_comm_s") is not None:
        ci_text = f" ±{fmt_time(m['exposed_comm_ci_s'])}" if m.get("exposed_comm_ci_s") is not None else ""
        lines.append(
            f"exposed comm (ddp step - the same step under DDP's no_sync, all-reduce skipped): "
            f"{fmt_time(m['exposed_comm_s'])}{ci_text} "
            f"= {100 * m['exposed_comm_frac']:.1f}% of the step; no_sync step {fmt_time(m.get('nosync_time_s'))}; "
            f"gradients {fmt_bytes(m.get('grad_bytes_per_step'))}/step, sent per rank "
            f"{fmt_bytes(m.get('comm_bytes_per_rank_per_step'))} (ring 2(n-1)/n · G: 0 at n = 1)")
    else:
        lines.append(f"exposed comm: - ({ddp.info.get('exposed_comm', 'not in the record')})")
    own = [(k, m.get(f"ddp_backward_{k}_s")) for k in ("compute", "comm", "overlap")]
    if any(v is not None for _, v in own):
        lines.append("DDP's own logging (sampled by its reducer): backward " + ", ".join(
            f"{k} {fmt_time(v)}" for k, v in own))
    return lines


COMM_HEADER = f"{'message':>9}  {'time':>10} {'95% CI':>7} {'n':>4}  {'algbw':>11} {'busbw':>11}  notes"


def comm_row(rec: Record) -> str:
    head = f"{fmt_bytes(rec.size):>9}"
    if rec.status != "ok":
        return f"{head}  {rec.status:7} {(rec.reason or '')[:110]}"
    m, t = rec.metrics, rec.time
    notes = _notes(rec)
    return (f"{head}  {fmt_time(t.median_s):>10} {f'±{100 * t.ci_rel:.1f}%':>7} {t.n:>4}  "
            f"{fmt_rate(m.get('algbw_bytes_per_s'), 'B'):>11} {fmt_rate(m.get('busbw_bytes_per_s'), 'B'):>11}  "
            f"{' '.join(notes)}")


def _run(todo: list, policy: TimerPolicy, threads: int | None, memory: bool, show) -> list[Record]:
    """What `xfbench parallel` does with a plan (cli/parallel.py): the runner, each case a launched job."""
    opts = RunOptions(policy=policy, threads=threads, calibrate=False, telemetry=False)
    job = ln.Job(cases=[], policy=policy, memory=memory, threads=threads)
    return run_cases(todo, show, opts, execute=ln.LaunchExecutor(todo, job))


def _status(records: list[Record]) -> str:
    counts = {s: sum(r.status == s for r in records) for s in ("ok", "skipped", "oom", "error")}
    return "status: " + "  ".join(f"{k}={v}" for k, v in counts.items())


def parallel_section(device: torch.device, threads: int | None = None, quick: bool = False) -> list[Record]:
    """Run single and ddp at world size 1, then the all-reduce sizes; print as they end, return the records."""
    ln.check_backend(device, 1, None)  # no NCCL (or gloo) here: one clear line before anything is launched
    train, comm = section_cases(device, quick)
    s = shapes_for(device, quick)
    backend = backend_for(device)
    where = ", the rank on cuda:LOCAL_RANK" if device.type == "cuda" else ""
    print(f"## parallel: {s.preset} train B={s.batch}/rank T={s.seq_len} {s.dtype}, single vs ddp at world size 1 "
          f"({backend}; each case one rank started by torch.distributed's elastic launcher{where}); "
          "[ref] = ../shared/GPU-REFERENCE.md")
    print(TRAIN_HEADER)
    records: list[Record] = []

    def show_train(rec: Record) -> None:
        records.append(rec)
        print(train_row(rec), flush=True)

    train_records = _run(train, POLICY, threads, True, show_train)
    for line in ratio_lines(train_records):
        print(line)
    bucket = next(c.params["bucket_mb"] for c in train if c.variant == "ddp")
    print(f"single: the plain module on one device, no process-group traffic; ddp: DistributedDataParallel "
          f"(bucket {bucket} MiB) on a group of 1; tokens/s = B · T / step time")

    print(f"\nall_reduce at world size 1 ({backend}, float32, in place), nccl-tests convention: algbw = message bytes "
          f"/ time, busbw = algbw · 2(n-1)/n")
    print(COMM_HEADER)

    def show_comm(rec: Record) -> None:
        records.append(rec)
        print(comm_row(rec), flush=True)

    comm_records = _run(comm, COMM_POLICY, threads, False, show_comm)
    print("busbw is 0 at world size 1 by the formula (2(n-1)/n = 0: one rank sends nothing to a peer), not a "
          "measured zero; algbw there is the message over the call's own cost on one device (launch, and a pass "
          "over the buffer at most), not a link bandwidth")
    notes = sorted({r.info["backend_note"] for r in comm_records if r.status == "ok" and "backend_note" in r.info})
    for note in notes:
        print(f"note: {note}")
    print(_status(records))
    return records


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--quick", action="store_true", help="three message sizes on CUDA; tiny shapes on CPU")
    ap.add_argument("--threads", type=int, default=None, help="torch threads per rank [default: cores / ranks]")
    args = ap.parse_args()
    device = resolve_device(args.device)
    t0 = time.perf_counter()
    parallel_section(device, args.threads, args.quick)
    print(f"(parallel: {time.perf_counter() - t0:.1f} s, estimate ~{estimate_s(device, args.quick):.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
