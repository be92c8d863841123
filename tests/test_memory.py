"""Peak-memory pass on CPU (VmHWM and the polling fallback), OOM classification, the CPU memory cap,
a CUDA graph's pool from the allocator's segments."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from xfbench.profilers import memory
from xfbench.profilers.cpu import fix_malloc_policy
from xfbench.profilers.memory import is_oom, measure_peak, memory_cap, pool_bytes

CPU = torch.device("cpu")
MIB = 2**20


def allocate(mib: int):
    def run():
        x = torch.ones(mib * MIB // 4, dtype=torch.float32)  # touched, so resident
        return float(x[-1])

    return run


@pytest.mark.parametrize("mib", [64, 256])
def test_cpu_peak_tracks_a_known_allocation(mib):
    m = measure_peak(allocate(mib), CPU)
    assert m.method == "vmhwm"
    # Slack for what other threads of the test process allocate or free meanwhile.
    assert mib * MIB * 0.90 <= m.peak_bytes <= mib * MIB * 1.25, (m.peak_bytes / MIB, m.baseline_bytes / MIB)
    assert m.baseline_bytes > 0


def test_peaks_do_not_leak_between_passes():
    big = measure_peak(allocate(256), CPU)
    small = measure_peak(allocate(16), CPU)  # the high-water mark was reset in between
    assert small.peak_bytes < big.peak_bytes / 4


def test_polling_fallback_when_hwm_cannot_be_reset(monkeypatch):
    # A kernel without clear_refs support: the OS boundary is faked, torch is real.
    monkeypatch.setattr(memory, "_reset_hwm", lambda: False)

    def slow_alloc():
        x = torch.ones(128 * MIB // 4)
        import time

        time.sleep(0.3)  # hundreds of poll intervals: the poll thread surely samples it
        return float(x[0])

    m = measure_peak(slow_alloc, CPU)
    assert m.method == "rss_poll" and "polled" in m.note
    assert m.peak_bytes >= 128 * MIB * 0.9


# C10_CUDA_CHECK's wording for a raw cudaMalloc that failed outside the caching allocator.
CUDA_ERROR_OOM = (
    "CUDA error: out of memory\nCUDA kernel errors might be asynchronously reported at some other API call, so the "
    "stacktrace below might be incorrect.\nFor debugging consider passing CUDA_LAUNCH_BLOCKING=1\nCompile with "
    "`TORCH_USE_CUDA_DSA` to enable device-side assertions.\n"
)


def test_only_the_tensor_allocators_failures_are_oom():
    with pytest.raises(RuntimeError) as cpu:  # torch's CPU allocator, for real: posix_memalign fails
        torch.empty(2**60, dtype=torch.uint8)
    assert "DefaultCPUAllocator: can't allocate memory" in str(cpu.value)
    assert is_oom(cpu.value)
    assert is_oom(MemoryError())
    assert is_oom(torch.cuda.OutOfMemoryError(
        "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.19 GiB of which 1.06 GiB "
        "is free. Of the allocated memory 75.41 GiB is allocated by PyTorch"
    ))
    # Libraries that could not get memory of their own: errors, the series' larger sizes still run.
    library = [
        RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"),
        RuntimeError("cuDNN error: CUDNN_STATUS_ALLOC_FAILED"),
        RuntimeError("cusolver error: CUSOLVER_STATUS_ALLOC_FAILED, when calling `cusolverDnCreate(&handle)`. "),
        getattr(torch, "AcceleratorError", RuntimeError)(CUDA_ERROR_OOM),
        RuntimeError(CUDA_ERROR_OOM),
    ]
    assert [is_oom(e) for e in library] == [False] * len(library)
    assert not is_oom(RuntimeError("shape mismatch"))
    assert not is_oom(ValueError("out of memory"))


def capped_allocation_after_a_free() -> str:
    """Free 40 MiB into the heap (as calibration's buffers are freed), cap at 8 MiB, allocate 33 MiB:
    'oom' or 'fits'. Run in a fresh process (one malloc arena, nothing else freed)."""
    fix_malloc_policy()  # the runner's policy: mmap threshold 32 MiB, so 20 MiB blocks live in the heap
    torch.ones(4 * MIB).add_(1)  # start torch's thread pool before the cap
    libc = memory._glibc()
    first, second = libc.malloc(20 * MIB), libc.malloc(20 * MIB)
    libc.malloc(MIB)  # kept: the two blocks are not the heap's top, so a trim cannot return them
    libc.free(first)
    libc.free(second)  # one free 40 MiB block
    with memory_cap(CPU, 8 * MIB):
        try:
            torch.ones(33 * MIB // 4)
        except RuntimeError as e:
            return "oom" if is_oom(e) else f"error: {e}"
    return "fits"


def test_cpu_cap_holds_the_free_heap_the_process_already_maps():
    # The free block is address space already counted, so without holding it a 33 MiB tensor
    # fits under an 8 MiB cap (before the fix, a fresh calibration let 32 MiB through 24 MiB).
    code = "from tests.test_memory import capped_allocation_after_a_free as f; print(f())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).parent.parent)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == "oom"
    with memory_cap(CPU, 8 * MIB) as how:  # in this process too: the description says what was held
        assert "of free heap held out of reach" in how


def test_graph_pool_is_the_sum_of_its_own_segments():
    # torch.cuda.memory_snapshot() entries (the fields pool_bytes reads), two pools on two devices.
    segments = [
        {"device": 0, "segment_pool_id": (0, 0), "total_size": 2 * MIB},  # the default pool
        {"device": 0, "segment_pool_id": (1, 3), "total_size": 20 * MIB},  # the graph's
        {"device": 0, "segment_pool_id": [1, 3], "total_size": 2 * MIB},
        {"device": 1, "segment_pool_id": (1, 3), "total_size": 64 * MIB},  # another device's pool
    ]
    assert pool_bytes(segments, (1, 3), 0) == 22 * MIB
    assert pool_bytes(segments, (7, 7), 0) == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_graph_pool_bytes_of_a_real_capture():
    dev = torch.device("cuda", torch.cuda.current_device())
    x = torch.randn(1024, 1024, device=dev)

    def body():
        (x @ x).relu_()

    from xfbench.workloads.model_steps import capture_graph

    graph = capture_graph(body, dev)
    # the capture's temporaries (a 4 MiB matmul output) live in the graph's pool
    assert memory.graph_pool_bytes(graph, dev) >= x.nbytes
