"""GPU check, profile section: what `--profile` and `--memory-snapshot` record on a GPU.

Attention fwd+bwd at N=8192 (bf16, H=16, d=128, batch 2: the reference's 16384 tokens) with the
flash and math backends pinned, each profiled (CUDA activity: the top kernels by self device
time, the compute/communication/memory/idle breakdown, the profiler's overhead against the timed
median, the FLOP cross-check), and the 124M train step (B=16, T=1024) profiled with a memory
snapshot of one step. The run folder (results.jsonl, traces, memory_snapshot.pickle) goes to
$OUT/profile-run when OUT is set (the device tool brings $OUT back), else a temp folder.

bench/gpu_check.py calls `profile_section(ctx.device, ctx.opts, ctx.quick)`; standalone:
`python bench/gpu_profile_section.py` (~40 s on an H200), or `--device cpu --quick` as a smoke
test (tiny shapes; the snapshot is recorded as skipped on CPU).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from xfbench.profilers.device import resolve_device
from xfbench.profilers.timer import TimerPolicy
from xfbench.profilers.torch_profile import ProfileOptions
from xfbench.reports.schema import Record
from xfbench.workloads.attention import AttentionConfig
from xfbench.workloads.attention import cases as attention_cases
from xfbench.workloads.model import ModelConfig
from xfbench.workloads.model import cases as model_cases
from xfbench.workloads.runner import RunOptions, run_plan

POLICY = TimerPolicy(target_ci_rel=0.02, max_time_s=1.0, warmup_max_s=1.0)
ESTIMATE_S = 45.0
TOP = 5


def plan(device: torch.device, quick: bool) -> list:
    cuda = device.type == "cuda"
    n, batch, heads, d = (8192, 2, 16, 128) if cuda else ((128, 1, 2, 16) if quick else (1024, 1, 8, 64))
    impls = ["flash", "math"] if cuda else ["math", "naive"]
    att = AttentionConfig(seq_lens=[n], impls=impls, modes=["fwdbwd"], batch=batch, heads=heads, head_dim=d,
                          dtype="auto")
    preset, b, t = ("124M", 16, 1024) if cuda else ("1M", 2, 64)
    model = ModelConfig(presets=[preset], modes=["train"], batch=b, seq_len=t, dtype="auto")
    return attention_cases(att, device) + model_cases(model, device)


def show(rec: Record, run_dir: Path) -> None:
    print(f"- {rec.label} · {rec.variant} · {rec.size_name}={rec.size}: {rec.status}"
          + (f" ({rec.reason})" if rec.reason else ""))
    p = rec.profile or {}
    if "error" in p:
        print(f"  profile failed: {p['error']}")
    if p.get("ops"):
        over = p.get("overhead_rel")
        over_s = "n/a" if over is None else f"{over:+.1%}"
        print(f"  timed median {p['timed_median_s'] * 1e3:.3f} ms, profiled step {p['step_s'] * 1e3:.3f} ms "
              f"(overhead {over_s}); trace {p['trace']} ({p['trace_bytes'] / 2**20:.1f} MiB)")
        print("  breakdown: " + ", ".join(f"{k} {v:.1%}" for k, v in p["breakdown"].items() if v is not None))
        fw = p.get("flops_over_work")
        print(f"  counted FLOPs / analytic work: {'n/a' if fw is None else f'{fw:.3f}'} ({p['flops_note'][:90]})")
        print(f"  top {TOP} by {p['sort_by']}:")
        for o in p["ops"][:TOP]:
            print(f"    {o['share']:6.1%}  {o['self_s'] * 1e3:8.3f} ms  x{o['calls']:g}  {o['name'][:90]}"
                  f"  [{o['shapes']}]")
    if "memory_snapshot" in p:
        if p["memory_snapshot"]:
            size = (run_dir / p["memory_snapshot"]).stat().st_size
            print(f"  memory snapshot: {p['memory_snapshot']} ({size / 2**20:.1f} MiB, "
                  f"{p.get('memory_snapshot_entries')} entries max)")
        else:
            print(f"  memory snapshot skipped: {p['memory_snapshot_skipped']}")


def profile_section(device: torch.device, opts: RunOptions, quick: bool) -> None:
    out = os.environ.get("OUT")
    run_dir = Path(out) / "profile-run" if out else Path(tempfile.mkdtemp(prefix="xfbench-profile-"))
    todo = plan(device, quick)
    print(f"## profile: {len(todo)} cells -> {run_dir} (attention fwd+bwd per backend, model train + memory snapshot)")
    po = ProfileOptions(trace=True, memory_snapshot=True, wait=1, warmup=1, active=3, top_k=10)
    records = run_plan(todo, run_dir / "results.jsonl", command="gpu_check profile",
                       opts=replace(opts, policy=POLICY, telemetry=False, profile=po))
    for rec in records:
        show(rec, run_dir)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    device = resolve_device(args.device)
    t0 = time.perf_counter()
    profile_section(device, RunOptions(policy=POLICY, telemetry=False, calibrate=False), args.quick)
    print(f"(profile: {time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
