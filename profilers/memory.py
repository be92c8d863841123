"""Peak memory of one step, in a pass of its own; OOM detection; an optional memory cap."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import resource
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import torch

from ..reports.schema import MemoryStats
from .device import synchronize

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
# Sampling interval of the fallback RSS poller (when VmHWM cannot be reset).
RSS_POLL_S = 0.0005

_OOM_MARKERS = ("out of memory", "not enough memory", "cannot allocate memory")


def is_oom(exc: BaseException) -> bool:
    """True for allocation failures: CUDA OOM, MemoryError, torch's CPU allocator errors."""
    if isinstance(exc, MemoryError | torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and any(m in str(exc).lower() for m in _OOM_MARKERS)


def _proc_status_kib(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _release_free_heap() -> None:
    """Return freed heap pages to the OS so the baseline RSS is not inflated by old frees."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _reset_hwm() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0: write 5 to clear_refs)."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    hwm, rss = _proc_status_kib("VmHWM"), _proc_status_kib("VmRSS")
    return hwm is not None and rss is not None and hwm <= rss + 64  # KiB of slack


def _cpu_peak(run) -> MemoryStats:
    _release_free_heap()
    if _reset_hwm():
        base = _proc_status_kib("VmRSS")
        run()
        hwm = _proc_status_kib("VmHWM")
        if base is not None and hwm is not None:
            return MemoryStats(
                method="vmhwm", peak_bytes=max(0, hwm - base) * 1024, baseline_bytes=base * 1024
            )
    # Fallback: poll RSS from a thread; can miss peaks shorter than the interval.
    proc = psutil.Process()
    base = proc.memory_info().rss
    peak = [base]
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(RSS_POLL_S)

    t = threading.Thread(target=poll, daemon=True)
    t.start()
    try:
        run()
    finally:
        done.set()
        t.join()
    peak[0] = max(peak[0], proc.memory_info().rss)
    return MemoryStats(
        method="rss_poll",
        peak_bytes=peak[0] - base,
        baseline_bytes=base,
        note=f"VmHWM not resettable; RSS polled every {RSS_POLL_S * 1e3:g} ms",
    )


def _cuda_peak(run, device: torch.device) -> MemoryStats:
    synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    run()
    synchronize(device)
    return MemoryStats(
        method="cuda_allocator",
        peak_bytes=torch.cuda.max_memory_allocated(device) - base,
        baseline_bytes=base,
        peak_reserved_bytes=torch.cuda.max_memory_reserved(device),
    )


def measure_peak(run, device: torch.device) -> MemoryStats:
    """Peak memory above the baseline while `run()` executes once.

    CUDA: the caching allocator's peak allocated (and the reserved high-water mark).
    CPU: the process's RSS high-water mark (VmHWM, reset first), minus the RSS before.
    """
    if device.type == "cuda":
        return _cuda_peak(run, device)
    return _cpu_peak(run)


@contextlib.contextmanager
def memory_cap(device: torch.device, limit_bytes: int | None) -> Iterator[str | None]:
    """Cap the memory the cases may take beyond what is in use now; yields a description.

    CPU: lowers the soft RLIMIT_AS to the current address-space size plus the limit, so an
    allocation past it fails like a real out-of-memory. CUDA: the caching allocator's
    per-process fraction. Both are restored on exit.
    """
    if not limit_bytes:
        yield None
        return
    if device.type == "cuda":
        # The allocator's cap counts reserved segments, so start from an emptied cache.
        torch.cuda.empty_cache()
        total = torch.cuda.get_device_properties(device).total_memory
        used = torch.cuda.memory_reserved(device)
        getter = getattr(torch.cuda, "get_per_process_memory_fraction", None)
        before = getter(device) if getter else 1.0
        fraction = min(1.0, (used + limit_bytes) / total)
        torch.cuda.set_per_process_memory_fraction(fraction, device)
        try:
            yield f"cuda per-process fraction {fraction:.4f}"
        finally:
            torch.cuda.set_per_process_memory_fraction(before, device)
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    vm_kib = _proc_status_kib("VmSize") or 0
    cap = vm_kib * 1024 + limit_bytes
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        # Allocations that fail inside glibc make timings under this cap unrepresentative.
        yield f"RLIMIT_AS = address space now + {limit_bytes} B (timings under a CPU cap are not representative)"
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
