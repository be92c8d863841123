"""Pure statistics over raw time samples: quantiles, a distribution-free CI of the median."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

import numpy as np

# Two-sided 95% confidence for the median from order statistics (no normality assumed:
# benchmark times are skewed, with a long right tail).
CI_LEVEL = 0.95
# Below this many samples no order-statistic interval reaches 95% coverage
# (n=5 gives 1 - 2/32 = 93.75% even for [min, max]).
MIN_SAMPLES_FOR_CI = 6
# Exact binomial ranks up to this many samples, normal approximation above (tests check both
# against scipy's binomial distribution).
EXACT_CI_MAX_N = 1000


@dataclass(frozen=True)
class Summary:
    """Statistics of one sample list; see TimeStats in reports.schema for field meanings."""

    n: int
    median: float
    mean: float
    min: float
    max: float
    p10: float
    p90: float
    iqr: float
    ci_low: float
    ci_high: float
    ci_level: float = CI_LEVEL  # CI_LEVEL, or less when too few samples reach it (n < 6)

    @property
    def iqr_over_median(self) -> float:
        return self.iqr / self.median if self.median > 0 else math.inf

    @property
    def ci_rel(self) -> float:
        """Largest distance of a CI bound from the median, relative to the median."""
        if self.median <= 0:
            return math.inf
        return max(self.median - self.ci_low, self.ci_high - self.median) / self.median


def median_ci_ranks(n: int, level: float = CI_LEVEL) -> tuple[int, int]:
    """1-based ranks (l, u) so that [x_(l), x_(u)] covers the median with prob >= level.

    Uses the exact binomial(n, 1/2) distribution: coverage = 1 - 2 * P(B <= l - 1), with
    l as large as possible (tightest interval). For n < MIN_SAMPLES_FOR_CI returns (1, n).
    """
    alpha_half = (1.0 - level) / 2.0
    if n > EXACT_CI_MAX_N:
        # Normal approximation of the binomial; within one rank of exact at this size.
        z = statistics.NormalDist().inv_cdf(1.0 - alpha_half)
        lo = max(1, math.floor((n - z * math.sqrt(n)) / 2.0))
        return lo, n - lo + 1
    cdf = 0.0
    best = 1
    for k in range(n):  # P(B <= k), pmf in log space so large n cannot overflow
        cdf += math.exp(
            math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) - n * math.log(2)
        )
        if cdf > alpha_half:
            break
        best = k + 1  # l = k + 1 satisfies P(B <= l - 1) <= alpha/2
    best = min(best, (n + 1) // 2)
    return best, n - best + 1


def summarize(samples: list[float]) -> Summary:
    """All statistics of a sample list (order of samples does not matter)."""
    if not samples:
        raise ValueError("no samples to summarize")
    xs = np.sort(np.asarray(samples, dtype=np.float64))
    n = len(xs)
    lo, hi = median_ci_ranks(n)
    # [min, max] of n < MIN_SAMPLES_FOR_CI samples covers the median with 1 - 2/2^n only.
    level = CI_LEVEL if n >= MIN_SAMPLES_FOR_CI else 1.0 - 2.0 / 2.0**n
    p10, q1, median, q3, p90 = (float(q) for q in np.quantile(xs, [0.10, 0.25, 0.5, 0.75, 0.90]))  # 'linear'
    return Summary(
        n=n,
        median=median,
        mean=math.fsum(samples) / n,
        min=float(xs[0]),
        max=float(xs[-1]),
        p10=p10,
        p90=p90,
        iqr=q3 - q1,
        ci_low=float(xs[lo - 1]),
        ci_high=float(xs[hi - 1]),
        ci_level=level,
    )
