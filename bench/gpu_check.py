"""One pass over every GPU code path of xfbench, in a few minutes, as one compact table per section.

On a lent GPU machine: `make gpu-wheels` here, then `bash bench/gpu_run.sh` there with `.whl`
carried (installs pydantic/platformdirs and xfbench offline, runs this and bench/fidelity.py).
Run on a GPU: `python bench/gpu_check.py` (about 3-4 min on an H100/H200; `--quick` about 2;
`--only hardware,attention,model` picks sections). Smoke test anywhere:
`python bench/gpu_check.py --device cpu --quick --threads 1` (one thread: on a small shared box,
two OpenMP threads racing other processes make every parallel region wait a scheduler tick).
Attention cells are printed next to the reference figures of shared/GPU-REFERENCE.md (plain
PyTorch, one H200; an H100 has the same compute ceilings). Exits 1 only when a section crashed;
failed cells are data, shown in the table.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from dataclasses import dataclass, replace

import torch
from gpu_hw_section import calibration_section, telemetry_section  # siblings in bench/
from gpu_model_section import POLICY as MODEL_POLICY
from gpu_model_section import model_section

from xfbench.profilers.calibrate import CalibrationResult, cache_path, to_peaks
from xfbench.profilers.device import resolve_device
from xfbench.profilers.timer import TimerPolicy
from xfbench.reports.schema import Record
from xfbench.workloads.attention import AttentionConfig, cases
from xfbench.workloads.runner import RunOptions, run_cases

# Reference TF/s (FlashAttention convention), bf16, H=16, d=128, batch*N = 16384 tokens, from
# shared/GPU-REFERENCE.md; columns are N = 1024, 4096, 8192, 16384. LSTM: thousands of tokens/s.
REF_NS = (1024, 4096, 8192, 16384)
REF_FWD = {
    "cudnn": (532, 606, 660, 669), "flash": (289, 350, 355, 356), "efficient": (161, 168, 173, 173),
    "math": (24, 25, 24, 26), "naive": (128, 99, 88, 131),
}
REF_FWDBWD = {"cudnn": (373, 548, 558, 546), "flash": (223, 294, 309, 317), "naive": (146, 157, 151, 183)}
REF_CAUSAL_FWD_8192 = {"cudnn": 587, "flash": 314, "efficient": 165, "naive": 25}
REF_LSTM_FWD_KTOK = {1024: 956, 4096: 314, 16384: 63}
REF_TOKENS, REF_HEADS, REF_HEAD_DIM = 16384, 16, 128
# sdpa auto is compared against the backend its dispatcher picked (info['sdpa_backend']).
AUTO_TO_IMPL = {"flash_attention": "flash", "efficient_attention": "efficient", "cudnn_attention": "cudnn"}

FUSED = ["flash", "efficient", "cudnn"]
ATTN_IMPLS = [*FUSED, "math", "sdpa", "naive"]


@dataclass(frozen=True)
class Sizes:
    """Shapes of the attention section: batch = tokens // N keeps the work per call comparable."""

    seq_lens: list[int]
    causal_n: int  # causal cells run at this N only
    mem_n: int  # fwd memory cells (fused vs naive) at batch 1
    tokens: int
    heads: int
    head_dim: int


def sizes_for(device: torch.device, quick: bool) -> Sizes:
    if device.type == "cuda":
        if quick:
            return Sizes([1024], 1024, 4096, 16384, 16, 128)
        return Sizes([1024, 4096, 8192], 8192, 16384, 16384, 16, 128)
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


def fmt_bytes(b: int | None) -> str:
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
    conv = "" if rec.time.converged else " !conv"
    note = rec.info.get("sdpa_backend", "") + conv + (" " + ",".join(rec.warnings) if rec.warnings else "")
    return (
        f"{head}  {rec.time.median_s * 1e3:9.3f} {tf:8.2f} {value['ktok/s']:9.1f}  {ref_s}  "
        f"{fmt_bytes(m['peak_mem_bytes']):>10}  {note}"
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
    out += make(s.mem_n, 1, [*FUSED, "naive"], ["fwd"], causal=False)
    return out


def attention_section(ctx: Ctx) -> None:
    todo = attention_cases(ctx)
    print(f"## attention: {len(todo)} cells, dtype auto ({'bfloat16' if ctx.device.type == 'cuda' else 'float32'})")
    print(
        f"{'mode':6} {'mask':6} {'impl':9} {'N':>6} {'B':>3}  {'median ms':>9} {'TF/s':>8} {'ktok/s':>9}  "
        f"{'ref':>6} {'unit':6} {'ratio':>5}  {'peak mem':>10}  backend / warnings"
    )
    records: list[Record] = []
    run_cases(todo, records.append, ctx.opts)
    for rec in records:
        print(attention_row(rec))
        sys.stdout.flush()
    policies = sorted({r.info.get("cache_policy", "") for r in records if r.status == "ok"})
    print("L2 cache policy: " + " | ".join(policies))
    counts = {s: sum(r.status == s for r in records) for s in ("ok", "skipped", "oom", "error")}
    print("status: " + "  ".join(f"{k}={v}" for k, v in counts.items()))


def hardware_section(ctx: Ctx) -> None:
    """Calibrated peaks against the spec sheet, then one record's NVML telemetry. The fresh
    calibration becomes the peaks of the later sections, so their records carry MFU."""
    cal = calibration_section(ctx.device)
    ctx.opts = replace(ctx.opts, peaks=to_peaks(CalibrationResult(cal, cache_path(cal.key), reused=False)))
    telemetry_section(ctx.device, cal)


def model_section_cells(ctx: Ctx) -> None:
    # Telemetry on here (energy per token); its >= 1 s NVML window per cell is why attention runs without.
    model_section(ctx.device, replace(ctx.opts, policy=MODEL_POLICY, telemetry=True), ctx.quick)


# Order matters: hardware first, so attention and model measure MFU against fresh peaks.
SECTIONS = {"hardware": hardware_section, "attention": attention_section, "model": model_section_cells}


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
    ap.add_argument("--max-time", type=float, default=1.5, help="timer cap per cell (s)")
    ap.add_argument("--target-ci", type=float, default=0.02, help="timer CI target per cell")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads [default: torch's]")
    args = ap.parse_args()
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    policy = TimerPolicy(target_ci_rel=args.target_ci, max_time_s=args.max_time, warmup_max_s=1.0)
    # Telemetry is checked once in the hardware section and in the model cells; each attention
    # cell would otherwise extend its timed window to the NVML energy counter's ~1 s resolution.
    opts = RunOptions(policy=policy, threads=args.threads, measure_memory=True, telemetry=False)
    ctx = Ctx(device, args.quick, opts)
    print(describe(device))
    crashed = []
    t_all = time.perf_counter()
    for name in args.only.split(","):
        t0 = time.perf_counter()
        try:
            SECTIONS[name.strip()](ctx)
        except Exception:  # one broken section must not hide the others
            traceback.print_exc()
            crashed.append(name)
        print(f"({name}: {time.perf_counter() - t0:.1f} s)\n")
    tail = f"; CRASHED sections: {', '.join(crashed)}" if crashed else ""
    print(f"total {time.perf_counter() - t_all:.1f} s{tail}")
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
