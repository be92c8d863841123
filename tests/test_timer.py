"""The adaptive timer, made deterministic with the packaged FakeClock; one real CPU run."""

import pytest
import torch

from xfbench.profilers.timer import CpuClock, FakeClock, TimerPolicy, measure_time
from xfbench.profilers.warnings import MeasurementWarning, time_warnings


class CountingStep:
    def __init__(self):
        self.calls = 0

    def run(self):
        self.calls += 1


# Warm-up ends after 3 calls (stable fake times, no minimum duration).
FAST = dict(warmup_min_s=0.0, warmup_min_calls=2, min_window_s=0.01)


def test_converges_at_target_with_exact_counts():
    step = CountingStep()
    t = measure_time(step, TimerPolicy(target_ci_rel=0.025, **FAST), FakeClock(per_call_s=1e-3))
    assert t.warmup_calls == 3
    assert t.calls_per_sample == 10  # 10 ms window / 1 ms per call
    assert t.n == 10
    assert t.converged
    assert step.calls == 3 + 10 * 10
    assert t.median_s == pytest.approx(1e-3)
    assert (t.ci_low_s, t.ci_high_s) == (pytest.approx(0.98e-3), pytest.approx(1.02e-3))
    assert len(t.samples_s) == t.n and t.clock == "fake"
    assert time_warnings(t) == []


def test_unreachable_target_stops_at_max_samples_unconverged():
    t = measure_time(
        CountingStep(), TimerPolicy(target_ci_rel=0.001, max_samples=25, **FAST), FakeClock()
    )
    assert t.n == 25 and not t.converged
    assert MeasurementWarning.NOT_CONVERGED in time_warnings(t)


def test_time_cap_stops_early_with_at_least_three_samples():
    t = measure_time(CountingStep(), TimerPolicy(target_ci_rel=0.001, max_time_s=0.0, **FAST), FakeClock())
    assert t.n == 3 and not t.converged
    assert t.ci_level == 0.75


def test_real_cpu_matmul_structure():
    a = torch.randn(128, 128)

    class MM:
        def run(self):
            a @ a

    t = measure_time(MM(), TimerPolicy(max_time_s=0.5, warmup_min_s=0.01), CpuClock())
    assert t.clock == "perf_counter"
    assert t.n >= 3 and len(t.samples_s) == t.n
    assert 0 < t.min_s <= t.median_s <= t.max_s
    assert t.ci_low_s <= t.median_s <= t.ci_high_s
    assert t.p10_s <= t.median_s <= t.p90_s
