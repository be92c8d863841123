"""GPU check, model section: GPT-2 124M and 350M train (bf16 autocast, eager and
torch.compile), prefill, and decode (eager and CUDA graphs), with MFU against the spec
sheet (and the calibrated peak when the sweep has one) and decode time over its
bandwidth floor.

bench/gpu_check.py calls `model_section(ctx.device, ctx.opts, ctx.quick)`; standalone:
`python bench/gpu_model_section.py` (about 2-3 min on an H100: the two train compiles
dominate), or `--device cpu --quick` as a smoke test (tiny presets, no compile).
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from xfbench.profilers.device import resolve_device
from xfbench.profilers.specs import lookup_spec
from xfbench.profilers.timer import TimerPolicy
from xfbench.reports.schema import Record
from xfbench.workloads.model import ModelConfig, cases
from xfbench.workloads.runner import RunOptions, run_cases

GPU_PRESETS = ["124M", "350M"]
CPU_PRESETS = ["1M", "10M"]
# Short caps: each cell is a throughput figure, not a paper-grade measurement.
POLICY = TimerPolicy(target_ci_rel=0.02, max_time_s=1.0, warmup_max_s=1.0)


def model_cases(device: torch.device, quick: bool) -> list:
    """Train with compile beside eager; prefill; decode eager and with CUDA graphs."""
    cuda = device.type == "cuda"
    presets = GPU_PRESETS[:1] if cuda and quick else GPU_PRESETS if cuda else CPU_PRESETS
    shape = dict(batch=8, seq_len=1024, prompt_len=512, new_tokens=512) if cuda else dict(batch=2, seq_len=64)
    train = ModelConfig(presets=presets, modes=["train"], dtype="auto", **shape)
    # torch.compile of the smallest model only: each compile costs 20-40 s of the time budget.
    compiled = ModelConfig(presets=presets[:1], modes=["train"], dtype="auto", compile=cuda or not quick, **shape)
    infer = ModelConfig(presets=presets, modes=["prefill", "decode"], dtype="auto", cuda_graphs=True, **shape)
    return (
        cases(train, device)
        + [c for c in cases(compiled, device) if c.variant == "compile"]
        + cases(infer, device)
    )


def _spec_mfu(rec: Record, spec) -> float | None:
    """The record's mfu_spec, else achieved FLOP/s over the datasheet peak of its dtype."""
    if rec.metrics.get("mfu_spec") is not None:
        return rec.metrics["mfu_spec"]
    peak = spec.flop_per_s.get(rec.info.get("dtype")) if spec else None
    fps = rec.metrics.get("flop_per_s")
    return fps / peak if fps and peak else None


def _over_floor(rec: Record, spec) -> float | None:
    """Decode time over its floor: the record's time_over_floor (measured bandwidth), else
    the datasheet bandwidth's floor (bytes of weights + KV cache per step / bandwidth)."""
    if rec.metrics.get("time_over_floor") is not None:
        return rec.metrics["time_over_floor"]
    floor_bytes = rec.info.get("floor_bytes")
    if not floor_bytes or spec is None or not spec.mem_bytes_per_s:
        return None
    return rec.time.median_s / (floor_bytes / spec.mem_bytes_per_s)


def _f(x: float | None, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


def model_row(rec: Record, spec) -> str:
    p = rec.params
    head = f"{p['mode']:7} {rec.variant:11} {p['preset']:>5} {rec.size / 1e6:7.1f}M {p['dtype']:8}"
    if rec.status != "ok":
        return f"{head}  {rec.status:7} {(rec.reason or '')[:100]}"
    m, info = rec.metrics, rec.info
    mem = rec.memory.peak_bytes if rec.memory is not None else None
    ana = info.get("mem_analytic_step_bytes")
    notes = []
    if "compile_s" in info:
        notes.append(f"compile {info['compile_s']:.0f}s")
    if info.get("recompiles_in_timed_loop"):
        notes.append(f"RECOMPILED x{info['recompiles_in_timed_loop']}")
    if not rec.time.converged:
        notes.append("!conv")
    notes += rec.warnings
    floor = _over_floor(rec, spec) if p["mode"] == "decode" else None
    return (
        f"{head}  {rec.time.median_s * 1e3:9.3f} {(m.get('tokens_per_s') or 0) / 1e3:9.1f} "
        f"{(m.get('flop_per_s') or 0) / 1e12:7.1f} {_f(_spec_mfu(rec, spec), '7.1%'):>7} "
        f"{_f(m.get('mfu_measured'), '7.1%'):>7} {_f(floor, '6.2f'):>6} "
        f"{_f(mem / 2**30 if mem is not None else None, '7.2f'):>7} {_f(ana / 2**30 if ana else None, '7.2f'):>7}  "
        f"{' '.join(notes)}"
    )


def model_section(device: torch.device, opts: RunOptions | None = None, quick: bool = False) -> list[Record]:
    """Run the model cells, print one line each, return the records."""
    opts = opts or RunOptions(policy=POLICY)
    spec = lookup_spec(torch.cuda.get_device_name(device)) if device.type == "cuda" else None
    todo = model_cases(device, quick)
    print(f"## model: {len(todo)} cells; spec sheet: {spec.name if spec else 'none'}")
    print(
        f"{'mode':7} {'variant':11} {'model':>5} {'params':>8} {'dtype':8}  {'ms/call':>9} {'ktok/s':>9} "
        f"{'TF/s':>7} {'MFUspec':>7} {'MFUmeas':>7} {'xfloor':>6} {'peakGiB':>7} {'anaGiB':>7}  notes"
    )
    records: list[Record] = []

    def show(rec: Record) -> None:
        records.append(rec)
        print(model_row(rec, spec))
        sys.stdout.flush()

    run_cases(todo, show, opts)
    counts = {s: sum(r.status == s for r in records) for s in ("ok", "skipped", "oom", "error")}
    print("status: " + "  ".join(f"{k}={v}" for k, v in counts.items()))
    print("decode: one call = one token for the whole batch from a static KV cache of P+M positions; "
          "xfloor = time / ((weights + KV cache bytes) / bandwidth)")
    return records


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--quick", action="store_true", help="124M only on CUDA; tiny presets and no compile on CPU")
    args = ap.parse_args()
    t0 = time.perf_counter()
    model_section(resolve_device(args.device), quick=args.quick)
    print(f"(model: {time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
