"""Measured peaks of this machine: dense matmul FLOP/s per dtype and copy bandwidth, cached.

MFU and rooflines divide by these, never by a constant. Each figure is timed with the
same adaptive timer as every workload (measure_time + make_clock: CUDA events on GPU),
at the torch thread count the sweep will use. Results are cached in a small JSON file
per (machine, device, torch version, thread count) under the user cache directory
(XFBENCH_CACHE_DIR overrides it) and reused until `--recalibrate`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import socket
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .contention import CpuWindow, usable_cores
from .device import synchronize
from .roofline import Peaks, compute_key
from .specs import lookup_spec
from .timer import TimerPolicy, make_clock, measure_time
from .warnings import oversubscribed

# NOTE: bump when the meaning of a cached figure changes; older cache files are re-measured.
CALIBRATION_VERSION = 1
CACHE_ENV = "XFBENCH_CACHE_DIR"

# Compute dtype keys. 'tf32' is float32 storage with TF32 tensor-core math (CUDA only).
TORCH_DTYPES = {"float32": torch.float32, "tf32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
CPU_DTYPES = ("float32", "bfloat16", "float16")
CUDA_DTYPES = ("bfloat16", "float16", "tf32", "float32")

# Square sizes tried per dtype, smallest first; the peak is the best median rate over them
# (one size can sit on a bad tile shape or be too small to fill the machine).
CPU_SIZES = (512, 1024, 2048)  # ~0.1 s per 2048 fp32 call on two AVX-512 cores
CUDA_SIZES = (4096, 8192, 16384)
# A size whose per-call time, extrapolated (n^3) from the previous size, exceeds this is
# skipped: bf16/fp16 without native CPU support run 100x slower, and must stay bounded.
MAX_CALL_S = 1.0
# ... and so is one that would take the time spent on its dtype past this budget
# (a size costs about SIZE_COST_CALLS calls: warm-up plus the fewest timed windows).
DTYPE_BUDGET_S = 4.0
SIZE_COST_CALLS = 6
# Inputs of one size may take at most this fraction of free device memory.
CUDA_MEM_FRACTION = 0.5

# Bandwidth: one copy of a buffer much larger than any cache; counts read + write bytes.
CPU_COPY_BYTES = 256 * 2**20
CUDA_COPY_BYTES = 2**30

# Stopping rules for each figure: a tight CI, but a short cap so a full calibration on a
# CPU stays within seconds.
CALIBRATION_POLICY = TimerPolicy(
    target_ci_rel=0.01, max_time_s=1.0, min_samples=6, min_window_s=0.02, warmup_min_s=0.1, warmup_max_s=1.0
)


# A measured rate or size: finite and positive. A cache file holding NaN, inf, zero or a
# negative figure (hand-edited, or written by a broken build) fails validation and is
# re-measured; accepted, it would print "nan FLOP/s", break the results header's strict
# JSON, or give a negative roofline ridge point.
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
PositiveInt = Annotated[int, Field(gt=0)]


class MatmulPeak(BaseModel):
    """Dense matmul rate of one dtype: 2*n^3 FLOPs per (n, n) @ (n, n) call."""

    model_config = ConfigDict(allow_inf_nan=False)

    dtype: str
    flop_per_s: Positive | None = Field(description="best over sizes of the median per-call rate; None if none ran")
    best_size: PositiveInt | None = None
    by_size: dict[PositiveInt, Positive] = Field(default_factory=dict, description="n -> median FLOP/s at that size")
    skipped: list[str] = Field(default_factory=list, description="sizes not run, with why")
    measured_utc: str | None = None


class Calibration(BaseModel):
    """Measured peaks of one device at one thread count (the cached file's content)."""

    model_config = ConfigDict(allow_inf_nan=False)

    version: int = CALIBRATION_VERSION
    key: dict[str, Any] = Field(description="machine, device, torch version, threads: what the figures hold for")
    created_utc: str
    device: str
    device_name: str
    threads: PositiveInt
    clock: str = Field(description="timer clock: perf_counter | cuda_event")
    matmul: dict[str, MatmulPeak] = Field(default_factory=dict)
    copy_bytes_per_s: Positive | None = Field(
        None, description="device-to-same-device copy, bytes read + written per s"
    )
    copy_buffer_bytes: PositiveInt | None = Field(
        None, description="size of the copied buffer (each of source, destination)"
    )
    duration_s: float = Field(0.0, ge=0)
    cpu_other_busy_cores: float | None = Field(
        None, ge=0, description="cores other processes kept busy during the last measurement (load spoils peaks)"
    )

    def peak(self, dtype: str) -> float | None:
        m = self.matmul.get(dtype)
        return m.flop_per_s if m else None


@dataclass
class CalibrationResult:
    """A calibration and where it came from.

    Args:
        calibration: the figures.
        path: the cache file.
        reused: True if every needed figure came from the cache.
        measured: what this call measured ('float32', 'copy', ...).
        notes: things the user should know (corrupt cache, skipped sizes).
        elapsed_s: wall time of this call.
    """

    calibration: Calibration
    path: Path
    reused: bool
    measured: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def cache_dir() -> Path:
    """XFBENCH_CACHE_DIR, else the platform's user cache directory for xfbench."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_cache_dir("xfbench"))


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    from .env import cpu_model

    return cpu_model()


def default_dtypes(device: torch.device) -> tuple[str, ...]:
    return CUDA_DTYPES if device.type == "cuda" else CPU_DTYPES


def dtypes_for(case_dtypes: Iterable[str | None], device: torch.device) -> list[str]:
    """The calibration dtypes a sweep needs: its cases' compute dtypes (float32 on CUDA: TF32 when
    torch allows it), or float32 when the cases name none."""
    tf32 = torch.get_float32_matmul_precision() != "highest"
    keys = [compute_key(d, device.type, tf32) for d in case_dtypes if d]
    keys = [k for k in dict.fromkeys(keys) if k in TORCH_DTYPES and not (k == "tf32" and device.type != "cuda")]
    return keys or ["float32"]


def calibration_key(device: torch.device) -> dict[str, Any]:
    """What a calibration depends on: the machine, the device, torch and the thread count."""
    key: dict[str, Any] = {
        "host": socket.gethostname(),
        "machine": platform.machine(),
        "device_type": device.type,
        "device_name": device_name(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        key["cuda"] = torch.version.cuda
        key["device_uuid"] = str(getattr(torch.cuda.get_device_properties(device), "uuid", "")) or None
    else:
        key["usable_cores"] = usable_cores()
    return key


def cache_path(key: dict[str, Any], directory: Path | None = None) -> Path:
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return (directory or cache_dir()) / f"calibration-{digest}.json"


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
    device: torch.device, dtype: str, sizes: Iterable[int], policy: TimerPolicy = CALIBRATION_POLICY
) -> MatmulPeak:
    """Median per-call rate of (n, n) @ (n, n) at each size; the peak is the best of them."""
    tdtype = TORCH_DTYPES[dtype]
    clock = make_clock(device)
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
                    skipped.append(f"n={n}: predicted {call_s:.2g} s per call > {MAX_CALL_S:g} s")
                    continue
                if time.perf_counter() - t0 + SIZE_COST_CALLS * call_s > DTYPE_BUDGET_S:
                    skipped.append(
                        f"n={n}: predicted {call_s:.2g} s per call would overrun the {DTYPE_BUDGET_S:g} s budget"
                    )
                    continue
            if not _fits(device, n, tdtype):
                skipped.append(f"n={n}: inputs exceed {CUDA_MEM_FRACTION:.0%} of free device memory")
                continue
            a = torch.randn(n, n, device=device, dtype=tdtype, generator=gen)
            b = torch.randn(n, n, device=device, dtype=tdtype, generator=gen)
            c = torch.empty(n, n, device=device, dtype=tdtype)
            stats = measure_time(_Call(lambda a=a, b=b, c=c: torch.mm(a, b, out=c)), policy, clock)
            by_size[n] = 2.0 * n**3 / stats.median_s
            prev = (n, stats.median_s)
            del a, b, c
    best = max(by_size, key=by_size.get) if by_size else None
    return MatmulPeak(
        dtype=dtype, flop_per_s=by_size[best] if best else None, best_size=best, by_size=by_size,
        skipped=skipped, measured_utc=_now(),
    )


def measure_copy(
    device: torch.device, nbytes: int | None = None, policy: TimerPolicy = CALIBRATION_POLICY
) -> tuple[float, int]:
    """Achievable bandwidth of dst.copy_(src) on one device: (bytes read + written per s, buffer bytes)."""
    if nbytes is None:
        nbytes = CUDA_COPY_BYTES if device.type == "cuda" else CPU_COPY_BYTES
        if device.type == "cuda":
            nbytes = min(nbytes, int(torch.cuda.mem_get_info(device)[0] * CUDA_MEM_FRACTION / 2))
        else:
            import psutil

            nbytes = min(nbytes, psutil.virtual_memory().available // 8)
    numel = max(1, nbytes // 4)
    src = torch.ones(numel, device=device, dtype=torch.float32)  # written, so every page is faulted in
    dst = torch.zeros_like(src)
    synchronize(device)
    stats = measure_time(_Call(lambda: dst.copy_(src)), policy, make_clock(device))
    return 2.0 * numel * 4 / stats.median_s, numel * 4


def calibrate(
    device: torch.device,
    dtypes: Iterable[str] | None = None,
    *,
    copy: bool = True,
    sizes: Iterable[int] | None = None,
    copy_bytes: int | None = None,
    policy: TimerPolicy = CALIBRATION_POLICY,
    base: Calibration | None = None,
) -> Calibration:
    """Measure the matmul peak of each dtype (and copy bandwidth) at the current thread count.

    Figures already in `base` are kept; only the requested ones are (re)measured. `sizes`,
    `copy_bytes` and `policy` default to the device's; tests shrink them.
    """
    t0 = time.perf_counter()
    dtypes = list(dtypes if dtypes is not None else default_dtypes(device))
    for d in dtypes:
        if d not in TORCH_DTYPES or (d == "tf32" and device.type != "cuda"):
            raise ValueError(f"cannot calibrate dtype '{d}' on {device.type}")
    sizes = tuple(sizes or (CUDA_SIZES if device.type == "cuda" else CPU_SIZES))
    cal = (
        base.model_copy(deep=True)
        if base is not None
        else Calibration(
            key=calibration_key(device), created_utc=_now(), device=str(device), device_name=device_name(device),
            threads=torch.get_num_threads(), clock=make_clock(device).name,
        )
    )
    with CpuWindow() as load:
        for d in dtypes:
            cal.matmul[d] = measure_matmul(device, d, sizes, policy)
        if copy:
            cal.copy_bytes_per_s, cal.copy_buffer_bytes = measure_copy(device, copy_bytes, policy)
    cal.cpu_other_busy_cores = load.result()["cpu_other_busy_cores"]
    cal.duration_s += time.perf_counter() - t0
    return cal


def load_cached(path: Path, key: dict[str, Any]) -> tuple[Calibration | None, str | None]:
    """The cached calibration at `path` if it is valid for `key`; otherwise (None, why)."""
    if not path.exists():
        return None, None
    try:
        cal = Calibration.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except ValidationError as e:  # name the first bad field: "matmul.float32.flop_per_s: ... finite number"
        err = e.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "top level"
        return None, f"calibration cache {path} is corrupt ({where}: {err['msg']}); recalibrating"
    except (OSError, UnicodeDecodeError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return None, f"calibration cache {path} is corrupt ({first}); recalibrating"
    if cal.version != CALIBRATION_VERSION:
        return None, f"calibration cache {path} has version {cal.version}, not {CALIBRATION_VERSION}; recalibrating"
    if cal.key != key:
        return None, f"calibration cache {path} was made for another machine or setting; recalibrating"
    return cal, None


def save(cal: Calibration, path: Path) -> None:
    """Write atomically, so a concurrent reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(cal.model_dump(mode="json"), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def load_or_calibrate(
    device: torch.device,
    *,
    threads: int | None = None,
    dtypes: Iterable[str] | None = None,
    recalibrate: bool = False,
    directory: Path | None = None,
    **measure: Any,
) -> CalibrationResult:
    """The calibration for `device` at `threads`: from the cache, measuring only what is missing.

    Args:
        device: the device the sweep runs on.
        threads: torch intra-op threads the sweep will use (None: the current setting).
        dtypes: dtype keys needed (None: all that make sense on the device).
        recalibrate: measure the requested figures again (other cached dtypes are kept).
        directory: cache directory (default: cache_dir()).
        measure: passed to calibrate() (sizes, copy_bytes, policy).
    """
    t0 = time.perf_counter()
    with torch_threads(threads):
        key = calibration_key(device)
        path = cache_path(key, directory)
        notes: list[str] = []
        cached, why = load_cached(path, key)
        if why:
            notes.append(why)
        wanted = list(dict.fromkeys(dtypes if dtypes is not None else default_dtypes(device)))
        if recalibrate:  # re-measure what was asked for, keep the other cached dtypes
            missing, need_copy = wanted, True
        else:
            missing = [d for d in wanted if cached is None or d not in cached.matmul]
            need_copy = cached is None or cached.copy_bytes_per_s is None
        if cached is not None and not missing and not need_copy:
            return CalibrationResult(cached, path, True, [], notes, time.perf_counter() - t0)
        cal = calibrate(device, missing, copy=need_copy, base=cached, **measure)
        for d in missing:
            for s in cal.matmul[d].skipped:
                notes.append(f"{d} matmul: skipped {s}")
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
        measured = missing + (["copy"] if need_copy else [])
        return CalibrationResult(cal, path, False, measured, notes, time.perf_counter() - t0)


def to_peaks(res: CalibrationResult) -> Peaks:
    """The peaks a sweep measures against: calibrated figures plus the spec sheet, if known."""
    cal = res.calibration
    cuda = cal.device.startswith("cuda")
    how = "cached" if res.reused else "measured"
    return Peaks(
        device_type="cuda" if cuda else "cpu",
        device_name=cal.device_name,
        measured_flop_per_s={d: m.flop_per_s for d, m in cal.matmul.items() if m.flop_per_s},
        measured_copy_bytes_per_s=cal.copy_bytes_per_s,
        spec=lookup_spec(cal.device_name) if cuda else None,
        source=f"{res.path} ({how}; calibrated {cal.created_utc}, {cal.threads} threads, torch {cal.key.get('torch')})",
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
            "best_size": m.best_size,
            "by_size": {str(n): v for n, v in m.by_size.items()},
            "skipped": m.skipped,
            "spec_flop_per_s": spec_d,
            "of_spec": m.flop_per_s / spec_d if m.flop_per_s and spec_d else None,
        }
    return {
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
        "clock": cal.clock,
        "matmul": matmul,
        "copy_bytes_per_s": cal.copy_bytes_per_s,
        "copy_buffer_bytes": cal.copy_buffer_bytes,
        "spec": peaks.spec_status(),
        "spec_mem_bytes_per_s": spec.mem_bytes_per_s if spec else None,
        "cpu_other_busy_cores": cal.cpu_other_busy_cores,
        "peak_flops_override": peak_flops_override,
    }
