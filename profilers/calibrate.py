"""Measured peaks of this machine: dense matmul FLOP/s per dtype, read and copy bandwidth.

MFU and rooflines divide by these, never by a constant. Each figure is timed with the
same adaptive timer as every workload (measure_time + make_clock: CUDA events on GPU),
at the torch thread count the sweep will use. The figures are cached per machine
(profilers.calibration_cache); peaks_for() is what a sweep calls: it measures only the
figures the sweep needs that the cache lacks, at the 'quick' level unless asked for 'full'.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch

from ..reports.units import fmt_bytes, fmt_time
from .calibration_cache import (
    BANDWIDTHS,
    Bandwidth,
    Calibration,
    CalibrationResult,
    Level,
    MatmulPeak,
    cache_path,
    calibration_key,
    device_name,
    load_cached,
    make_cache_dir,
    now_utc,
    save,
    to_measure,
)
from .contention import CpuWindow, usable_cores
from .device import cache_name, last_level_cache_bytes, synchronize
from .roofline import TRAFFIC_BANDWIDTH, Peaks, bandwidth_kind, compute_key
from .specs import MIG_NO_SPEC, is_mig_name, lookup_spec
from .timer import TimerPolicy, make_clock, measure_time
from .warnings import oversubscribed

# Compute dtype keys. 'tf32' is float32 storage with TF32 tensor-core math (CUDA only).
TORCH_DTYPES = {"float32": torch.float32, "tf32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
CPU_DTYPES = ("float32", "bfloat16", "float16")
CUDA_DTYPES = ("bfloat16", "float16", "tf32", "float32")

# Square sizes tried per dtype, smallest first; the peak is the best rate (fastest window) over them
# (one size can sit on a bad tile shape or be too small to fill the machine).
CPU_SIZES = (512, 1024, 2048)  # ~0.1 s per 2048 fp32 call on two AVX-512 cores
CUDA_SIZES = (4096, 8192, 16384)
# The quick level (a sweep's first run) tries fewer: on two cores fp32 at 1024 is within a
# few % of 2048. 512 comes first to predict the cost of 1024: a dtype the CPU emulates runs
# 100x slower, and is then skipped at 1024 instead of taking seconds.
CPU_QUICK_SIZES = (512, 1024)
CUDA_QUICK_SIZES = (8192,)
# A size whose per-call time, extrapolated (n^3) from the previous size, exceeds this is
# skipped: bf16/fp16 without native CPU support run 100x slower, and must stay bounded.
MAX_CALL_S = 1.0
# ... and so is one that would take the time spent on its dtype past this budget
# (a size costs about SIZE_COST_CALLS calls: warm-up plus the fewest timed windows).
DTYPE_BUDGET_S = {"quick": 1.0, "full": 4.0}
SIZE_COST_CALLS = 6
# Inputs of one size may take at most this fraction of free device memory.
CUDA_MEM_FRACTION = 0.5

# Bandwidth: one buffer streamed per call, spanning at least BANDWIDTH_CACHE_SPAN times the
# last-level cache (CPU LLC from sysfs, GPU L2), so a cyclic stream misses in an LRU-like
# cache on every line (STREAM asks for 4x per array; 2x keeps a quick calibration under a
# second where the VM reports a 480 MiB L3, and measured the same rate as 4x there). 'read'
# reduces it (CPU: torch.dot(x, x), BLAS sdot, which streams as fast as the matrix-vector
# products of a decode step and ~10% faster than torch.sum's cascade summation on two cores;
# CUDA: torch.sum, whose reduction kernel reads near the HBM peak); 'copy' copies its first
# half into its second.
BANDWIDTH_CACHE_SPAN = 2
CPU_BANDWIDTH_BYTES = 512 * 2**20  # at least this much (also where the cache size is unknown)
CUDA_BANDWIDTH_BYTES = 2 * 2**30
CPU_MEM_FRACTION = 0.25  # of available RAM the buffer may take

# Stopping rules for each figure: a tight CI, but a short cap so a full calibration on a
# CPU stays within seconds. The quick level caps each figure at ~0.1 s, with one warm-up call
# at least (the bandwidth buffer is already written once, so its pages are faulted in).
CALIBRATION_POLICY = TimerPolicy(
    target_ci_rel=0.01, max_time_s=1.0, min_samples=6, min_window_s=0.02, warmup_min_s=0.1, warmup_max_s=1.0
)
QUICK_POLICY = TimerPolicy(
    target_ci_rel=0.02, max_time_s=0.1, min_samples=6, min_window_s=0.005, warmup_min_s=0.02, warmup_max_s=0.03,
    warmup_min_calls=1,
)
POLICIES = {"quick": QUICK_POLICY, "full": CALIBRATION_POLICY}


def default_dtypes(device: torch.device) -> tuple[str, ...]:
    return CUDA_DTYPES if device.type == "cuda" else CPU_DTYPES


def level_sizes(device: torch.device, level: Level) -> tuple[int, ...]:
    if level == "quick":
        return CUDA_QUICK_SIZES if device.type == "cuda" else CPU_QUICK_SIZES
    return CUDA_SIZES if device.type == "cuda" else CPU_SIZES


def dtypes_for(case_dtypes: Iterable[str | None], device: torch.device) -> list[str]:
    """The calibration dtypes a sweep needs: its cases' compute dtypes (float32 on CUDA: TF32 when
    torch allows it), or float32 when the cases name none."""
    tf32 = torch.get_float32_matmul_precision() != "highest"
    keys = [compute_key(d, device.type, tf32) for d in case_dtypes if d]
    keys = [k for k in dict.fromkeys(keys) if k in TORCH_DTYPES and not (k == "tf32" and device.type != "cuda")]
    return keys or ["float32"]


@contextlib.contextmanager
def _matmul_precision(dtype: str) -> Iterator[None]:
    """'tf32' allows TF32 tensor cores for float32 matmuls; 'float32' forbids them."""
    before = torch.get_float32_matmul_precision()
    if dtype == "tf32":
        torch.set_float32_matmul_precision("high")
    elif dtype == "float32":
        torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run with `threads` intra-op threads (None: leave as is), restored afterwards."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class _Call:
    """A Runnable for measure_time: one fixed call."""

    def __init__(self, fn):
        self.run = fn


def _fits(device: torch.device, n: int, dtype: torch.dtype) -> bool:
    if device.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return 3 * n * n * torch.empty((), dtype=dtype).element_size() <= CUDA_MEM_FRACTION * free


def measure_matmul(
    device: torch.device, dtype: str, sizes: Iterable[int], policy: TimerPolicy = CALIBRATION_POLICY,
    level: Level = "full",
) -> MatmulPeak:
    """Per-call rate of (n, n) @ (n, n) at each size, from its fastest timed window; the peak is the
    best of them. A peak is what the machine can do, so each size takes its best window (STREAM's
    "best rate" convention: the minimum time over trials): the median would fold a burst of another
    VM's load into the peak, and every MFU measured in a quiet moment would then exceed 100%."""
    tdtype = TORCH_DTYPES[dtype]
    clock = make_clock(device)
    budget_s = DTYPE_BUDGET_S[level]
    by_size: dict[int, float] = {}
    skipped: list[str] = []
    prev: tuple[int, float] | None = None  # (n, seconds per call) of the last size run
    gen = torch.Generator(device=device).manual_seed(0)
    t0 = time.perf_counter()
    with _matmul_precision(dtype):
        for n in sizes:
            if prev is not None:
                call_s = prev[1] * (n / prev[0]) ** 3
                if call_s > MAX_CALL_S:
                    skipped.append(f"n={n}: predicted {fmt_time(call_s)} per call > {MAX_CALL_S:g} s")
                    continue
                if time.perf_counter() - t0 + SIZE_COST_CALLS * call_s > budget_s:
                    skipped.append(
                        f"n={n}: predicted {fmt_time(call_s)} per call would overrun the {budget_s:g} s budget"
                    )
                    continue
            if not _fits(device, n, tdtype):
                skipped.append(f"n={n}: inputs exceed {CUDA_MEM_FRACTION:.0%} of free device memory")
                continue
            a = torch.randn(n, n, device=device, dtype=tdtype, generator=gen)
            b = torch.randn(n, n, device=device, dtype=tdtype, generator=gen)
            c = torch.empty(n, n, device=device, dtype=tdtype)
            stats = measure_time(_Call(lambda a=a, b=b, c=c: torch.mm(a, b, out=c)), policy, clock)
            by_size[n] = 2.0 * n**3 / stats.min_s
            prev = (n, stats.median_s)
            del a, b, c
    best = max(by_size, key=by_size.get) if by_size else None
    return MatmulPeak(
        dtype=dtype, level=level, flop_per_s=by_size[best] if best else None, best_size=best, by_size=by_size,
        skipped=skipped, measured_utc=now_utc(),
    )


def stream_buffer_bytes(cache_bytes: int | None, floor_bytes: int, cap_bytes: int) -> int:
    """Bytes of the bandwidth buffer: BANDWIDTH_CACHE_SPAN x the cache, at least `floor_bytes`,
    at most `cap_bytes` (free memory), a multiple of 8 (two float32 halves)."""
    return min(max(floor_bytes, BANDWIDTH_CACHE_SPAN * (cache_bytes or 0)), cap_bytes) // 8 * 8


def default_buffer_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        cap = int(torch.cuda.mem_get_info(device)[0] * CUDA_MEM_FRACTION)
        return stream_buffer_bytes(last_level_cache_bytes(device), CUDA_BANDWIDTH_BYTES, cap)
    import psutil

    cap = int(psutil.virtual_memory().available * CPU_MEM_FRACTION)
    return stream_buffer_bytes(last_level_cache_bytes(device), CPU_BANDWIDTH_BYTES, cap)


def measure_bandwidth(
    device: torch.device, kinds: Iterable[str] = BANDWIDTHS, nbytes: int | None = None,
    policy: TimerPolicy = CALIBRATION_POLICY, level: Level = "full",
) -> dict[str, Bandwidth]:
    """Streaming bandwidth over one float32 buffer of `nbytes` (default: default_buffer_bytes):
    'read' = a reduction over it (bytes read), 'copy' = its first half into its second (bytes
    read + written). Both count the buffer's bytes per call."""
    nbytes = (nbytes or default_buffer_bytes(device)) // 8 * 8
    buf = torch.ones(nbytes // 4, device=device)  # written: an untouched page would read as the zero page
    src, dst = buf.chunk(2)
    acc = torch.empty((), device=device)
    kernels = {
        "read": ("torch.sum(x)", lambda: torch.sum(buf, 0, out=acc)) if device.type == "cuda"
        else ("torch.dot(x, x)", lambda: torch.dot(buf, buf, out=acc)),
        "copy": ("dst.copy_(src)", lambda: dst.copy_(src)),
    }
    synchronize(device)
    clock = make_clock(device)
    out = {}
    for kind in kinds:
        kernel, fn = kernels[kind]
        stats = measure_time(_Call(fn), policy, clock)
        out[kind] = Bandwidth(  # the fastest window, as the GEMM peak
            kind=kind, level=level, kernel=kernel, bytes_per_s=nbytes / stats.min_s, buffer_bytes=nbytes,
            measured_utc=now_utc(),
        )
    return out


def calibrate(
    device: torch.device,
    dtypes: Iterable[str] | None = None,
    *,
    bandwidths: Iterable[str] = BANDWIDTHS,
    level: Level = "full",
    sizes: Iterable[int] | None = None,
    buffer_bytes: int | None = None,
    policy: TimerPolicy | None = None,
    base: Calibration | None = None,
) -> Calibration:
    """Measure the matmul peak of each dtype and the bandwidth figures at the current thread count.

    Figures already in `base` are kept; only the requested ones are (re)measured. `sizes`,
    `buffer_bytes` and `policy` default to the device's at `level`; tests shrink them.
    """
    t0 = time.perf_counter()
    dtypes = list(dtypes if dtypes is not None else default_dtypes(device))
    bandwidths = list(bandwidths)
    for d in dtypes:
        if d not in TORCH_DTYPES or (d == "tf32" and device.type != "cuda"):
            raise ValueError(f"cannot calibrate dtype '{d}' on {device.type}")
    sizes = tuple(sizes or level_sizes(device, level))
    policy = policy or POLICIES[level]
    cal = (
        base.model_copy(deep=True)
        if base is not None
        else Calibration(
            key=calibration_key(device), created_utc=now_utc(), device=str(device), device_name=device_name(device),
            threads=torch.get_num_threads(), clock=make_clock(device).name,
        )
    )
    cal.cache_bytes = last_level_cache_bytes(device)
    with CpuWindow() as load:
        for d in dtypes:
            cal.matmul[d] = measure_matmul(device, d, sizes, policy, level)
        if bandwidths:
            cal.bandwidth.update(measure_bandwidth(device, bandwidths, buffer_bytes, policy, level))
    cal.cpu_other_busy_cores = load.result()["cpu_other_busy_cores"]
    cal.duration_s += time.perf_counter() - t0
    return cal


def load_or_calibrate(
    device: torch.device,
    *,
    threads: int | None = None,
    dtypes: Iterable[str] | None = None,
    bandwidths: Iterable[str] = BANDWIDTHS,
    level: Level = "full",
    recalibrate: bool = False,
    directory: Path | None = None,
    **measure: Any,
) -> CalibrationResult:
    """The calibration for `device` at `threads`: from the cache, measuring only what is missing.

    Args:
        device: the device the sweep runs on.
        threads: torch intra-op threads the sweep will use (None: the current setting).
        dtypes: dtype keys needed (None: all that make sense on the device).
        bandwidths: bandwidth figures needed ('read', 'copy').
        level: 'quick' or 'full'; a full cached figure satisfies a quick request, a quick
            one is measured again for a full request.
        recalibrate: measure the requested figures again (other cached figures are kept).
        directory: cache directory (default: cache_dir()).
        measure: passed to calibrate() (sizes, buffer_bytes, policy).
    """
    t0 = time.perf_counter()
    with torch_threads(threads):
        key = calibration_key(device)
        path = cache_path(key, directory)
        notes: list[str] = []
        try:  # before measuring: an XFBENCH_CACHE_DIR that cannot be a folder is BadInput now, not after
            make_cache_dir(directory)
        except OSError as e:
            notes.append(f"could not make the calibration cache folder {path.parent}: {e.strerror or e}")
        cached, why = load_cached(path, key)
        if why:
            notes.append(why)
        wanted = list(dict.fromkeys(dtypes if dtypes is not None else default_dtypes(device)))
        missing, kinds = to_measure(cached, wanted, list(dict.fromkeys(bandwidths)), level, recalibrate)
        if cached is not None and not missing and not kinds:
            return CalibrationResult(cached, path, True, [], notes, time.perf_counter() - t0)
        what = ", ".join([*(f"{d} matmul" for d in missing), *(f"{k} bandwidth" for k in kinds)])
        try:
            cal = calibrate(device, missing, bandwidths=kinds, level=level, base=cached, **measure)
        except KeyboardInterrupt:  # the cache is written only after the whole calibration
            raise KeyboardInterrupt(
                f"interrupted while calibrating {device} ({what}): nothing was lost, the calibration cache "
                f"{path} is as it was"
            ) from None
        for d in missing:
            notes.extend(f"{d} matmul: skipped {s}" for s in cal.matmul[d].skipped)
        buffer = cal.bandwidth[kinds[0]].buffer_bytes if kinds else None  # one buffer serves every kind
        if buffer and cal.cache_bytes and buffer < BANDWIDTH_CACHE_SPAN * cal.cache_bytes:
            notes.append(
                f"the bandwidth buffer ({fmt_bytes(buffer)}) is under {BANDWIDTH_CACHE_SPAN}x the "
                f"{cache_name(device.type)} ({fmt_bytes(cal.cache_bytes)}): the bandwidths may include cache hits"
            )
        demand = cal.threads if device.type == "cpu" else 1
        if oversubscribed(cal.cpu_other_busy_cores, demand, usable_cores()):
            notes.append(
                f"other processes kept {cal.cpu_other_busy_cores:.2f} cores busy while calibrating: the peaks may "
                "be low; rerun with --recalibrate on a quiet machine"
            )
        try:
            save(cal, path)
        except OSError as e:
            notes.append(f"could not write the calibration cache {path}: {e}")
        return CalibrationResult(cal, path, False, missing + kinds, notes, time.perf_counter() - t0)


def peaks_for(
    device: torch.device,
    dtypes: Iterable[str | None],
    threads: int | None = None,
    traffic_kinds: Iterable[str] = tuple(TRAFFIC_BANDWIDTH),
    recalibrate: bool = False,
    level: Level = "quick",
    **calibrate_kw: Any,
) -> tuple[Peaks, CalibrationResult]:
    """The peaks a sweep measures against: what its cases need, from the cache or measured now.

    Args:
        device: the sweep's device.
        dtypes: the cases' dtypes ('float32', 'bfloat16', None for none); mapped to compute
            keys by dtypes_for (float32 on CUDA is TF32 when torch allows it).
        threads: torch intra-op threads the sweep runs with (None: the current setting).
        traffic_kinds: the steps' traffic kinds ('read', 'read_write'): which bandwidths.
        recalibrate: measure the needed figures again.
        level: 'quick' (a sweep's own: fewer sizes, short caps) or 'full'.
        calibrate_kw: passed to load_or_calibrate (directory, sizes, buffer_bytes, policy).
    """
    res = load_or_calibrate(
        device, threads=threads, dtypes=dtypes_for(dtypes, device),
        bandwidths=[bandwidth_kind(t) for t in traffic_kinds], level=level, recalibrate=recalibrate,
        **calibrate_kw,
    )
    return to_peaks(res), res


def measured_utc(cal: Calibration) -> str:
    """When the newest of its figures was measured (a recalibration keeps the file's created_utc)."""
    times = [f.measured_utc for f in (*cal.matmul.values(), *cal.bandwidth.values()) if f.measured_utc]
    return max(times, default=cal.created_utc)


def to_peaks(res: CalibrationResult) -> Peaks:
    """The peaks a sweep measures against: calibrated figures plus the spec sheet, if known."""
    cal = res.calibration
    cuda = cal.device.startswith("cuda")
    how = "cached" if res.reused else "measured"
    return Peaks(
        device_type="cuda" if cuda else "cpu",
        device_name=cal.device_name,
        measured_flop_per_s={d: m.flop_per_s for d, m in cal.matmul.items() if m.flop_per_s},
        measured_copy_bytes_per_s=cal.bytes_per_s("copy"),
        measured_read_bytes_per_s=cal.bytes_per_s("read"),
        spec=lookup_spec(cal.device_name) if cuda else None,
        spec_reason=MIG_NO_SPEC if cuda and is_mig_name(cal.device_name) else None,
        source=(
            f"{cal.level} calibration {measured_utc(cal)} ({how}; {cal.threads} threads, "
            f"torch {cal.key.get('torch')}): {res.path}"
        ),
        level=cal.level,
        threads=cal.threads,
    )


def calibration_report(res: CalibrationResult, peak_flops_override: float | None = None) -> dict[str, Any]:
    """JSON-ready view of a calibration beside the spec sheet, for `xfbench env --calibrate`."""
    cal = res.calibration
    peaks = to_peaks(res)
    spec = peaks.spec
    matmul = {}
    for d, m in cal.matmul.items():
        spec_d = spec.flop_per_s.get(d) if spec else None
        matmul[d] = {
            "flop_per_s": m.flop_per_s,
            "level": m.level,
            "best_size": m.best_size,
            "by_size": {str(n): v for n, v in m.by_size.items()},
            "skipped": m.skipped,
            "spec_flop_per_s": spec_d,
            "of_spec": m.flop_per_s / spec_d if m.flop_per_s and spec_d else None,
        }
    report = {
        "path": str(res.path),
        "reused": res.reused,
        "measured_now": res.measured,
        "elapsed_s": res.elapsed_s,
        "notes": res.notes,
        "device": cal.device,
        "device_name": cal.device_name,
        "threads": cal.threads,
        "torch": cal.key.get("torch"),
        "created_utc": cal.created_utc,
        "measured_utc": measured_utc(cal),
        "clock": cal.clock,
        "level": cal.level,
        "cache_name": cache_name(peaks.device_type),
        "cache_bytes": cal.cache_bytes,
        "matmul": matmul,
        "spec": peaks.spec_status(),
        "spec_mem_bytes_per_s": spec.mem_bytes_per_s if spec else None,
        "cpu_other_busy_cores": cal.cpu_other_busy_cores,
        "peak_flops_override": peak_flops_override,
    }
    for kind in BANDWIDTHS:  # flat keys: copy_bytes_per_s, copy_buffer_bytes, ..., read_level
        b = cal.bandwidth.get(kind)
        report.update({
            f"{kind}_bytes_per_s": b.bytes_per_s if b else None,
            f"{kind}_buffer_bytes": b.buffer_bytes if b else None,
            f"{kind}_kernel": b.kernel if b else None,
            f"{kind}_level": b.level if b else None,
        })
    return report
