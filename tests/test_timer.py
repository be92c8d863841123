"""The adaptive timer, made deterministic with the packaged FakeClock; one real CPU run; the
launch-bound check on literal timings."""

import pytest
import torch

from xfbench.profilers.timer import CpuClock, FakeClock, TimerPolicy, measure_time
from xfbench.profilers.warnings import LAUNCH_BOUND_FRACTION, MeasurementWarning, launch_bound, time_warnings
from xfbench.reports.schema import TimeStats
from xfbench.workloads.attention import AttentionConfig, cases, prepare


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
    assert t.clock == "perf_counter" and t.host_enqueue_median_s is None  # the host's time is the time
    assert t.n >= 3 and len(t.samples_s) == t.n
    assert 0 < t.min_s <= t.median_s <= t.max_s
    assert t.ci_low_s <= t.median_s <= t.ci_high_s
    assert t.p10_s <= t.median_s <= t.p90_s


def test_fake_clock_runs_repeat_exactly_on_a_real_step():
    # Warm-up and the time cap run on the FakeClock's own time line, not the real clock, so
    # the real step's speed changes nothing: 100 warm-up calls reach 0.1 s of fake time
    # (the pattern averages 1 ms a call), then 10-call windows (10 ms / 1.01 ms, the median
    # of the last three warm-up calls) until 0.2 s of fake time: 21 windows.
    cpu = torch.device("cpu")
    (case,) = cases(AttentionConfig(seq_lens=[32], impls=["sdpa"], heads=2, head_dim=16), cpu)
    policy = TimerPolicy(target_ci_rel=0.001, max_time_s=0.2, warmup_min_s=0.1)
    runs = [measure_time(prepare(case, cpu), policy, FakeClock()) for _ in range(2)]
    first, second = (r.model_dump() for r in runs)
    assert first == second
    assert (runs[0].warmup_calls, runs[0].calls_per_sample, runs[0].n) == (100, 10, 21)
    assert not runs[0].converged and runs[0].host_enqueue_median_s is None


class EnqueueClock(FakeClock):
    """A FakeClock whose host enqueue of each window takes `share` of its time (a launch-bound GPU)."""

    def __init__(self, share: float):
        super().__init__()
        self.share = share

    def stop(self, calls: int) -> float:
        elapsed = super().stop(calls)
        self.enqueue_s = self.share * elapsed
        return elapsed


def test_host_enqueue_is_kept_per_call_and_warns_when_launch_bound():
    t = measure_time(CountingStep(), TimerPolicy(target_ci_rel=0.025, **FAST), EnqueueClock(0.95))
    assert t.host_enqueue_median_s == pytest.approx(0.95 * t.median_s)
    assert MeasurementWarning.LAUNCH_BOUND in time_warnings(t)
    busy = measure_time(CountingStep(), TimerPolicy(target_ci_rel=0.025, **FAST), EnqueueClock(0.30))
    assert busy.host_enqueue_median_s == pytest.approx(0.30 * busy.median_s)
    assert time_warnings(busy) == []


def timing(median_s: float, host_enqueue_median_s: float | None) -> TimeStats:
    """A converged, quiet timing literal."""
    return TimeStats(
        n=10, calls_per_sample=1, warmup_calls=3, median_s=median_s, mean_s=median_s, min_s=median_s,
        max_s=median_s, p10_s=median_s, p90_s=median_s, iqr_s=0.0, iqr_over_median=0.0, ci_low_s=median_s,
        ci_high_s=median_s, ci_rel=0.0, target_ci_rel=0.02, converged=True, total_s=10 * median_s,
        clock="cuda_event", samples_s=[median_s] * 10, host_enqueue_median_s=host_enqueue_median_s,
    )


def test_launch_bound_is_enqueue_at_a_named_fraction_of_gpu_time():
    assert launch_bound(timing(1e-3, LAUNCH_BOUND_FRACTION * 1e-3))
    assert launch_bound(timing(1e-3, 1.2e-3))  # the host is slower than the kernels
    assert not launch_bound(timing(1e-3, 0.8e-3))
    assert not launch_bound(timing(1e-3, None))  # CPU and fake clocks
    assert time_warnings(timing(20e-6, 19e-6)) == [MeasurementWarning.LAUNCH_BOUND]
    hint = MeasurementWarning.LAUNCH_BOUND.hint
    assert "CUDA graph" in hint and "torch.compile" in hint and "larger batch" in hint
