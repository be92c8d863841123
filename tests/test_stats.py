"""Statistics on literal samples, with exact expected values."""

import math

import pytest

from xfbench.profilers.stats import CI_LEVEL, EXACT_CI_MAX_N, MIN_SAMPLES_FOR_CI, median_ci_ranks, summarize


def test_median_ci_ranks_exact_binomial():
    # Textbook ranks for a 95% CI of the median: n=10 -> (2, 9), n=20 -> (6, 15), n=6 -> (1, 6).
    assert median_ci_ranks(10) == (2, 9)
    assert median_ci_ranks(20) == (6, 15)
    assert median_ci_ranks(6) == (1, 6)
    # Too few samples for 95%: the whole range.
    assert median_ci_ranks(MIN_SAMPLES_FOR_CI - 1) == (1, 5)


def _coverage(n: int, lo: int) -> float:
    """P(x_(lo) <= median <= x_(n-lo+1)) = 1 - 2 P(B <= lo - 1), B ~ Binomial(n, 1/2) (scipy)."""
    from scipy.stats import binom

    return 1.0 - 2.0 * binom.cdf(lo - 1, n, 0.5)


@pytest.mark.parametrize("n", [*range(MIN_SAMPLES_FOR_CI, 60), 99, 100, 101, 500, EXACT_CI_MAX_N])
def test_exact_ranks_cover_95_percent_and_are_the_tightest_that_do(n):
    lo, hi = median_ci_ranks(n)
    assert hi == n - lo + 1
    assert _coverage(n, lo) >= CI_LEVEL
    assert _coverage(n, lo + 1) < CI_LEVEL or lo + 1 > (n + 1) // 2  # one rank tighter falls short


@pytest.mark.parametrize("n", [EXACT_CI_MAX_N + 1, 2000, 10_000, 100_000])
def test_normal_approximation_ranks_are_within_one_rank_of_exact(n):
    from scipy.stats import binom

    lo, _ = median_ci_ranks(n)
    exact = int(binom.ppf((1 - CI_LEVEL) / 2, n, 0.5))  # largest l with P(B <= l - 1) <= alpha/2, give or take one
    assert abs(lo - exact) <= 1
    assert _coverage(n, lo) >= CI_LEVEL - 0.002


def test_median_ci_ranks_large_n_is_symmetric_and_tight():
    lo, hi = median_ci_ranks(1000)
    assert lo + hi == 1001
    assert 468 <= lo <= 470  # 500 - 1.96 * sqrt(1000) / 2 = 469.0


def test_summarize_literal_samples():
    s = summarize([10.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0])
    assert s.n == 10
    assert s.median == 5.5
    assert s.mean == 5.5
    assert (s.min, s.max) == (1.0, 10.0)
    assert s.p10 == pytest.approx(1.9)
    assert s.p90 == pytest.approx(9.1)
    assert s.iqr == pytest.approx(7.75 - 3.25)
    assert (s.ci_low, s.ci_high) == (2.0, 9.0)
    assert s.ci_rel == pytest.approx(3.5 / 5.5)
    assert s.iqr_over_median == pytest.approx(4.5 / 5.5)


def test_too_few_samples_report_their_true_coverage():
    s = summarize([3.0, 1.0, 2.0])
    assert (s.ci_low, s.ci_high) == (1.0, 3.0)
    assert s.ci_level == 0.75  # 1 - 2 / 2^3: [min, max] misses the median when all 3 fall on one side
    assert summarize([1.0] * 6).ci_level == 0.95


def test_summarize_constant_samples_have_zero_spread():
    s = summarize([2.0] * 12)
    assert s.ci_rel == 0.0 and s.iqr == 0.0 and s.median == 2.0


def test_summarize_rejects_empty():
    with pytest.raises(ValueError):
        summarize([])


def test_zero_median_gives_infinite_relative_spread():
    assert math.isinf(summarize([0.0] * 6).ci_rel)
