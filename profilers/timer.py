"""Adaptive timer: warm-up until stable, then timed windows until the median's CI is tight.

One code path for CPU and CUDA: a Clock brackets a window of `calls` calls and is read
once per window (CUDA: events, one synchronize at the end of the window; CPU:
perf_counter). Per-call time of a window is one sample; raw samples are kept. Warm-up
and the time cap also read the Clock (`now()`), so a FakeClock run is reproducible.
"""

from __future__ import annotations

import math
import statistics
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Protocol

import torch

from ..reports.schema import TimeStats
from .stats import MIN_SAMPLES_FOR_CI, summarize

# Warm-up is stable when the last WARMUP_WINDOW call times lie within this ratio.
WARMUP_STABLE_RATIO = 1.10
WARMUP_WINDOW = 3
# At the time cap, stop only once this many samples exist (a slow step still gets a spread).
MIN_SAMPLES_AT_CAP = 3


@dataclass(frozen=True)
class TimerPolicy:
    """When to stop warming up and when to stop sampling.

    Args:
        target_ci_rel: stop when the 95% CI of the median lies within this fraction of it.
        max_time_s: cap on the timed phase of one case; reaching it gives converged=False.
        min_samples: fewest timed windows (>= 6 gives a real 95% CI).
        max_samples: most timed windows.
        min_window_s: calls per window are raised until a window lasts about this long,
            so a fast kernel is not dominated by clock overhead.
        warmup_min_s: warm up at least this long ...
        warmup_max_s: ... and at most this long, stable or not.
        warmup_min_calls: fewest warm-up calls (the first call pays for lazy init).
    """

    target_ci_rel: float = 0.02
    max_time_s: float = 5.0
    min_samples: int = 10
    max_samples: int = 2000
    min_window_s: float = 0.01
    warmup_min_s: float = 0.1
    warmup_max_s: float = 3.0
    warmup_min_calls: int = 2


class Clock(Protocol):
    """Brackets one timed window, and tells the timer how much time has passed."""

    name: str
    # Host time from start() until the last call of the window returned, before any
    # synchronize (seconds), for clocks whose reading is not the host's own; else None.
    enqueue_s: float | None

    def start(self) -> None: ...

    def stop(self, calls: int) -> float:
        """Seconds since start() for a window of `calls` calls, after synchronizing."""
        ...

    def now(self) -> float:
        """Seconds on this clock's time line: warm-up and the time cap are measured with it."""
        ...


class CpuClock:
    name = "perf_counter"
    enqueue_s = None  # the host's time is the measured time

    def start(self) -> None:
        self._t0 = time.perf_counter()

    def stop(self, calls: int) -> float:
        return time.perf_counter() - self._t0

    def now(self) -> float:
        return time.perf_counter()


class CudaClock:
    """CUDA events on the current stream: the only synchronize is on the end event.

    The host's enqueue time of the window (start event recorded -> last call returned) is
    kept in `enqueue_s`: when it is as long as the GPU time, the GPU waited for Python.
    """

    name = "cuda_event"

    def __init__(self, device: torch.device):
        self.device = device
        self._start = torch.cuda.Event(enable_timing=True)
        self._end = torch.cuda.Event(enable_timing=True)
        self.enqueue_s: float | None = None

    def start(self) -> None:
        self._start.record(torch.cuda.current_stream(self.device))
        self._t0 = time.perf_counter()

    def stop(self, calls: int) -> float:
        self.enqueue_s = time.perf_counter() - self._t0  # the calls have returned; the GPU may still run
        self._end.record(torch.cuda.current_stream(self.device))
        self._end.synchronize()
        return self._start.elapsed_time(self._end) / 1e3

    def now(self) -> float:
        return time.perf_counter()


class FakeClock:
    """Deterministic clock for tests and `--fake-clock`: per-call time times a fixed pattern.

    The step still runs; only the time read is synthetic, and so is the clock's time line:
    now() is the sum of the times stop() returned, so warm-up and the time cap end after
    the same calls on every run and statistics and reports are reproducible to the last digit.
    """

    name = "fake"
    enqueue_s = None
    PATTERN = (1.00, 1.01, 0.99, 1.02, 0.98, 1.00, 1.01, 0.99)

    def __init__(self, per_call_s: float = 1e-3):
        self.per_call_s = per_call_s
        self._i = 0
        self._now = 0.0

    def start(self) -> None:
        pass

    def stop(self, calls: int) -> float:
        factor = self.PATTERN[self._i % len(self.PATTERN)]
        self._i += 1
        elapsed = self.per_call_s * calls * factor
        self._now += elapsed
        return elapsed

    def now(self) -> float:
        return self._now


def make_clock(device: torch.device, fake: bool = False) -> Clock:
    if fake:
        return FakeClock()
    return CudaClock(device) if device.type == "cuda" else CpuClock()


class Runnable(Protocol):
    def run(self) -> object: ...


class Agreement(Protocol):
    """Turns one process's timer decisions into the ones every process acts on."""

    def stop(self, stop: bool) -> bool:
        """Whether to stop (warming up, or sampling) now."""
        ...

    def calls(self, calls: int) -> int:
        """How many calls a timed window holds."""
        ...


class Alone:
    """One process: its own decisions stand."""

    def stop(self, stop: bool) -> bool:
        return stop

    def calls(self, calls: int) -> int:
        return calls


def measure_time(
    step: Runnable, policy: TimerPolicy, clock: Clock, window: AbstractContextManager | None = None,
    agree: Agreement = Alone(),
) -> TimeStats:
    """Warm up `step`, then time windows of it until the CI target or the cap.

    `window` (e.g. a telemetry sampler) is entered right before the first timed window and
    exited right after the last, so it brackets exactly the timed phase, not the warm-up.
    `agree` turns this process's decisions (stop warming up, window length, stop sampling)
    into the ones every process acts on: its own alone; for data-parallel ranks, rank 0's
    broadcast to all (profilers.collective), so every rank runs the same warm-up calls and
    windows and none waits forever in a collective the others have stopped calling.
    """
    warm: list[float] = []
    t_begin = clock.now()
    while True:
        clock.start()
        step.run()
        warm.append(clock.stop(1))
        elapsed = clock.now() - t_begin
        if len(warm) >= policy.warmup_min_calls:
            last = warm[-WARMUP_WINDOW:]
            stable = len(last) == WARMUP_WINDOW and max(last) <= WARMUP_STABLE_RATIO * min(last)
            done = (elapsed >= policy.warmup_min_s and stable) or elapsed >= policy.warmup_max_s
            if agree.stop(done):
                break

    per_call = sorted(warm[-WARMUP_WINDOW:])[len(warm[-WARMUP_WINDOW:]) // 2]
    calls = max(1, math.ceil(policy.min_window_s / per_call)) if per_call > 0 else 1
    calls = agree.calls(calls)  # ranks run windows of the same length
    min_samples = max(policy.min_samples, MIN_SAMPLES_FOR_CI)
    samples: list[float] = []
    enqueue: list[float] = []  # host enqueue time per call of each window (clocks that have one)
    converged = False
    with window if window is not None else nullcontext():
        t0 = clock.now()
        while True:
            clock.start()
            for _ in range(calls):
                step.run()
            samples.append(clock.stop(calls) / calls)
            if clock.enqueue_s is not None:
                enqueue.append(clock.enqueue_s / calls)
            n = len(samples)
            spent = clock.now() - t0
            check = n >= min_samples and (n < 100 or n % 10 == 0)  # summarizing is O(n log n)
            tight = check and summarize(samples).ci_rel <= policy.target_ci_rel
            capped = n >= policy.max_samples or (spent >= policy.max_time_s and n >= MIN_SAMPLES_AT_CAP)
            # One decision per window, made (for ranks: on rank 0) and acted on by all.
            if agree.stop(tight or capped):
                converged = tight
                break
    s = summarize(samples)
    return TimeStats(
        n=s.n,
        calls_per_sample=calls,
        warmup_calls=len(warm),
        median_s=s.median,
        mean_s=s.mean,
        min_s=s.min,
        max_s=s.max,
        p10_s=s.p10,
        p90_s=s.p90,
        iqr_s=s.iqr,
        iqr_over_median=s.iqr_over_median,
        ci_level=s.ci_level,
        ci_low_s=s.ci_low,
        ci_high_s=s.ci_high,
        ci_rel=s.ci_rel,
        target_ci_rel=policy.target_ci_rel,
        converged=converged,
        total_s=math.fsum(samples) * calls,
        clock=clock.name,
        samples_s=samples,
        host_enqueue_median_s=statistics.median(enqueue) if enqueue else None,
    )
