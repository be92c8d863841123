"""One pass over every GPU code path of xfbench in one call of under 8 minutes, beside the reference figures.

Sections, in order: hardware (full calibration: matmul per dtype, copy and read bandwidth;
one record's NVML telemetry), model (GPT-2 124M/350M train, prefill, decode), attention
(every SDPA backend, naive and the LSTM at the reference's shapes: bf16, H=16, d=128,
batch*N = 16384 tokens) and parallel (124M train B=16 T=1024 as `single` and as `ddp` at
world size 1, each one rank launched with NCCL as `xfbench parallel` does, and the all-reduce
1 KiB ... 256 MiB at world size 1; estimate ~50 s) and profile (--profile on attention fwd+bwd at
N=8192, flash and math, and a memory snapshot of the 124M train step; bench/gpu_profile_section.py).
Every measured figure is printed beside the one in
../shared/GPU-REFERENCE.md (plain PyTorch on one H200; an H100 has the same compute
ceilings), and each section prints its estimate and its wall time. Failed cells are data,
shown in the tables; exits 1 only when a section crashed, 2 when an import fails (one line).

On a lent GPU machine (no network, maybe a read-only environment): `make gpu-wheels` here,
then `bash bench/gpu_run.sh` there with `.whl` carried: it puts this checkout on PYTHONPATH
as `xfbench` and the wheels in a temp dir (no `pip install -e`), and runs this under a timeout.
Smoke test anywhere: `python bench/gpu_check.py --device cpu --quick --threads 1` (one thread:
on a small shared box, two OpenMP threads racing other processes wait a scheduler tick).
`--only hardware,model,attention,parallel,profile` picks sections.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from dataclasses import dataclass, replace

# Import everything first, so a missing wheel stops the check at once with one clear line,
# not a traceback minutes into the run. numpy, psutil, pynvml and platformdirs are imported
# by xfbench only when first used: checked here too.
try:
    import importlib

    import torch
    from gpu_hw_section import calibration_section, telemetry_section  # siblings in bench/
    from gpu_model_section import POLICY as MODEL_POLICY
    from gpu_model_section import model_cases, model_section
    from gpu_parallel_section import estimate_s as parallel_estimate_s
    from gpu_parallel_section import parallel_section
    from gpu_profile_section import ESTIMATE_S as PROFILE_S
    from gpu_profile_section import profile_section

    from xfbench.profilers.calibrate import to_peaks
    from xfbench.profilers.device import resolve_device
    from xfbench.profilers.timer import TimerPolicy
    from xfbench.reports.schema import Record
    from xfbench.workloads.attention import AttentionConfig, cases
    from xfbench.workloads.runner import RunOptions, run_cases

    for _lazy in ("numpy", "psutil", "pynvml", "platformdirs"):
        importlib.import_module(_lazy)
except Exception as e:  # any failure to import is reported the same way
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    print(f"gpu_check: cannot start, an import failed: {type(e).__name__}: {first} (on a lent GPU machine: "
          "`make gpu-wheels` here, then `bash bench/gpu_run.sh` there with .whl carried)", file=sys.stderr)
    sys.exit(2)

# Reference TF/s (FlashAttention convention), bf16, H=16, d=128, batch*N = 16384 tokens, from
# ../shared/GPU-REFERENCE.md; columns are N = 1024, 4096, 8192, 16384. LSTM: thousands of tokens/s.
REF_NS = (1024, 4096, 8192, 16384)
REF_FWD = {
    "cudnn": (532, 606, 660, 669), "flash": (289, 350, 355, 356), "efficient": (161, 168, 173, 173),
    "math": (24, 25, 24, 26), "naive": (128, 99, 88, 131),
}
REF_FWDBWD = {"cudnn": (373, 548, 558, 546), "flash": (223, 294, 309, 317), "naive": (146, 157, 151, 183)}
REF_CAUSAL_FWD_8192 = {"cudnn": 587, "flash": 314, "efficient": 165, "naive": 25}
REF_LSTM_FWD_KTOK = {1024: 956, 4096: 314, 16384: 63}
# Forward memory beyond q, k, v at N=16384, batch 1 (GiB): the fused backends hold only the output.
REF_MEM_N, REF_MEM_GIB = 16384, {"cudnn": 0.06, "flash": 0.06, "efficient": 0.06, "naive": 16, "math": 36}
REF_TOKENS, REF_HEADS, REF_HEAD_DIM = 16384, 16, 128
# sdpa auto is compared against the backend its dispatcher picked (info['sdpa_backend']).
AUTO_TO_IMPL = {"flash_attention": "flash", "efficient_attention": "efficient", "cudnn_attention": "cudnn"}

FUSED = ["flash", "efficient", "cudnn"]
ATTN_IMPLS = [*FUSED, "math", "sdpa", "naive"]

# Section estimates. The reference's slowest call (LSTM fwd+bwd at N=8192) is well under a
# second, so the timer caps, not the kernels, bound a cell: warm-up cap + timed cap + CELL_EXTRA_S.
CELL_EXTRA_S = 0.5  # set-up, the memory pass, teardown
TELEMETRY_WINDOW_S = 1.0  # a cell with telemetry extends its window to the NVML energy counter's resolution
COMPILE_S = 40.0  # torch.compile of a GPT train step (reference: 20 s at 124M, 39 s at 354M)
HARDWARE_S = 35.0  # full calibration (4 dtypes x <= 4 s, 2 bandwidths x <= 2 s) and one telemetry cell


@dataclass(frozen=True)
class Sizes:
    """Shapes of the attention section: batch = tokens // N keeps the work per call comparable."""

    seq_lens: list[int]
    causal_n: int  # causal cells run at this N only
    mem_n: int  # fwd memory cells (fused, math, naive) at batch 1
    tokens: int
    heads: int
    head_dim: int


def sizes_for(device: torch.device, quick: bool) -> Sizes:
    if device.type == "cuda":
        if quick:
            return Sizes([1024], 1024, 4096, REF_TOKENS, REF_HEADS, REF_HEAD_DIM)
        return Sizes([1024, 4096, 8192], 8192, REF_MEM_N, REF_TOKENS, REF_HEADS, REF_HEAD_DIM)
    if quick:
        return Sizes([64, 128], 128, 256, 256, 2, 16)
    return Sizes([256, 512, 1024], 1024, 2048, 2048, 8, 64)


@dataclass
class Ctx:
    device: torch.device
    quick: bool
    opts: RunOptions


def reference(rec: Record) -> tuple[float, str] | None:
    """(reference value, unit) for a cell whose shape matches the reference runs, else None."""
    p = rec.params
    shape_ok = p["dtype"] == "bfloat16" and p["heads"] == REF_HEADS and p["head_dim"] == REF_HEAD_DIM
    if not (rec.device.startswith("cuda") and shape_ok and p["batch"] * p["seq_len"] == REF_TOKENS):
        return None
    impl, n, mode = p["impl"], p["seq_len"], p["mode"]
    if impl == "sdpa":
        impl = AUTO_TO_IMPL.get(str(rec.info.get("sdpa_backend", "")).split("-> ")[-1], "?")
    if impl == "lstm":
        ref = REF_LSTM_FWD_KTOK.get(n) if mode == "fwd" else None
        return (ref, "ktok/s") if ref else None
    if p["causal"]:
        ref = REF_CAUSAL_FWD_8192.get(impl) if (mode, n) == ("fwd", 8192) else None
    else:
        table = REF_FWD if mode == "fwd" else REF_FWDBWD
        ref = table[impl][REF_NS.index(n)] if impl in table and n in REF_NS else None
    return (ref, "TF/s") if ref else None


def reference_mem_gib(rec: Record) -> float | None:
    p = rec.params
    shape_ok = p["dtype"] == "bfloat16" and p["heads"] == REF_HEADS and p["head_dim"] == REF_HEAD_DIM
    match = (p["mode"], p["causal"], p["seq_len"], p["batch"]) == ("fwd", False, REF_MEM_N, 1)
    return REF_MEM_GIB.get(p["impl"]) if rec.device.startswith("cuda") and shape_ok and match else None


def fmt_gib(b: int | None) -> str:
    if b is None:
        return "-"
    return f"{b / 2**30:.2f} GiB" if b >= 2**28 else f"{b / 2**20:.1f} MiB"


def attention_row(rec: Record) -> str:
    p = rec.params
    head = f"{p['mode']:6} {'causal' if p['causal'] else 'full':6} {p['impl']:9} {p['seq_len']:>6} {p['batch']:>3}"
    if rec.status != "ok":
        return f"{head}  {rec.status:7} {(rec.reason or '')[:90]}"
    m = rec.metrics
    tf = (m["flop_per_s"] or 0) / 1e12
    value = {"TF/s": tf, "ktok/s": (m["tokens_per_s"] or 0) / 1e3}
    ref = reference(rec)
    ref_s = f"{ref[0]:>6g} {ref[1]:6} {value[ref[1]] / ref[0]:5.2f}" if ref else f"{'-':>6} {'':6} {'-':>5}"
    ref_mem = reference_mem_gib(rec)
    conv = "" if rec.time.converged else " !conv"
    note = rec.info.get("sdpa_backend", "") + conv + (" " + ",".join(rec.warnings) if rec.warnings else "")
    return (
        f"{head}  {rec.time.median_s * 1e3:9.3f} {tf:8.2f} {value['ktok/s']:9.1f}  {ref_s}  "
        f"{fmt_gib(m['peak_mem_bytes']):>10} {'-' if ref_mem is None else f'{ref_mem:g} GiB':>9}  {note}"
    )


def attention_cases(ctx: Ctx) -> list:
    """Every pinned backend, auto, naive and lstm; fwd and fwdbwd; causal at one N; fwd memory at a long N."""
    s = sizes_for(ctx.device, ctx.quick)

    def make(n: int, batch: int, impls: list[str], modes: list[str], causal: bool) -> list:
        cfg = AttentionConfig(
            seq_lens=[n], impls=impls, modes=modes, batch=batch, heads=s.heads, head_dim=s.head_dim,
            dtype="auto", causal=causal,
        )
        return cases(cfg, ctx.device)

    out = []
    for mode in ("fwd", "fwdbwd"):
        for n in s.seq_lens:
            out += make(n, max(1, s.tokens // n), [*ATTN_IMPLS, "lstm"], [mode], causal=False)
    out += make(s.causal_n, max(1, s.tokens // s.causal_n), ATTN_IMPLS, ["fwd", "fwdbwd"], causal=True)
    out += make(s.mem_n, 1, [*FUSED, "math", "naive"], ["fwd"], causal=False)
    return out


def cell_s(policy: TimerPolicy) -> float:
    return policy.warmup_max_s + policy.max_time_s + CELL_EXTRA_S


def attention_section(ctx: Ctx) -> None:
    todo = attention_cases(ctx)
    print(f"## attention: {len(todo)} cells, dtype auto ({'bfloat16' if ctx.device.type == 'cuda' else 'float32'})"
          "; ref = ../shared/GPU-REFERENCE.md (TF/s, LSTM ktok/s; memory at N=16384, batch 1)")
    print(
        f"{'mode':6} {'mask':6} {'impl':9} {'N':>6} {'B':>3}  {'median ms':>9} {'TF/s':>8} {'ktok/s':>9}  "
        f"{'ref':>6} {'unit':6} {'ratio':>5}  {'peak mem':>10} {'ref mem':>9}  backend / warnings"
    )
    records: list[Record] = []

    def show(rec: Record) -> None:
        records.append(rec)
        print(attention_row(rec), flush=True)

    run_cases(todo, show, ctx.opts)
    policies = sorted({r.info.get("cache_policy", "") for r in records if r.status == "ok"})
    print("L2 cache policy: " + " | ".join(policies))
    counts = {s: sum(r.status == s for r in records) for s in ("ok", "skipped", "oom", "error")}
    print("status: " + "  ".join(f"{k}={v}" for k, v in counts.items()))


def hardware_section(ctx: Ctx) -> None:
    """Calibrated peaks against the spec sheet and the reference, then one record's NVML telemetry.
    The fresh calibration becomes the peaks of the later sections, so their records carry MFU."""
    # On a CPU smoke test, float32 only: the CPU emulates bf16/fp16 matmuls slowly.
    dtypes = ["float32"] if ctx.device.type == "cpu" and ctx.quick else None
    ctx.opts = replace(ctx.opts, peaks=to_peaks(calibration_section(ctx.device, dtypes)))
    rec = telemetry_section(ctx.device, ctx.opts.peaks)
    ref = reference(rec) if rec.status == "ok" else None
    if ref:
        measured = rec.metrics["flop_per_s"] / 1e12
        print(f"   {'reference':<26} {ref[0]:g} {ref[1]} (../shared/GPU-REFERENCE.md); measured / ref "
              f"{measured / ref[0]:.2f}")


def model_section_cells(ctx: Ctx) -> None:
    # Telemetry on here (energy per token); its >= 1 s NVML window per cell is why attention runs without.
    model_section(ctx.device, replace(ctx.opts, policy=MODEL_POLICY, telemetry=True), ctx.quick)


def model_estimate_s(ctx: Ctx) -> float:
    todo = model_cases(ctx.device, ctx.quick)
    compiled = sum(c.variant == "compile" for c in todo)
    return len(todo) * (cell_s(MODEL_POLICY) + TELEMETRY_WINDOW_S) + compiled * COMPILE_S


def parallel_section_cells(ctx: Ctx) -> None:
    # Its own timer caps (the model section's for the steps, shorter for the collectives), no
    # telemetry, no calibration: what `xfbench parallel` runs. The ranks are spawned processes.
    parallel_section(ctx.device, ctx.opts.threads, ctx.quick)


# name -> (run, estimate in s). Hardware first, so the later sections measure MFU against fresh
# peaks; attention, the section with the most cells, then parallel (short: three one-rank launches).
SECTIONS = {
    "hardware": (hardware_section, lambda ctx: HARDWARE_S),
    "model": (model_section_cells, model_estimate_s),
    "attention": (attention_section, lambda ctx: len(attention_cases(ctx)) * cell_s(ctx.opts.policy)),
    "parallel": (parallel_section_cells, lambda ctx: parallel_estimate_s(ctx.device, ctx.quick)),
    "profile": (lambda ctx: profile_section(ctx.device, ctx.opts, ctx.quick), lambda ctx: PROFILE_S),
}


def describe(device: torch.device) -> str:
    line = f"torch {torch.__version__}  device {device}"
    if device.type == "cuda":
        prop = torch.cuda.get_device_properties(device)
        line += (
            f" = {prop.name} ({prop.multi_processor_count} SMs, {prop.total_memory / 2**30:.1f} GiB, "
            f"L2 {prop.L2_cache_size / 2**20:.0f} MiB)  CUDA {torch.version.cuda}  "
            f"cuDNN {torch.backends.cudnn.version()}"
        )
    return line + f"  threads {torch.get_num_threads()}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu")
    ap.add_argument("--quick", action="store_true", help="smallest sizes only (cpu: tiny shapes)")
    ap.add_argument("--only", default=",".join(SECTIONS), help=f"sections, comma-separated: {', '.join(SECTIONS)}")
    ap.add_argument("--max-time", type=float, default=1.5, help="timer cap per attention cell (s)")
    ap.add_argument("--target-ci", type=float, default=0.02, help="timer CI target per attention cell")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads [default: torch's]")
    args = ap.parse_args()
    names = [n.strip() for n in args.only.split(",")]
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        ap.error(f"unknown section(s) {', '.join(unknown)} (choose from {', '.join(SECTIONS)})")
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    policy = TimerPolicy(target_ci_rel=args.target_ci, max_time_s=args.max_time, warmup_max_s=1.0)
    # Telemetry is checked once in the hardware section and in the model cells; each attention
    # cell would otherwise extend its timed window to the NVML energy counter's ~1 s resolution.
    ctx = Ctx(device, args.quick, RunOptions(policy=policy, threads=args.threads, telemetry=False))
    print(describe(device))
    estimates = {n: SECTIONS[n][1](ctx) for n in names}
    print("estimate: " + ", ".join(f"{n} ~{s:.0f} s" for n, s in estimates.items())
          + f"; total ~{sum(estimates.values()):.0f} s (timer caps bound every cell)\n")
    crashed = []
    t_all = time.perf_counter()
    for name in names:
        t0 = time.perf_counter()
        try:
            SECTIONS[name][0](ctx)
        except Exception:  # one broken section must not hide the others
            traceback.print_exc()
            crashed.append(name)
        print(f"({name}: {time.perf_counter() - t0:.1f} s, estimate ~{estimates[name]:.0f} s)\n", flush=True)
    tail = f"; CRASHED sections: {', '.join(crashed)}" if crashed else ""
    print(f"total {time.perf_counter() - t_all:.1f} s{tail}")
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
