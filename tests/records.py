"""What test records need to be like the writer's: an ok record carries its time (the loader
refuses one that does not, reports.contract.check_loaded)."""

from __future__ import annotations

from xfbench.profilers.stats import summarize
from xfbench.reports.schema import TimeStats


def time_stats(samples: list[float] | None = None, *, clock: str = "perf_counter") -> TimeStats:
    """TimeStats of `samples` (per-call seconds; default three around 1 ms), as the timer summarizes them."""
    samples = samples or [0.00099, 0.001, 0.00101]
    s = summarize(samples)
    return TimeStats(
        n=s.n, calls_per_sample=1, warmup_calls=0, median_s=s.median, mean_s=s.mean, min_s=s.min, max_s=s.max,
        p10_s=s.p10, p90_s=s.p90, iqr_s=s.iqr, iqr_over_median=s.iqr_over_median, ci_level=s.ci_level,
        ci_low_s=s.ci_low, ci_high_s=s.ci_high, ci_rel=s.ci_rel, target_ci_rel=0.02, converged=True,
        total_s=sum(samples), clock=clock, samples_s=list(samples),
    )
