"""Two-sample statistics of `xfbench compare`: Mann–Whitney U, Hodges–Lehmann shift and ratio CI, the gate model.

Pure Python (math, statistics, fractions): reports/ runs without numpy or scipy. Tests cross-check
every figure against scipy.stats.
"""

from __future__ import annotations

import math
import random
import statistics
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

from .errors import BadInput

# asv's significance level: `asv.statistics.is_different(..., p_threshold=0.002)` calls two
# runs different only below it (a Mann–Whitney U test on the raw samples). criterion.rs uses
# 0.05 (`significance_level`); xfbench gates CI runs, where a false alarm costs a person's time
# on every pull request, so it takes asv's stricter level.
DEFAULT_ALPHA = 0.002
CI_LEVEL = 0.95  # coverage of the shift and ratio CIs
# Exact null distribution of U while n_a * n_b is at most this and there are no ties (as scipy's
# method="auto" without ties for n <= 8 per side; we go further because the q-binomial
# recursion below costs O(min(n_a, n_b) * n_a * n_b) integer additions: 125k at 50 x 50).
EXACT_MAX_PRODUCT = 2500
# Hodges–Lehmann on n_a * n_b differences: sort them all up to this many, else select the
# needed order statistics without building them (Monahan 1984's idea, random pivots).
BRUTE_MAX_PAIRS = 200_000
# IQR of the standard normal distribution: 2 * Phi^-1(0.75) = 1.3490 (sd = IQR / 1.349).
DEFAULT_POWER = 0.8  # power of the minimum detectable change (the usual 80% of power analysis)

_N = statistics.NormalDist()


@dataclass(frozen=True)
class MannWhitney:
    """A two-sided Mann–Whitney U test of samples a and b.

    Args:
        u: U of sample a: #{(i, j): a_i > b_j} + 0.5 #{a_i == b_j} (scipy's U1).
        p: two-sided p-value: 2 P(U >= max(U_a, U_b)) under H0, at most 1.
        method: 'exact' (null distribution counted) or 'asymptotic' (normal approximation with
            tie and continuity correction).
    """

    u: float
    p: float
    method: str


@dataclass(frozen=True)
class Shift:
    """Hodges–Lehmann estimate of the shift b - a with its distribution-free (Lehmann/Moses) CI.

    Args:
        estimate: median of all n_a * n_b differences b_j - a_i.
        low, high: the k-th smallest and k-th largest difference.
        level: the coverage asked for.
        coverage: what [low, high] covers under the shift model: 1 - 2 P(U <= k - 1), exact on
            the exact path; below `level` where the samples are too small to reach it.
        method: 'exact' or 'asymptotic', how k was chosen (as the U test chose).
    """

    estimate: float
    low: float
    high: float
    level: float
    coverage: float
    method: str


@dataclass(frozen=True)
class RatioCI:
    """Ratio of current to baseline, Hodges–Lehmann on log values: exp of the shift of log(b) - log(a).

    Args:
        ratio: exp(HL estimate of log b - log a): the typical current / baseline.
        low, high: exp of the shift CI's bounds.
        level, coverage, method: as in Shift.
    """

    ratio: float
    low: float
    high: float
    level: float
    coverage: float
    method: str


# --- Mann–Whitney U -----------------------------------------------------------------------


def _check(a: list[float], b: list[float]) -> None:
    if not a or not b:
        raise BadInput(f"a two-sample test needs samples on both sides (got {len(a)} and {len(b)})")


def _ranks(values: list[float]) -> tuple[list[float], list[int]]:
    """Mid-ranks (1-based, ties get their average rank) and the size of each tie group."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    ties = []
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        ties.append(j - i + 1)
        i = j + 1
    return ranks, ties


@lru_cache(maxsize=64)
def u_counts(m: int, n: int) -> tuple[int, ...]:
    """How many of the C(m+n, m) rank orders give U = 0, 1, …, m*n (no ties).

    The generating function of U is the Gaussian binomial [m+n choose m]_q =
    prod_{i=1..m} (1 - q^(n+i)) / (1 - q^i) (Mann & Whitney 1947 in q-series form); each factor
    is a multiplication and an exact division of integer polynomials.
    """
    m, n = min(m, n), max(m, n)
    poly = [1]
    for i in range(1, m + 1):
        grown = poly + [0] * n
        for k in range(len(grown) - 1, n + i - 1, -1):  # times (1 - q^(n+i))
            grown[k] -= grown[k - n - i]
        for k in range(i, len(grown)):  # divided by (1 - q^i): q[k] = p[k] + q[k-i]
            grown[k] += grown[k - i]
        poly = grown
    return tuple(poly[: m * n + 1])


def _exact_sf(u: int, m: int, n: int) -> float:
    """P(U >= u) under H0, without ties."""
    counts = u_counts(m, n)
    return float(Fraction(sum(counts[max(u, 0):]), math.comb(m + n, m)))


def uses_exact(a: list[float], b: list[float]) -> bool:
    """Whether the exact null distribution applies: no ties at all and n_a * n_b <= EXACT_MAX_PRODUCT."""
    return len(a) * len(b) <= EXACT_MAX_PRODUCT and len(set(a) | set(b)) == len(a) + len(b)


def mann_whitney(a: list[float], b: list[float]) -> MannWhitney:
    """Two-sided Mann–Whitney U test of H0 'a and b come from one distribution'.

    Exact when uses_exact(a, b), else the normal approximation with tie correction
    (sd^2 = m n / 12 * ((N + 1) - sum(t^3 - t) / (N (N - 1)))) and continuity correction 0.5,
    as scipy.stats.mannwhitneyu(a, b, alternative='two-sided') with method='exact' / 'asymptotic'.
    """
    _check(a, b)
    m, n = len(a), len(b)
    ranks, ties = _ranks(list(a) + list(b))
    u_a = sum(ranks[:m]) - m * (m + 1) / 2
    big = max(u_a, m * n - u_a)
    if uses_exact(a, b):
        return MannWhitney(u_a, min(1.0, 2 * _exact_sf(round(big), m, n)), "exact")
    total = m + n
    tie_term = sum(t**3 - t for t in ties)
    var = m * n / 12 * ((total + 1) - tie_term / (total * (total - 1)))
    if var <= 0:  # every value equal: nothing tells the samples apart
        return MannWhitney(u_a, 1.0, "asymptotic")
    z = (big - m * n / 2 - 0.5) / math.sqrt(var)
    return MannWhitney(u_a, min(1.0, math.erfc(z / math.sqrt(2))), "asymptotic")  # 2 * (1 - Phi(z))


# --- Hodges–Lehmann shift and its CI ------------------------------------------------------------


def _kth_brute(a: list[float], b: list[float], ks: list[int]) -> list[float]:
    diffs = sorted(y - x for x in a for y in b)
    return [diffs[k - 1] for k in ks]


def _kth_select(a: list[float], b: list[float], k: int, sort_below: int = 4096) -> float:
    """The k-th smallest (1-based) of b_j - a_i without building all m*n of them.

    a and b sorted ascending: row i (fixed a_i) increases along j, and rows decrease with i, so
    two pointers count the differences <= a pivot in O(m + n). Each round keeps, per row, the
    columns that may still hold the answer; a random candidate is the pivot (the answer does
    not depend on which: only the number of rounds does), and under `sort_below` candidates
    are sorted.
    """
    m, n = len(a), len(b)
    lo, hi = [0] * m, [n] * m
    rng = random.Random(0)
    while True:
        sizes = [h - low for low, h in zip(lo, hi, strict=True)]
        left = sum(sizes)
        below = sum(lo)
        if left <= sort_below:
            rest = sorted(b[j] - a[i] for i in range(m) for j in range(lo[i], hi[i]))
            return rest[k - below - 1]
        r = rng.randrange(left)
        i = 0
        while r >= sizes[i]:
            r -= sizes[i]
            i += 1
        pivot = b[lo[i] + r] - a[i]
        less, less_eq = [0] * m, [0] * m
        j_lt = j_le = 0
        for i in range(m):  # a_i grows with i, so each row's count of small differences only grows
            while j_lt < n and b[j_lt] - a[i] < pivot:
                j_lt += 1
            while j_le < n and b[j_le] - a[i] <= pivot:
                j_le += 1
            less[i], less_eq[i] = j_lt, j_le
        if sum(less) < k <= sum(less_eq):
            return pivot
        if k <= sum(less):
            hi = [min(h, c) for h, c in zip(hi, less, strict=True)]
        else:
            lo = [max(low, c) for low, c in zip(lo, less_eq, strict=True)]


def pairwise_order_stats(a: list[float], b: list[float], ks: list[int]) -> list[float]:
    """The ks-th smallest (1-based) of the n_a * n_b differences b_j - a_i."""
    if len(a) * len(b) <= BRUTE_MAX_PAIRS:
        return _kth_brute(a, b, ks)
    a, b = sorted(a), sorted(b)
    return [_kth_select(a, b, k) for k in ks]


def _ci_rank(m: int, n: int, level: float, exact: bool) -> tuple[int, float]:
    """Lehmann's rank k with its coverage: [d_(k), d_(mn+1-k)] covers the true shift with
    probability 1 - 2 P(U <= k - 1) (Hollander & Wolfe, Nonparametric Statistical Methods, 4.3).
    k is the largest rank whose coverage is >= level; 1 (the widest interval) where none is."""
    mn = m * n
    if exact:
        counts = u_counts(m, n)
        total = math.comb(m + n, m)
        alpha = 1 - Fraction(level).limit_denominator(10**6)  # 0.95 -> 1/20 exactly
        k, cum = 1, counts[0]  # cum = #{U <= k - 1}
        while k < (mn + 1) // 2 and Fraction(2 * (cum + counts[k]), total) <= alpha:
            cum += counts[k]
            k += 1
        return k, float(1 - Fraction(2 * cum, total))
    # Normal approximation with continuity correction: P(U <= k - 1) ~ Phi((k - 0.5 - mn/2) / sd).
    sd = math.sqrt(mn * (m + n + 1) / 12)
    z = _N.inv_cdf(1 - (1 - level) / 2)
    k = max(1, min(math.floor(mn / 2 + 0.5 - z * sd), (mn + 1) // 2))
    return k, 1 - 2 * _N.cdf((k - 0.5 - mn / 2) / sd)


def hodges_lehmann(a: list[float], b: list[float], level: float = CI_LEVEL) -> Shift:
    """Hodges–Lehmann shift b - a: the median of all pairwise differences b_j - a_i, and its
    Lehmann/Moses CI (the k-th smallest and largest difference, k from the U distribution:
    exact where mann_whitney is exact, the normal approximation otherwise)."""
    _check(a, b)
    if not 0 < level < 1:
        raise BadInput(f"CI level must be between 0 and 1, got {level}")
    m, n = len(a), len(b)
    mn = m * n
    exact = uses_exact(a, b)
    k, coverage = _ci_rank(m, n, level, exact)
    mid = [(mn + 1) // 2, mn // 2 + 1]  # the middle one, or the middle two
    lo, hi, m1, m2 = pairwise_order_stats(a, b, [k, mn + 1 - k, *mid])
    return Shift((m1 + m2) / 2, lo, hi, level, coverage, "exact" if exact else "asymptotic")


def ratio_ci(a: list[float], b: list[float], level: float = CI_LEVEL) -> RatioCI:
    """Ratio of current (b) to baseline (a), Hodges–Lehmann on log values: exp of
    hodges_lehmann(log a, log b). Values must be positive (times, rates)."""
    if any(x <= 0 for x in a) or any(y <= 0 for y in b):
        raise BadInput("a ratio CI needs positive values (times, rates)")
    s = hodges_lehmann([math.log(x) for x in a], [math.log(y) for y in b], level)
    return RatioCI(math.exp(s.estimate), math.exp(s.low), math.exp(s.high), level, s.coverage, s.method)


# --- the gate model -------------------------------------------------------------------------


def _diff_sd(noise_sd_rel: float, n_a: int, n_b: int) -> float:
    """sd of the difference of the mean log values of n_a and n_b runs: sigma sqrt(1/n_a + 1/n_b)."""
    return noise_sd_rel * math.sqrt(1 / n_a + 1 / n_b)


def expected_false_positive_rate(gate_rel: float, noise_sd_rel: float, n_a: int = 1, n_b: int = 1) -> float:
    """P(a 'slower' alarm between runs of the same code) at a gate of `gate_rel`.

    Model: each run's log value is Normal(mu, sigma) around the code's true value, sigma =
    `noise_sd_rel` (sd of log per-run values, ~ relative sd); the difference of the means of
    n_a and n_b runs is Normal(0, sigma sqrt(1/n_a + 1/n_b)) (sigma sqrt 2 for one run a side),
    and an alarm is a difference beyond log(1 + gate). One-sided: 1 - Phi(log(1 + gate) / that sd).
    """
    if noise_sd_rel <= 0:
        return 0.0
    x = math.log1p(gate_rel) / _diff_sd(noise_sd_rel, n_a, n_b)
    return 0.5 * math.erfc(x / math.sqrt(2))  # 1 - Phi(x), accurate far in the tail


def min_detectable_change(gate_rel: float, noise_sd_rel: float, power: float = DEFAULT_POWER, n_a: int = 1,
                          n_b: int = 1) -> float:
    """The smallest true slowdown the gate catches with probability `power` (same model as
    expected_false_positive_rate): exp(log(1 + gate) + z_power sigma sqrt(1/n_a + 1/n_b)) - 1."""
    if not 0 < power < 1:
        raise BadInput(f"power must be between 0 and 1, got {power}")
    return math.expm1(math.log1p(gate_rel) + _N.inv_cdf(power) * _diff_sd(noise_sd_rel, n_a, n_b))


# --- between runs: Student's t on per-run log values ----------------------------------------
# Samples inside one run cannot see what moves between runs (measured on a 2-core VM: per-run
# medians 5-25% apart, each run's CI +-2%). With repeats, the runs are the unit: each run's
# median is one observation, and the classic two-sample t-test with a pooled variance on their
# logs (equal noise on both sides: same machine, same suite) gives the p-value and interval.


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz; Numerical Recipes 6.4)."""
    tiny, eps = 1e-300, 1e-15
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        m2 = 2 * m
        even = m * (b - m) * x / ((a + m2 - 1) * (a + m2))
        odd = -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1))
        for num in (even, odd):
            d = 1 + num * d
            d = 1 / (d if abs(d) > tiny else tiny)
            c = 1 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1) < eps:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b), for 0 <= x <= 1."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    ln = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1) / (a + b + 2):
        return math.exp(ln) * _betacf(a, b, x) / a
    return 1 - math.exp(ln) * _betacf(b, a, 1 - x) / b


def t_sf(t: float, dof: float) -> float:
    """P(T > t) for Student's t with `dof` degrees of freedom."""
    tail = 0.5 * betainc(dof / 2, 0.5, dof / (dof + t * t))
    return tail if t >= 0 else 1 - tail


def t_ppf(q: float, dof: float) -> float:
    """The q-quantile of Student's t (bisection on t_sf; q in (0, 1))."""
    if not 0 < q < 1:
        raise BadInput(f"a quantile needs 0 < q < 1, got {q}")
    if q < 0.5:
        return -t_ppf(1 - q, dof)
    lo, hi = 0.0, 1.0
    while t_sf(hi, dof) > 1 - q:
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_sf(mid, dof) > 1 - q else (lo, mid)
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return (lo + hi) / 2


@dataclass(frozen=True)
class RunsTest:
    """Two-sample t-test on log per-run values (b against a).

    Args:
        d: mean log b - mean log a (exp(d): the ratio of geometric means).
        se: its standard error, s_pooled sqrt(1/n_a + 1/n_b); dof: n_a + n_b - 2.
        sd: the pooled sd of log values (between-run noise, ~ relative sd).
        p: two-sided p-value; n_a, n_b: runs a side.
    """

    d: float
    se: float
    dof: int
    sd: float
    p: float
    n_a: int
    n_b: int

    def half_width(self, level: float) -> float:
        """Half-width of the two-sided `level` interval of d (0 when the runs agree exactly)."""
        return t_ppf(0.5 + level / 2, self.dof) * self.se if self.se > 0 else 0.0


def paired_runs_test(a: list[float], b: list[float]) -> RunsTest:
    """Student's paired t-test on log(b_i / a_i): round i of each side ran next to each other in
    time (`xfbench ab`), so the machine's drift over the job cancels in each pair's ratio. d is the
    mean log ratio, se = sd(log ratios) / sqrt(n), n - 1 degrees of freedom."""
    if len(a) != len(b) or len(a) < 2:
        raise BadInput("a paired between-run test needs the same number (>= 2) of runs on each side")
    if min(a) <= 0 or min(b) <= 0:
        raise BadInput("a between-run test needs positive values (times, rates)")
    diffs = [math.log(y) - math.log(x) for x, y in zip(a, b, strict=True)]
    d, dof = statistics.fmean(diffs), len(diffs) - 1
    sd = statistics.stdev(diffs) / math.sqrt(2)  # per-run noise: each difference holds two runs' noise
    se = statistics.stdev(diffs) / math.sqrt(len(diffs))
    p = (1.0 if d == 0 else 0.0) if se == 0 else min(1.0, 2 * t_sf(abs(d) / se, dof))
    return RunsTest(d, se, dof, sd, p, len(a), len(b))


def runs_test(a: list[float], b: list[float]) -> RunsTest:
    """Student's two-sample t-test (pooled variance) on the logs of per-run values, >= 2 a side."""
    if len(a) < 2 or len(b) < 2:
        raise BadInput("a between-run test needs at least 2 runs on each side")
    if min(a) <= 0 or min(b) <= 0:
        raise BadInput("a between-run test needs positive values (times, rates)")
    la, lb = [math.log(x) for x in a], [math.log(y) for y in b]
    d = statistics.fmean(lb) - statistics.fmean(la)
    dof = len(a) + len(b) - 2
    sd = math.sqrt(((len(a) - 1) * statistics.variance(la) + (len(b) - 1) * statistics.variance(lb)) / dof)
    se = sd * math.sqrt(1 / len(a) + 1 / len(b))
    if se == 0:
        p = 1.0 if d == 0 else 0.0
    else:
        p = min(1.0, 2 * t_sf(abs(d) / se, dof))
    return RunsTest(d, se, dof, sd, p, len(a), len(b))


# --- noise estimates -----------------------------------------------------------------------


def quartiles(values: list[float]) -> tuple[float, float, float]:
    """Q1, median, Q3 by linear interpolation between order statistics (numpy's default,
    Hyndman & Fan type 7), as profilers.stats.summarize computes them."""
    if not values:
        raise BadInput("quartiles of no values")
    if len(values) == 1:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def iqr_rel(values: list[float]) -> float:
    """IQR / median of `values` (0 for a single value)."""
    q1, q2, q3 = quartiles(values)
    return (q3 - q1) / q2


def range_rel(values: list[float]) -> float | None:
    """(max - min) / median: the spread of a few per-run values; None with fewer than 2."""
    if len(values) < 2:
        return None
    return (max(values) - min(values)) / statistics.median(values)


def log_sd(values: list[float]) -> float | None:
    """Sample sd (n - 1) of log values, ~ the relative sd; None with fewer than 2 values."""
    if len(values) < 2:
        return None
    return statistics.stdev([math.log(v) for v in values])


def pooled_log_sd(groups: list[list[float]]) -> float | None:
    """sd of log values pooled over groups (each around its own mean):
    sqrt(sum (n_g - 1) s_g^2 / sum (n_g - 1)); None without 2 values in some group."""
    dof = sum(len(g) - 1 for g in groups if len(g) >= 2)
    if dof == 0:
        return None
    ss = sum((len(g) - 1) * statistics.variance([math.log(v) for v in g]) for g in groups if len(g) >= 2)
    return math.sqrt(ss / dof)
