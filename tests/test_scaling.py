"""Log-log exponent fits on literal data."""

import pytest

from xfbench.reports.scaling import fit_loglog, larger_half


def test_fit_recovers_exact_power_laws():
    xs = [256, 512, 1024, 2048]
    assert fit_loglog(xs, [x**2 for x in xs]) == pytest.approx(2.0)
    assert fit_loglog(xs, [3 * x for x in xs]) == pytest.approx(1.0)
    assert fit_loglog(xs, [7.0] * 4) == pytest.approx(0.0)


def test_fit_rejects_degenerate_input():
    assert fit_loglog([1, 1], [2, 3]) is None
    assert fit_loglog([1, 2], [0, 3]) is None


def test_larger_half_keeps_upper_sizes():
    pts = [(n, float(n)) for n in (256, 512, 1024, 2048, 4096)]
    assert [p[0] for p in larger_half(pts)] == [1024, 2048, 4096]
    assert [p[0] for p in larger_half(pts[:2])] == [256, 512]
