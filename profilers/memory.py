"""Peak memory of one step, in a pass of its own; OOM detection; an optional memory cap; a CUDA graph's pool."""

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
# Before a CPU cap, the free memory glibc's heap already holds is taken in blocks of this
# size (below glibc's smallest mmap threshold, 128 KiB, so they always come from the heap).
HEAP_HOLD_BLOCK_BYTES = 64 * 1024

# at::parallel_for hands each intra-op thread a chunk of at least this many elements
# (at::internal::GRAIN_SIZE, aten/src/ATen/Parallel.h), so an elementwise op over
# threads x GRAIN_SIZE elements runs on every thread of the pool.
GRAIN_SIZE = 32768

# What torch's CPU allocator raises when posix_memalign fails (c10/core/impl/alloc_cpu.cpp;
# "not enough memory" is its Windows and Android wording).
_CPU_ALLOCATOR_OOM = ("DefaultCPUAllocator: can't allocate memory", "DefaultCPUAllocator: not enough memory")


def is_oom(exc: BaseException) -> bool:
    """True only for what an allocator of tensors raised: the CUDA caching allocator
    (torch.OutOfMemoryError, also under the per-process fraction cap), MemoryError (Python,
    and C++ std::bad_alloc as pybind11 translates it), and torch's CPU allocator.

    A library that cannot get memory of its own is an error, not an OOM: cuBLAS ("CUDA
    error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"), cuDNN ("cuDNN
    error: CUDNN_STATUS_ALLOC_FAILED"), a raw cudaMalloc ("CUDA error: out of memory"). Such a
    failure does not say the case outgrew the device, so the larger sizes of its series are
    not skipped; the record keeps the message.
    """
    if isinstance(exc, MemoryError | torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and any(m in str(exc) for m in _CPU_ALLOCATOR_OOM)


def graph_pool_bytes(graph: torch.cuda.CUDAGraph, device: torch.device) -> int:
    """Bytes the caching allocator holds in a captured CUDA graph's private memory pool.

    Not a difference of memory_reserved() around the capture: torch.cuda.graph() synchronizes
    and empties the allocator's cache before capturing, so every cached block the warm-up
    left is released then and "reserved after - reserved before" is usually negative. The
    memory snapshot lists each segment with the pool that owns it; the graph's pool is
    exactly its own segments, so their sum is the pool (>= 0 by construction).
    """
    return pool_bytes(torch.cuda.memory_snapshot(), graph.pool(), device.index)


def pool_bytes(segments: list[dict], pool_id: tuple[int, int], device_index: int | None) -> int:
    """Pure: total size of the segments one memory pool owns on one device (memory_snapshot() entries)."""
    want = tuple(pool_id)
    return sum(
        seg["total_size"] for seg in segments
        if tuple(seg["segment_pool_id"]) == want and seg.get("device", device_index) == device_index
    )


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
    allocation past it fails like a real out-of-memory; the free heap the process already
    maps is held meanwhile, so it cannot serve the cases beyond the limit. CUDA: the caching
    allocator's per-process fraction. Both are restored on exit.
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
    threads, _ = start_intra_op_pool()
    _release_free_heap()
    with _hold_free_heap() as held:
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        vm_kib = _proc_status_kib("VmSize") or 0
        cap = vm_kib * 1024 + limit_bytes
        if hard != resource.RLIM_INFINITY:
            cap = min(cap, hard)
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
        try:
            # Allocations that fail inside glibc make timings under this cap unrepresentative.
            yield (
                f"RLIMIT_AS = address space now + {limit_bytes} B ({held} B of free heap held out of reach; "
                f"the intra-op pool of {threads} threads started before it: their stacks and malloc arenas lie "
                "outside the cap; timings under a CPU cap are not representative)"
            )
        finally:
            resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def start_intra_op_pool() -> tuple[int, int]:
    """Run one elementwise op on every intra-op thread, so the OpenMP pool exists before a cap;
    returns (threads, bytes of address space this call added: 0 when the pool was running).

    Every pool thread maps a stack (ulimit -s, 8 MiB by default) and, at its first malloc, a
    glibc arena (64 MiB reserved): ~74 MiB of address space per thread measured here
    (VmSize, torch 2.13 CPU: +1.06 GiB for a 16-thread pool). Started under RLIMIT_AS, the
    pool cannot map them and libgomp aborts the process ("libgomp: Thread creation failed")
    before the first case: a second run of a command whose calibration came from the cache
    (the first run's calibration had started the pool) died at any cap under threads x 8 MiB.
    The pool is started at torch.get_num_threads(), the count the cases run at (open_sweep
    sets it first); at::parallel_for always asks OpenMP for the whole team, so no case
    starts a thread later.
    """
    threads = torch.get_num_threads()
    before = _proc_status_kib("VmSize")
    if threads > 1:
        torch.ones(threads * GRAIN_SIZE).add_(1)
    after = _proc_status_kib("VmSize")
    added = max(0, after - before) * 1024 if before is not None and after is not None else 0
    return threads, added


class _MallInfo2(ctypes.Structure):
    """glibc's struct mallinfo2 (<malloc.h>, glibc >= 2.33)."""

    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                     "keepcost")
    ]


def _glibc():
    """libc with malloc, free, sbrk and mallinfo2 typed; None where it is not glibc >= 2.33."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
        libc.free.argtypes = [ctypes.c_void_p]
        libc.sbrk.restype, libc.sbrk.argtypes = ctypes.c_void_p, [ctypes.c_ssize_t]
        libc.mallinfo2.restype = _MallInfo2
    except (OSError, AttributeError):
        return None
    return libc


@contextlib.contextmanager
def _hold_free_heap() -> Iterator[int]:
    """Allocate (untouched) the free memory glibc's main heap already maps, hold it until exit,
    and yield how many bytes that is (0 where it cannot: not glibc, not the main thread).

    RLIMIT_AS caps address space, and a freed heap block is address space already counted:
    a case under the cap would reuse it on top of the limit. Calibration leaves tens of MiB
    of such blocks (buffers below the mmap threshold are freed into the heap, not unmapped),
    so "--mem-limit 24MiB" let a 32 MiB attention matrix through after a fresh calibration
    and stopped it after a cached one. The heap's end (sbrk(0)) moves once nothing free is
    left to hand out; the free-byte count of mallinfo2 bounds the loop.
    """
    libc = _glibc()
    held: list[int] = []
    # Other threads allocate from arenas of their own; the cases run on the main thread.
    if libc is not None and threading.current_thread() is threading.main_thread():
        free = libc.mallinfo2().fordblks
        brk = libc.sbrk(0)
        while (len(held) + 1) * HEAP_HOLD_BLOCK_BYTES <= free:
            p = libc.malloc(HEAP_HOLD_BLOCK_BYTES)
            if not p:
                break
            if libc.sbrk(0) != brk:  # the heap had to grow: nothing free was left
                libc.free(p)
                break
            held.append(p)
    try:
        yield len(held) * HEAP_HOLD_BLOCK_BYTES
    finally:
        for p in held:
            libc.free(p)
