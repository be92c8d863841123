"""Statistics of `xfbench compare` on literal samples with exact expected values; scipy cross-checks."""

import itertools
import math
import random
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xfbench.reports import compare_stats as cs
from xfbench.reports.compare_stats import (
    DEFAULT_ALPHA,
    EXACT_MAX_PRODUCT,
    expected_false_positive_rate,
    hodges_lehmann,
    iqr_rel,
    log_sd,
    mann_whitney,
    min_detectable_change,
    pooled_log_sd,
    quartiles,
    range_rel,
    ratio_ci,
    u_counts,
)
from xfbench.reports.errors import BadInput

scipy_stats = pytest.importorskip("scipy.stats")


def _scipy(a, b, method):
    r = scipy_stats.mannwhitneyu(a, b, alternative="two-sided", method=method)
    return float(r.statistic), float(r.pvalue)


# --- the null distribution of U ------------------------------------------------------------


def test_u_counts_three_by_three_by_hand():
    # The 20 rank orders of 3 vs 3: U = 0..9 occur 1,1,2,3,3,3,3,2,1,1 times (Mann & Whitney 1947, Table I).
    assert u_counts(3, 3) == (1, 1, 2, 3, 3, 3, 3, 2, 1, 1)
    assert u_counts(1, 1) == (1, 1)
    assert u_counts(2, 3) == u_counts(3, 2) == (1, 1, 2, 2, 2, 1, 1)


@pytest.mark.parametrize("m, n", [(1, 4), (2, 2), (3, 5), (4, 4), (5, 6)])
def test_u_counts_match_enumerating_every_rank_order(m, n):
    counts = [0] * (m * n + 1)
    for a_ranks in itertools.combinations(range(m + n), m):
        b_ranks = [r for r in range(m + n) if r not in a_ranks]
        counts[sum(x > y for x in a_ranks for y in b_ranks)] += 1
    assert u_counts(m, n) == tuple(counts)
    assert sum(counts) == math.comb(m + n, m)


# --- Mann–Whitney U -----------------------------------------------------------------------


def test_mann_whitney_separated_three_by_three():
    # U = 0; two-sided exact p = 2 P(U <= 0) = 2/20.
    assert mann_whitney([1, 2, 3], [4, 5, 6]) == cs.MannWhitney(0.0, 0.1, "exact")
    assert mann_whitney([4, 5, 6], [1, 2, 3]) == cs.MannWhitney(9.0, 0.1, "exact")


def test_mann_whitney_four_by_five_by_hand():
    a, b = [1.1, 2.3, 0.7, 3.1], [2.0, 4.2, 3.3, 5.0, 2.9]
    # a_i > b_j: 2.3 > 2.0; 3.1 > 2.0 and 2.9 -> U = 3; P(U <= 3) = (1 + 1 + 2 + 3) / C(9, 4) = 7/126.
    r = mann_whitney(a, b)
    assert (r.u, r.method) == (3.0, "exact")
    assert r.p == pytest.approx(14 / 126, rel=1e-15)
    assert (r.u, r.p) == pytest.approx(_scipy(a, b, "exact"), rel=1e-12)


def test_mann_whitney_ties_use_the_normal_approximation_by_hand():
    a, b = [1, 2, 2, 3], [2, 3, 3, 4, 5]
    # mid-ranks: 1 -> 1, the three 2s -> 3, the three 3s -> 6; R_a = 13, U_a = 13 - 10 = 3.
    # var = 20/12 * (10 - (24 + 24) / 72) = 15.556; z = (17 - 10 - 0.5) / 3.944 = 1.648; p = 2 (1 - Phi(z)).
    r = mann_whitney(a, b)
    assert (r.u, r.method) == (3.0, "asymptotic")
    z = 6.5 / math.sqrt(20 / 12 * (10 - 48 / 72))
    assert r.p == pytest.approx(2 * (1 - statistics.NormalDist().cdf(z)), rel=1e-12)
    assert r.p == pytest.approx(0.0993, abs=5e-5)
    assert (r.u, r.p) == pytest.approx(_scipy(a, b, "asymptotic"), rel=1e-12)


def test_mann_whitney_all_equal_is_p_one():
    assert mann_whitney([2.0, 2.0, 2.0], [2.0, 2.0]) == cs.MannWhitney(3.0, 1.0, "asymptotic")
    assert _scipy([2.0, 2.0, 2.0], [2.0, 2.0], "asymptotic") == (3.0, 1.0)


def test_mann_whitney_exact_limit_is_the_product():
    rng = random.Random(7)
    a = [rng.random() for _ in range(50)]
    b = [rng.random() + 0.05 for _ in range(50)]
    assert 50 * 50 == EXACT_MAX_PRODUCT
    exact = mann_whitney(a, b)
    assert exact.method == "exact"
    assert (exact.u, exact.p) == pytest.approx(_scipy(a, b, "exact"), rel=1e-9)
    a.append(rng.random())  # 51 * 50 > EXACT_MAX_PRODUCT
    approx = mann_whitney(a, b)
    assert approx.method == "asymptotic"
    assert (approx.u, approx.p) == pytest.approx(_scipy(a, b, "asymptotic"), rel=1e-12)


def test_mann_whitney_needs_both_samples():
    with pytest.raises(BadInput, match="got 0 and 2"):
        mann_whitney([], [1.0, 2.0])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(0, 10_000), min_size=2, max_size=40, unique=True), st.data())
def test_mann_whitney_exact_agrees_with_scipy(values, data):
    cut = data.draw(st.integers(1, len(values) - 1))
    a, b = [float(v) for v in values[:cut]], [float(v) for v in values[cut:]]
    r = mann_whitney(a, b)
    assert r.method == "exact"
    assert (r.u, r.p) == pytest.approx(_scipy(a, b, "exact"), rel=1e-9, abs=1e-15)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.integers(0, 6), min_size=1, max_size=30),
    st.lists(st.integers(0, 6), min_size=1, max_size=30),
)
def test_mann_whitney_with_ties_agrees_with_scipy_asymptotic(a, b):
    r = mann_whitney(a, b)
    method = "exact" if cs.uses_exact(a, b) else "asymptotic"
    assert r.method == method
    assert (r.u, r.p) == pytest.approx(_scipy(a, b, method), rel=1e-9, abs=1e-15)


# --- Hodges–Lehmann ------------------------------------------------------------------------


def test_hodges_lehmann_three_by_three_by_hand():
    # differences b_j - a_i: 1, 2, 2, 3, 3, 3, 4, 4, 5 -> median 3; k = 1 covers 1 - 2/20 = 90%.
    s = hodges_lehmann([1, 2, 3], [4, 5, 6], level=0.9)
    assert s == cs.Shift(3.0, 1, 5, 0.9, 0.9, "exact")
    # 95% is out of reach with 3 + 3 samples: the widest interval, with the coverage it has.
    s95 = hodges_lehmann([1, 2, 3], [4, 5, 6])
    assert (s95.low, s95.high, s95.level, s95.coverage) == (1, 5, 0.95, 0.9)


def test_hodges_lehmann_four_by_five_by_hand():
    a, b = [1.1, 2.3, 0.7, 3.1], [2.0, 4.2, 3.3, 5.0, 2.9]
    # sorted differences: -1.1 -0.3 -0.2 0.2 0.6 0.9 1.0 1.1 1.3 1.8 | 1.9 1.9 2.2 2.2 2.6 2.7 3.1 3.5 3.9 4.3
    # median (1.8 + 1.9) / 2; at 90%: P(U <= 2) = 4/126 <= 0.05 < P(U <= 3) = 7/126 -> k = 3.
    s = hodges_lehmann(a, b, level=0.9)
    assert s.estimate == pytest.approx(1.85)
    assert (s.low, s.high) == pytest.approx((-0.2, 3.5))
    assert s.coverage == pytest.approx(1 - 8 / 126)


@pytest.mark.parametrize("n, critical", [(5, 2), (10, 23), (20, 127)])
def test_ci_rank_is_the_tabled_critical_value_plus_one(n, critical):
    # Two-sided 5% critical values of U for n1 = n2 = n (Mann-Whitney tables): the CI runs from
    # the (critical + 1)-th smallest difference.
    k, coverage = cs._ci_rank(n, n, 0.95, exact=True)
    assert k == critical + 1
    assert coverage >= 0.95
    counts, total = u_counts(n, n), math.comb(2 * n, n)
    assert 1 - 2 * sum(counts[: k + 1]) / total < 0.95  # one rank tighter falls short


@pytest.mark.parametrize("m, n", [(40, 60), (50, 50), (30, 80)])
def test_normal_ci_rank_is_within_one_of_exact(m, n):
    k_exact, cov_exact = cs._ci_rank(m, n, 0.95, exact=True)
    k_norm, cov_norm = cs._ci_rank(m, n, 0.95, exact=False)
    assert abs(k_exact - k_norm) <= 1
    assert cov_norm == pytest.approx(cov_exact, abs=0.002)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(-50, 50), min_size=1, max_size=25),
    st.lists(st.integers(-50, 50), min_size=1, max_size=25),
)
def test_selection_finds_the_same_order_statistics_as_sorting(a, b):
    diffs = sorted(y - x for x in a for y in b)
    sa, sb = sorted(a), sorted(b)
    for k in range(1, len(diffs) + 1):
        assert cs._kth_select(sa, sb, k, sort_below=0) == diffs[k - 1]  # pivot rounds to the end


def test_large_samples_take_the_selection_path_and_agree(monkeypatch):
    rng = random.Random(11)
    a = [rng.lognormvariate(0, 0.1) for _ in range(300)]
    b = [rng.lognormvariate(0.05, 0.1) for _ in range(400)]
    brute = hodges_lehmann(a, b)
    monkeypatch.setattr(cs, "BRUTE_MAX_PAIRS", 0)
    assert hodges_lehmann(a, b) == brute
    assert brute.method == "asymptotic"


def _coverage(m, n, trials, seed, level=0.95):
    rng = random.Random(seed)
    hit = 0
    for _ in range(trials):
        a = [rng.expovariate(1.0) for _ in range(m)]
        b = [rng.expovariate(1.0) + 0.7 for _ in range(n)]  # true shift 0.7
        s = hodges_lehmann(a, b, level)
        hit += s.low <= 0.7 <= s.high
    return hit / trials


def test_hl_ci_covers_the_true_shift_about_as_often_as_it_says():
    # Exact path: the coverage is >= 95% by construction (here 95.5% for 12 vs 12); 400 trials
    # put the observed share within about 2.2 pp of it.
    assert 0.93 <= _coverage(12, 12, 400, seed=1) <= 0.99
    # Normal-approximation path (60 x 60 > EXACT_MAX_PRODUCT).
    assert 0.92 <= _coverage(60, 60, 200, seed=2) <= 0.99


def test_ratio_ci_is_hodges_lehmann_on_logs():
    # current / baseline ratios: 3, 1.5, 0.75, 6, 3, 1.5, 12, 6, 3 -> median 3; 90%: the extremes.
    r = ratio_ci([1, 2, 4], [3, 6, 12], level=0.9)
    assert (r.ratio, r.low, r.high) == pytest.approx((3.0, 0.75, 12.0))
    assert (r.level, r.coverage, r.method) == (0.9, 0.9, "exact")
    with pytest.raises(BadInput, match="positive"):
        ratio_ci([1.0, 0.0], [1.0])


def test_ratio_ci_of_a_scaled_copy_is_the_scale():
    base = [1.0 + 0.001 * i for i in range(20)]
    r = ratio_ci(base, [1.1 * x for x in base])
    assert r.ratio == pytest.approx(1.1, rel=1e-12)
    assert r.low < 1.1 < r.high


# --- the gate model --------------------------------------------------------------------------


def test_false_positive_rate_of_the_vm_medians():
    # Three back-to-back runs of naive attention on the 2-core VM: 36.8, 46.7, 44.2 ms.
    sigma = log_sd([36.8, 46.7, 44.2])
    assert sigma == pytest.approx(0.124740, abs=1e-6)
    fpr = expected_false_positive_rate(0.02, sigma)
    assert fpr == pytest.approx(float(scipy_stats.norm.sf(math.log(1.02) / (sigma * math.sqrt(2)))), rel=1e-12)
    assert fpr == pytest.approx(0.4553, abs=1e-4)  # a 2% gate: a false alarm almost every other run


def test_false_positive_rate_literals():
    # log(1.05) / (0.02 * sqrt 2) = 1.72501 -> 1 - Phi = 0.042264
    assert expected_false_positive_rate(0.05, 0.02) == pytest.approx(0.042264, abs=1e-6)
    assert expected_false_positive_rate(0.05, 0.0) == 0.0


def test_min_detectable_change_literals_and_power():
    assert min_detectable_change(0.05, 0.0) == pytest.approx(0.05)
    # exp(log 1.05 + 0.84162 * 0.02 * sqrt 2) - 1 = exp(0.048790 + 0.023806) - 1 = 0.075295
    mdc = min_detectable_change(0.05, 0.02)
    assert mdc == pytest.approx(0.075295, abs=1e-6)
    # A true change of exactly the MDC is flagged with the asked power.
    sd = 0.02 * math.sqrt(2)
    assert float(scipy_stats.norm.sf(math.log(1.05), loc=math.log1p(mdc), scale=sd)) == pytest.approx(0.8)
    assert min_detectable_change(0.05, 0.02, power=0.5) == pytest.approx(0.05)
    with pytest.raises(BadInput):
        min_detectable_change(0.05, 0.02, power=1.0)


def test_default_alpha_is_asvs():
    assert DEFAULT_ALPHA == 0.002


# --- noise estimates -----------------------------------------------------------------------


def test_quartiles_are_numpys_linear():
    import numpy as np

    v = [10.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]
    assert quartiles(v) == pytest.approx(tuple(np.percentile(v, [25, 50, 75])))
    assert quartiles(v) == pytest.approx((3.25, 5.5, 7.75))
    assert iqr_rel(v) == pytest.approx(4.5 / 5.5)
    assert quartiles([4.0]) == (4.0, 4.0, 4.0)


def test_spread_helpers():
    assert range_rel([36.8, 46.7, 44.2]) == pytest.approx((46.7 - 36.8) / 44.2)
    assert range_rel([1.0]) is None
    assert log_sd([2.0]) is None
    # pooled over two groups of 2: each has sample variance d^2 / 2 of its logs.
    d1, d2 = math.log(1.1), math.log(1.2)
    assert pooled_log_sd([[1.0, 1.1], [2.0, 2.4]]) == pytest.approx(math.sqrt((d1**2 / 2 + d2**2 / 2) / 2))
    assert pooled_log_sd([[1.0], [2.0]]) is None


# --- between runs: Student's t ------------------------------------------------------------------


@pytest.mark.parametrize("dof", [1, 2, 4, 8, 30, 200])
def test_student_t_tail_and_quantile_match_scipy(dof):
    from scipy import stats

    from xfbench.reports.compare_stats import t_ppf, t_sf

    for t in (0.0, 0.1, 1.0, 2.5, 7.0, 40.0):
        assert t_sf(t, dof) == pytest.approx(stats.t.sf(t, dof), rel=1e-9, abs=1e-300)
        assert t_sf(-t, dof) == pytest.approx(stats.t.cdf(t, dof), rel=1e-9)
    for q in (0.6, 0.975, 0.999, 0.9995):
        assert t_ppf(q, dof) == pytest.approx(stats.t.ppf(q, dof), rel=1e-8)
        assert t_ppf(1 - q, dof) == pytest.approx(stats.t.ppf(1 - q, dof), rel=1e-8)


def test_runs_test_is_students_pooled_t_on_logs():
    from scipy import stats

    from xfbench.reports.compare_stats import runs_test

    a, b = [1.0, 1.1, 0.9], [1.2, 1.3, 1.25]
    r = runs_test(a, b)
    ref = stats.ttest_ind([math.log(x) for x in b], [math.log(x) for x in a])
    assert r.p == pytest.approx(ref.pvalue, rel=1e-12)
    assert r.d / r.se == pytest.approx(ref.statistic, rel=1e-12)
    assert (r.dof, r.n_a, r.n_b) == (4, 3, 3)
    assert r.half_width(0.95) == pytest.approx(stats.t.ppf(0.975, 4) * r.se, rel=1e-9)
    same = runs_test([2.0, 2.0], [2.0, 2.0])
    assert (same.p, same.se, same.half_width(0.95)) == (1.0, 0.0, 0.0)
    with pytest.raises(BadInput):
        runs_test([1.0], [1.0, 2.0])


def test_gate_model_with_repeats_uses_the_sd_of_a_difference_of_means():
    from xfbench.reports.compare_stats import expected_false_positive_rate, min_detectable_change

    # 5 runs a side: the difference of means has sd sigma * sqrt(2/5) instead of sigma * sqrt(2).
    assert expected_false_positive_rate(0.05, 0.03, 5, 5) == pytest.approx(
        1 - statistics.NormalDist().cdf(math.log(1.05) / (0.03 * math.sqrt(0.4))))
    assert min_detectable_change(0.05, 0.03, n_a=5, n_b=5) == pytest.approx(
        math.expm1(math.log(1.05) + statistics.NormalDist().inv_cdf(0.8) * 0.03 * math.sqrt(0.4)))


def test_paired_runs_test_is_students_paired_t_on_log_ratios():
    from scipy import stats

    from xfbench.reports.compare_stats import paired_runs_test

    a, b = [1.0, 1.2, 0.9, 1.1], [1.1, 1.3, 1.0, 1.25]  # drift moves both sides of each round together
    r = paired_runs_test(a, b)
    ref = stats.ttest_rel([math.log(x) for x in b], [math.log(x) for x in a])
    assert r.p == pytest.approx(ref.pvalue, rel=1e-12)
    assert r.d / r.se == pytest.approx(ref.statistic, rel=1e-12)
    assert r.dof == 3
    with pytest.raises(BadInput):
        paired_runs_test([1.0, 2.0], [1.0])
