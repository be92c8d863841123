"""GPU check, model section: GPT-2 124M and 350M at the shapes of ../shared/GPU-REFERENCE.md, beside its figures.

Train B=16 T=1024 (bf16 autocast; 124M and 350M eager, 124M torch.compile), prefill of one
512-token prompt, and decode of 128 tokens after a 512-token prompt at B=1 and B=16 (eager
and CUDA graphs). Each measured figure is followed by the reference's, in brackets, where the
reference has one (one H200, plain PyTorch; an H100 has the same compute ceilings and ~0.7x
the bandwidth). MFU is against the spec sheet (989 TF/s bf16 dense on H100/H200 SXM, as the
reference) and the calibrated peak when the sweep has one.

bench/gpu_check.py calls `model_section(ctx.device, ctx.opts, ctx.quick)`; standalone:
`python bench/gpu_model_section.py` (about 1.5 min on an H200: the compile dominates), or
`--device cpu --quick` as a smoke test (tiny presets and shapes, no compile).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, replace

import torch

from xfbench.profilers.device import resolve_device
from xfbench.profilers.specs import lookup_spec
from xfbench.profilers.timer import TimerPolicy
from xfbench.reports.schema import Record
from xfbench.workloads.model import ModelConfig, cases
from xfbench.workloads.runner import RunOptions, run_cases

# Short caps: each cell is a throughput figure against a reference, not a paper-grade measurement.
POLICY = TimerPolicy(target_ci_rel=0.02, max_time_s=1.0, warmup_max_s=1.0)


@dataclass(frozen=True)
class Shapes:
    """The model cells' shapes: train B x T; prefill of one P-token prompt; decode of M tokens after P."""

    presets: list[str]
    train_batch: int
    seq_len: int  # T of train
    prompt_len: int  # P of prefill and decode
    new_tokens: int  # M of decode
    decode_batches: tuple[int, int]  # (small, large); the large batch runs the smallest model only


# The reference's shapes on CUDA; tiny ones for the CPU smoke test.
GPU_SHAPES = Shapes(["124M", "350M"], 16, 1024, 512, 128, (1, 16))
CPU_SHAPES = Shapes(["1M", "10M"], 2, 64, 32, 16, (1, 4))


@dataclass(frozen=True)
class Ref:
    """Figures of ../shared/GPU-REFERENCE.md for one cell (None: the reference has none)."""

    ms: float | None = None  # per call: one train step, one decode step
    ktok_s: float | None = None
    mfu: float | None = None  # against 989 TF/s, 6N + 12*L*d*T FLOPs per token
    floor_ms: float | None = None  # (weights + whole KV cache) / REF_COPY_BYTES_PER_S
    peak_gib: float | None = None
    mj_per_token: float | None = None


# The reference's decode floors divide by its copy bandwidth (bytes read + written), so the
# bytes xfbench books per step are set against them over that same bandwidth; xfbench's own
# floor (and xfloor) divides by the calibrated *read* bandwidth, the same kind of traffic.
REF_COPY_BYTES_PER_S = 4.2e12

# (mode, variant, preset, batch) -> reference, at GPU_SHAPES' T, P and M. Decode: the table of
# the CUDA-graph runs (static KV cache of P+M positions, as xfbench's decode step).
REFERENCE = {
    ("train", "eager", "124M", 16): Ref(ms=47.6, mfu=0.30, peak_gib=16.1, mj_per_token=1.9),
    ("train", "eager", "350M", 16): Ref(ms=105, mfu=0.38, peak_gib=27.5, mj_per_token=4.1),
    ("train", "compile", "124M", 16): Ref(mfu=0.34),
    ("prefill", "eager", "124M", 1): Ref(ktok_s=182),
    ("decode", "eager", "124M", 1): Ref(ms=5.16, floor_ms=0.065),
    ("decode", "cuda-graphs", "124M", 1): Ref(ms=0.62, floor_ms=0.065),
    ("decode", "eager", "124M", 16): Ref(ms=4.42, floor_ms=0.149),
    ("decode", "cuda-graphs", "124M", 16): Ref(ms=0.70, floor_ms=0.149),
    ("decode", "eager", "350M", 1): Ref(ms=6.63, floor_ms=0.184),
    ("decode", "cuda-graphs", "350M", 1): Ref(ms=1.31, floor_ms=0.184),
}
REF_TRAIN_POWER_W = "614-653"  # board power over the reference's train steps
NO_REF = Ref()


def shapes_for(device: torch.device, quick: bool) -> Shapes:
    """The reference's shapes on CUDA (--quick: 124M only), tiny ones on a CPU."""
    s = GPU_SHAPES if device.type == "cuda" else CPU_SHAPES
    return replace(s, presets=s.presets[:1]) if quick else s


def model_cases(device: torch.device, quick: bool) -> list:
    """Train eager (and compiled, smallest model), prefill, decode eager and with CUDA graphs at two batches."""
    cuda = device.type == "cuda"
    s = shapes_for(device, quick)
    small, large = s.decode_batches
    common = dict(dtype="auto", seq_len=s.seq_len, prompt_len=s.prompt_len, new_tokens=s.new_tokens)
    train = ModelConfig(presets=s.presets, modes=["train"], batch=s.train_batch, **common)
    # torch.compile of the smallest model only: a compile costs 20-40 s of the time budget.
    compiled = replace(train, presets=s.presets[:1], compile=True)
    prefill = ModelConfig(presets=s.presets, modes=["prefill"], batch=small, **common)
    decode = ModelConfig(presets=s.presets, modes=["decode"], batch=small, cuda_graphs=True, **common)
    decode_large = replace(decode, presets=s.presets[:1], batch=large)
    return (
        cases(train, device)
        + ([c for c in cases(compiled, device) if c.variant == "compile"] if cuda or not quick else [])
        + cases(prefill, device)
        + cases(decode, device)
        + cases(decode_large, device)
    )


def reference(rec: Record) -> Ref:
    """The reference's figures for a CUDA bf16 cell at the reference's shapes, else NO_REF."""
    p = rec.params
    s = GPU_SHAPES
    shape_ok = p["seq_len"] == (s.seq_len if p["mode"] == "train" else s.prompt_len) and (
        p["mode"] != "decode" or p["new_tokens"] == s.new_tokens
    )
    if not (rec.device.startswith("cuda") and p["dtype"] == "bfloat16" and shape_ok):
        return NO_REF
    return REFERENCE.get((p["mode"], p["variant"], p["preset"], p["batch"]), NO_REF)


def _spec_mfu(rec: Record, spec) -> float | None:
    """The record's mfu_spec, else achieved FLOP/s over the datasheet peak of its dtype."""
    if rec.metrics.get("mfu_spec") is not None:
        return rec.metrics["mfu_spec"]
    peak = spec.flop_per_s.get(rec.info.get("dtype")) if spec else None
    fps = rec.metrics.get("flop_per_s")
    return fps / peak if fps and peak else None


def _num(value: float | None, fmt: str, scale: float = 1.0) -> str:
    return "-" if value is None else format(value * scale, fmt)


def _bytes_over(nbytes: float | None, bytes_per_s: float) -> float | None:
    return None if nbytes is None else nbytes / bytes_per_s


def _pair(value: float | None, ref: float | None, fmt: str, scale: float = 1.0) -> str:
    """'measured [ref]' in one column; '-' for a missing figure."""
    return f"{_num(value, fmt, scale):>8} [{'-' if ref is None else format(ref, 'g')}]".ljust(16)


HEADER = (
    f"{'mode':7} {'variant':11} {'model':>5} {'params':>7} {'B':>2}  {'ms/call [ref]':16} {'ktok/s [ref]':16} "
    f"{'TF/s':>6} {'MFUspec [ref]':16} {'MFUmeas':>7} {'@4.2TB/s [ref]':16} {'xfloor':>6} "
    f"{'peak GiB [ref]':16} {'anaGiB':>6} {'mJ/token [ref]':16} notes"
)


def _notes(rec: Record, ref: Ref) -> list[str]:
    info, tel = rec.info, rec.telemetry or {}
    notes = []
    if "compile_s" in info:
        notes.append(f"compile {info['compile_s']:.0f}s")
    if info.get("recompiles_in_timed_loop"):
        notes.append(f"RECOMPILED x{info['recompiles_in_timed_loop']}")
    if tel.get("power_mean_w") is not None:
        ref_w = f" [{REF_TRAIN_POWER_W}]" if rec.params["mode"] == "train" and ref is not NO_REF else ""
        notes.append(f"{tel['power_mean_w']:.0f} W{ref_w}")
    if not rec.time.converged:
        notes.append("!conv")
    return notes + rec.warnings


def model_row(rec: Record, spec) -> str:
    p = rec.params
    head = f"{p['mode']:7} {rec.variant:11} {p['preset']:>5} {rec.size / 1e6:6.1f}M {p['batch']:>2}"
    if rec.status != "ok":
        return f"{head}  {rec.status:7} {(rec.reason or '')[:100]}"
    m, ref = rec.metrics, reference(rec)
    decode = p["mode"] == "decode"
    mem = rec.memory.peak_bytes if rec.memory is not None else None
    cols = [
        _pair(rec.time.median_s, ref.ms, ".3f", 1e3),
        _pair(m.get("tokens_per_s"), ref.ktok_s, ".1f", 1e-3),
        f"{_num(m.get('flop_per_s'), '.1f', 1e-12):>6}",
        _pair(_spec_mfu(rec, spec), ref.mfu, ".3f"),
        f"{_num(m.get('mfu_measured'), '.3f'):>7}",
        _pair(_bytes_over(m.get("bytes_moved_per_call"), REF_COPY_BYTES_PER_S) if decode else None, ref.floor_ms,
              ".3f", 1e3),
        f"{_num(m.get('time_over_floor') if decode else None, '.2f'):>6}",
        _pair(mem, ref.peak_gib, ".2f", 2**-30),
        f"{_num(rec.info.get('mem_analytic_step_bytes'), '.2f', 2**-30):>6}",
        _pair((rec.telemetry or {}).get("j_per_token"), ref.mj_per_token, ".2f", 1e3),
    ]
    return f"{head}  " + " ".join(cols) + " " + " ".join(_notes(rec, ref))


def model_section(device: torch.device, opts: RunOptions | None = None, quick: bool = False) -> list[Record]:
    """Run the model cells, print one line each as it ends, return the records."""
    opts = opts or RunOptions(policy=POLICY)
    spec = lookup_spec(torch.cuda.get_device_name(device)) if device.type == "cuda" else None
    todo = model_cases(device, quick)
    s = shapes_for(device, quick)
    print(f"## model: {len(todo)} cells; train T={s.seq_len}, prefill P={s.prompt_len}, decode P={s.prompt_len} "
          f"M={s.new_tokens}; spec sheet: {spec.name if spec else 'none'}; [ref] = ../shared/GPU-REFERENCE.md")
    print(HEADER)
    records: list[Record] = []

    def show(rec: Record) -> None:
        records.append(rec)
        print(model_row(rec, spec), flush=True)

    run_cases(todo, show, opts)
    counts = {s: sum(r.status == s for r in records) for s in ("ok", "skipped", "oom", "error")}
    print("status: " + "  ".join(f"{k}={v}" for k, v in counts.items()))
    print("decode: one call = one token for the whole batch from a static KV cache of P+M positions; "
          "@4.2TB/s = (weights + KV cache bytes) / 4.2 TB/s, as the reference's floor (its copy bandwidth); "
          "xfloor = time / (those bytes / the calibrated read bandwidth); reference MFU is against "
          "989 TF/s with 6N + 12*L*d*T FLOPs per token")
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
