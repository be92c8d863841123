"""GPU check, hardware section: calibrated peaks beside the spec sheet and the reference; one record's telemetry.

Two functions for bench/gpu_check.py to call (each prints, and returns what it measured):
  calibration_section(device)  dense matmul peak per dtype (bf16 first; fp16, tf32, fp32) and
                               copy and read bandwidth, measured fresh (full level),
                               beside the spec sheet and the reference figures of
                               ../shared/GPU-REFERENCE.md (one H200: 749/721/394/50 TF/s, copy 4.2 TB/s)
  telemetry_section(device)    one real attention record (sdpa fwd, bf16 on CUDA) with NVML
                               energy, power, clocks, throttle reasons and the four GPU memory
                               figures; on a CPU every field is None with the reason
Standalone: `python bench/gpu_hw_section.py [--device cuda]`.
"""

from __future__ import annotations

import argparse
import sys

import torch

from xfbench.profilers.calibrate import default_dtypes, load_or_calibrate, to_peaks
from xfbench.profilers.calibration_cache import CalibrationResult
from xfbench.profilers.device import resolve_device
from xfbench.profilers.roofline import Peaks
from xfbench.profilers.timer import TimerPolicy
from xfbench.reports.schema import Record
from xfbench.reports.units import fmt_bytes, fmt_energy, fmt_flops, fmt_rate, fmt_time
from xfbench.workloads.attention import AttentionConfig, cases
from xfbench.workloads.runner import RunOptions, run_cases

# Order of the rows: the headline (bf16 against its spec sheet) first.
ROW_ORDER = ("bfloat16", "float16", "tf32", "float32")
# ../shared/GPU-REFERENCE.md, one H200 with plain PyTorch: best GEMM rate per dtype (FLOP/s) and
# device copy bandwidth counting bytes read + written (B/s). The read bandwidth has no reference.
REF_MATMUL = {"bfloat16": 749e12, "float16": 721e12, "tf32": 394e12, "float32": 50e12}
REF_BANDWIDTH = {"copy": 4.2e12}
BANDWIDTH_ORDER = ("copy", "read")
BANDWIDTH_HOW = {"copy": "one half of a buffer into the other, read + write counted", "read": "sum over a buffer"}


def _device(device: str | torch.device) -> torch.device:
    return device if isinstance(device, torch.device) else resolve_device(device)


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a and b else "-"


def calibration_section(device: str | torch.device = "auto", dtypes: list[str] | None = None) -> CalibrationResult:
    """Measure (afresh, into the cache) and print the peaks of `device`; returns the result.

    `dtypes`: the matmul dtypes to measure (default: every one the device has, bf16 first).
    """
    dev = _device(device)
    dtypes = dtypes or [d for d in ROW_ORDER if d in default_dtypes(dev)]
    res = load_or_calibrate(dev, dtypes=dtypes, level="full", recalibrate=True)
    cal, cuda = res.calibration, dev.type == "cuda"
    peaks = to_peaks(res)
    spec = peaks.spec
    print(f"== calibration: {cal.device} {cal.device_name}, {cal.threads} threads, clock {cal.clock}, "
          f"{res.elapsed_s:.1f} s")
    print(f"   spec: {peaks.spec_status()}; ref: ../shared/GPU-REFERENCE.md (one H200)")
    print(f"   {'figure':<10} {'measured':>14} {'best n':>7} {'spec (dense)':>14} {'meas/spec':>9} "
          f"{'ref':>14} {'meas/ref':>8}  per size")
    for d in ROW_ORDER:
        m = cal.matmul.get(d)
        if m is None:
            continue
        s = spec.flop_per_s.get(d) if spec else None
        ref = REF_MATMUL[d] if cuda else None
        sizes = ", ".join(f"{n}: {fmt_flops(v)}" for n, v in m.by_size.items())
        skipped = f" (skipped: {'; '.join(m.skipped)})" if m.skipped else ""
        print(f"   {d:<10} {fmt_flops(m.flop_per_s):>14} {m.best_size or '-':>7} "
              f"{fmt_flops(s) if s else '-':>14} {_ratio(m.flop_per_s, s):>9} "
              f"{fmt_flops(ref) if ref else '-':>14} {_ratio(m.flop_per_s, ref):>8}  {sizes}{skipped}")
    spec_bw = spec.mem_bytes_per_s if spec else None
    for kind in BANDWIDTH_ORDER:
        b = cal.bandwidth.get(kind)
        value = b.bytes_per_s if b else None
        ref = REF_BANDWIDTH.get(kind) if cuda else None
        how = f"{BANDWIDTH_HOW[kind]}, {fmt_bytes(b.buffer_bytes)} per call" if b else "not measured"
        print(f"   {kind:<10} {fmt_rate(value, 'B') if value else 'n/a':>14} {'':>7} "
              f"{fmt_rate(spec_bw, 'B') if spec_bw else '-':>14} {_ratio(value, spec_bw):>9} "
              f"{fmt_rate(ref, 'B') if ref else 'n/a':>14} {_ratio(value, ref):>8}  {how}")
    if cal.cpu_other_busy_cores is not None:
        print(f"   other processes kept {cal.cpu_other_busy_cores:.2f} CPU cores busy meanwhile")
    for note in res.notes:
        print(f"   note: {note}")
    return res


def telemetry_section(device: str | torch.device = "auto", peaks: Peaks | None = None) -> Record:
    """Run one real attention case with telemetry (and the idle baseline on CUDA); print and return its record."""
    dev = _device(device)
    cuda = dev.type == "cuda"
    n, batch, heads, head_dim = (4096, 4, 16, 128) if cuda else (256, 1, 2, 16)
    cfg = AttentionConfig(seq_lens=[n], impls=["sdpa"], batch=batch, heads=heads, head_dim=head_dim)
    opts = RunOptions(policy=TimerPolicy(max_time_s=2.0), measure_memory=True, peaks=peaks, idle_baseline=cuda)
    (rec,) = run_cases(cases(cfg, dev), lambda r: None, opts)
    print(f"== telemetry: {rec.label} · {rec.variant} · N={n} on {rec.device}: {rec.status}"
          + (f" ({rec.reason})" if rec.reason else ""))
    if rec.status != "ok":
        return rec
    t, m = rec.telemetry or {}, rec.metrics

    def show(label: str, value: str) -> None:
        print(f"   {label:<26} {value}")

    def num(x, fmt="{:.4g}") -> str:
        return "None" if x is None else fmt.format(x)

    show("time / call", f"{fmt_time(rec.time.median_s)} ±{100 * rec.time.ci_rel:.1f}%  {fmt_flops(m['flop_per_s'])}")
    show("MFU measured / spec", f"{num(m.get('mfu_measured'), '{:.3f}')} / {num(m.get('mfu_spec'), '{:.3f}')}"
         f"  ({rec.info.get('peak_dtype')}; {rec.info.get('peak_spec_source')})")
    show("intensity / bound", f"{num(m.get('arithmetic_intensity'))} FLOP/B, {m.get('bound')}, "
         f"{num(m.get('time_over_floor'), '{:.2f}')}x the bandwidth floor")
    if not t.get("available"):
        show("telemetry", f"unavailable: {t.get('reason')}")
        show("energy_j", f"None ({t.get('energy_reason')})")
        return rec
    show("window", f"{t['window_s']:.2f} s, {t['calls']} calls ({t['extra_calls']} added to reach the energy "
         f"window), {t['samples']} samples every {t['interval_s'] * 1e3:g} ms")
    show("energy", f"{fmt_energy(t['energy_j'])} ({t['energy_method'] or t['energy_reason']}); "
         f"power integral {fmt_energy(t['energy_power_integral_j'])}")
    show("energy / token", f"{fmt_energy(t['j_per_token'])}/token, {num(t['tokens_per_j'])} tokens/J")
    if t.get("idle_power_w") is not None:
        show("idle baseline", f"{t['idle_power_w']:.1f} W ({t.get('idle_method')}); net "
             f"{fmt_energy(t.get('energy_net_j'))}, {fmt_energy(t.get('j_per_token_net'))}/token")
    else:
        show("idle baseline", f"None ({t.get('idle_method')})")
    show("power mean / max / limit", f"{num(t['power_mean_w'])} / {num(t['power_max_w'])} / "
         f"{num(t.get('power_limit_w'))} W")
    show("SM clock min / max", f"{num(t['sm_clock_min_mhz'])} / {num(t['sm_clock_max_mhz'])} MHz, "
         f"mem min {num(t['mem_clock_min_mhz'])} MHz")
    show("temperature max", f"{num(t['temperature_max_c'])} °C; util gpu {num(t['util_gpu_mean_pct'])}%, "
         f"mem {num(t['util_mem_mean_pct'])}%")
    show("clocks event reasons", f"{t['clocks_event_reasons']}; throttling: {t['throttle_reasons'] or 'none'}")
    show("other GPU processes", str(t["other_processes"]))
    g = t.get("gpu_memory") or {}
    show("GPU memory", f"torch allocated {fmt_bytes(g.get('torch_allocated_bytes'))} · torch reserved "
         f"{fmt_bytes(g.get('torch_reserved_bytes'))} · NVML this process {fmt_bytes(g.get('nvml_process_used_bytes'))}"
         f" · NVML device {fmt_bytes(g.get('nvml_device_used_bytes'))}" + (f" ({g['note']})" if g.get("note") else ""))
    if t.get("unsupported"):
        show("unsupported queries", str(t["unsupported"]))
    show("warnings", ", ".join(rec.warnings) or "none")
    return rec


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    telemetry_section(args.device, to_peaks(calibration_section(args.device)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
