"""Display units: the unit is picked after rounding, and a value with a unit is never in scientific notation."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xfbench.reports.units import (
    fmt_bytes,
    fmt_energy,
    fmt_exponent,
    fmt_flop_count,
    fmt_flops,
    fmt_hours,
    fmt_kwh,
    fmt_pct,
    fmt_rate,
    fmt_size,
    fmt_time,
    fmt_time_ci,
    plain,
    sci,
)

MiB = 2**20


@pytest.mark.parametrize(
    "seconds, text",
    [
        (0.9996, "1 s"),  # was '1e+03 ms'
        (0.9995, "1 s"),
        (0.9994, "999 ms"),
        (999.5e-3, "1 s"),
        (999.9996e-3, "1 s"),
        (1.0, "1 s"),
        (1.5e-3, "1.5 ms"),
        (0.0009995, "0.999 ms"),  # a floating-point tie: rounds down in ms rather than to '1000 µs'
        (999.9996e-9, "1 µs"),
        (5000.0, "5000 s"),
        (123_456.0, "123,000 s"),  # above the largest unit: digit groups, not 1.23e+05
        (-0.0005, "-500 µs"),
        (-0.9996, "-1 s"),
        (0.0, "0 s"),
        (1e-12, "0.001 ns"),  # below the smallest unit: zeros, not 1e-03
        (1.234e-14, "0.0000123 ns"),
    ],
)
def test_fmt_time(seconds, text):
    assert fmt_time(seconds) == text


@pytest.mark.parametrize(
    "n, text",
    [
        (1010 * MiB, "1010 MiB"),  # was '1.01e+03 MiB'
        (1023.9 * 1024, "1 MiB"),  # 0.99990 MiB rounds to 1
        (1023.4 * 1024, "1020 KiB"),
        (1000, "1000 B"),
        (1024, "1 KiB"),
        (120 * MiB, "120 MiB"),
        (5 * 2**50, "5120 TiB"),
        (12_345 * 2**40, "12,300 TiB"),
        (-1010 * MiB, "-1010 MiB"),
        (0, "0 B"),
        (0.5, "0.5 B"),
    ],
)
def test_fmt_bytes(n, text):
    assert fmt_bytes(n) == text


@pytest.mark.parametrize(
    "n, text",
    [
        (999.5, "999.5"),
        (999.9996, "1000"),  # 6 significant digits for a non-integer below 10,000
        (1000, "1000"),
        (9999, "9999"),
        (10_000, "10K"),
        (999_999, "1M"),  # was '1e+03K'
        (999_499, "999K"),
        (1.3e9, "1.3B"),
        (1e12, "1T"),  # was '1e+03B'
        (1e13, "10T"),
        (1e16, "10,000T"),
        (-20_000, "-20K"),
        (0, "0"),
        (0.5, "0.5"),
        (1234.5678, "1234.57"),
    ],
)
def test_fmt_size(n, text):
    assert fmt_size(n) == text


@pytest.mark.parametrize(
    "per_s, text",
    [(999.5, "1 ktok/s"), (999.9996, "1 ktok/s"), (1000, "1 ktok/s"), (999.4, "999 tok/s"), (2e13, "20 Ttok/s"),
     (4.2e15, "4.2 Ptok/s"), (2e19, "20 Etok/s"),
     (2e22, "20,000 Etok/s"),
     (0.001, "0.001 tok/s"), (-2500.0, "-2.5 ktok/s"), (0, "0 tok/s")],
)
def test_fmt_rate(per_s, text):
    assert fmt_rate(per_s, "tok") == text


def test_fmt_flops_energy_kwh():
    assert fmt_flops(999.6e9) == "1 TFLOP/s" and fmt_flops(1.2e15) == "1.2 PFLOP/s" and fmt_flops(0) == "0 FLOP/s"
    assert fmt_flops(6e21) == "6000 EFLOP/s"  # --peak-tflops 6e9 was '6,000,000,000 TFLOP/s'
    assert fmt_flops(999.6e15) == "1 EFLOP/s" and fmt_flops(3.5e8) == "350 MFLOP/s"
    assert fmt_energy(999.6) == "1 kJ" and fmt_energy(2.5e6) == "2500 kJ" and fmt_energy(1e-9) == "0.001 µJ"
    assert fmt_kwh(1.234e7) == "12.3 GWh" and fmt_kwh(450.0) == "450 kWh" and fmt_kwh(0.003) == "3 Wh"
    assert fmt_kwh(999.96) == "1 MWh" and fmt_kwh(2e13) == "20,000 TWh"


@pytest.mark.parametrize(
    "hours, text",
    [
        (375_123.0, "375,100 h (42.8 years)"),  # was '3.751e5 h (42.8 years)'
        (24 * 365, "8760 h (1 years)"),
        (72.0, "72 h (3 days)"),
        (47.99, "47.99 h"),
        (0.25, "0.25 h"),
        (0.01, "0.01 h"),
        (0.009999, "36 s"),  # below 0.01 h: seconds
        (2.7e-9, "9.72 µs"),  # was '0.0000000027 h'
        (-0.001, "-3.6 s"),
        (0.0, "0 h"),
    ],
)
def test_fmt_hours(hours, text):
    assert fmt_hours(hours) == text


@pytest.mark.parametrize(
    "flops, text",
    [(9_007_959_552, "9.01 GFLOP"), (713_246_208, "713 MFLOP"), (999.6e9, "1 TFLOP"), (6.06e13, "60.6 TFLOP"),
     (2.028e20, "203 EFLOP"), (1.2e26, "120,000,000 EFLOP"), (999.4, "999 FLOP"), (1500, "1.5 kFLOP"), (0, "0 FLOP")],
)
def test_fmt_flop_count(flops, text):
    assert fmt_flop_count(flops) == text


@pytest.mark.parametrize(
    "fmt", [fmt_time, fmt_bytes, fmt_flops, fmt_flop_count, fmt_energy, fmt_kwh, fmt_hours, fmt_size, fmt_pct,
            fmt_exponent, sci, plain, lambda x: fmt_rate(x, "tok")],
)
# A results file is JSON anyone can edit: where a number belongs it may hold a string, a bool, a list.
@pytest.mark.parametrize("value", [None, math.nan, math.inf, -math.inf, "12", True, [1.0], {"a": 1}])
def test_missing_non_finite_and_non_numbers_print_a_dash(fmt, value):
    assert fmt(value) == "-"


def test_a_figure_derived_past_the_float_limit_prints_a_dash_not_an_overflow():
    assert plain(1e308 * 10) == "-" and fmt_flops(1e308 * 1e3) == "-"  # was OverflowError (math.floor(inf))
    assert fmt_flops(1e300).endswith(" EFLOP/s")  # finite: shown, in digit groups


@pytest.mark.parametrize("exp", range(-15, 22))
def test_no_unit_ever_shows_scientific_notation(exp):
    for mantissa in (1.0, 9.995, -4.2):
        x = mantissa * 10.0**exp
        for text in (fmt_time(x), fmt_bytes(x), fmt_flops(x), fmt_flop_count(x), fmt_energy(x), fmt_kwh(x),
                     fmt_hours(x), fmt_rate(x, "tok"), fmt_size(x)):
            assert "e+" not in text and "e-" not in text, text


def test_plain_pct_exponent_ci_and_sci():
    assert plain(0.000123) == "0.000123" and plain(12_345) == "12,300" and plain(-1.5) == "-1.5"
    assert plain(999.96) == "1000" and plain(99_999.6) == "100,000" and plain(0) == "0"
    assert fmt_pct(0.1234) == "12.3%" and fmt_pct(0) == "0.0%" and fmt_exponent(-1.004) == "-1.00"
    assert fmt_time_ci(0.9996, 0.02) == "1 s ±2.0%"
    assert sci(2.028e20) == "2.028e20" and sci(26e9) == "2.6e10" and sci(12.5) == "12.5" and sci(0) == "0"


def test_calibration_skip_messages_print_seconds_in_units(monkeypatch):
    import types

    from xfbench.profilers import calibrate as cal_mod

    # 0.1 s per call at n=32 (a stated timing, the matmul itself still runs): n=64 predicts 0.8 s per call,
    # 6 of which overrun the 1 s quick budget; n=3200 predicts 100,000 s per call, beyond MAX_CALL_S.
    monkeypatch.setattr(cal_mod, "measure_time", lambda *args: types.SimpleNamespace(median_s=0.1, min_s=0.1))
    peak = cal_mod.measure_matmul(cal_mod.torch.device("cpu"), "float32", (32, 64, 3200), level="quick")
    assert peak.skipped == [
        "n=64: predicted 800 ms per call would overrun the 1 s budget",  # was '0.8 s'
        "n=3200: predicted 100,000 s per call > 1 s",  # was '1e+05 s'
    ]


def test_energy_reasons_print_the_window_in_units():
    from xfbench.profilers.telemetry_agg import Sample, aggregate

    short = aggregate(Sample(100.0, 500_000, 5_000_000), Sample(100.2, 700_000, 5_100_000), [], calls=1,
                      tokens_per_call=1)
    assert short["energy_reason"] == "window 200 ms is shorter than 1 s (the energy counter's resolution)"  # '0.2 s'
    stuck = aggregate(Sample(0.0, energy_mj=10.0), Sample(1234.5, energy_mj=10.0), [], calls=1, tokens_per_call=1)
    assert stuck["energy_reason"] == "energy counter did not advance over 1230 s"  # was '1.23e+03 s'


@given(st.lists(st.floats(min_value=1e-9, max_value=1e4, allow_nan=False), min_size=1, max_size=20))
def test_fmt_many_shows_each_value_as_plain_does_in_one_unit(values):
    """fmt_many's fast path prints exactly what plain() would, in the unit of the median."""
    from xfbench.reports.units import fmt_many, plain, scale, steps_for

    text = fmt_many(values, "s")
    numbers, _, symbol = text.rpartition(" ")
    factor = dict((sym, f) for f, sym in steps_for("s"))[symbol]
    assert symbol == scale(sorted(values)[len(values) // 2], "s")[1]
    assert numbers.split(", ") == [plain(v / factor) for v in values]
