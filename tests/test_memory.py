"""Peak-memory pass on CPU (VmHWM and the polling fallback), OOM classification, cache policy."""

import pytest
import torch

from xfbench.profilers import memory
from xfbench.profilers.device import MAX_INPUT_SETS, plan_rotation
from xfbench.profilers.memory import is_oom, measure_peak

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


def test_is_oom_classification():
    assert is_oom(MemoryError())
    assert is_oom(RuntimeError("DefaultCPUAllocator: can't allocate memory: ... (Cannot allocate memory)"))
    assert is_oom(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert not is_oom(RuntimeError("shape mismatch"))
    assert not is_oom(ValueError("out of memory"))


def test_rotation_policy_spans_four_l2_sizes():
    l2 = 50 * MIB
    assert plan_rotation(None, 10).input_sets == 1
    assert plan_rotation(l2, 60 * MIB).input_sets == 1  # does not fit: no rotation
    p = plan_rotation(l2, 25 * MIB)
    assert p.input_sets == 8 and "rotate 8" in p.description
    assert plan_rotation(l2, 1024).input_sets == MAX_INPUT_SETS
